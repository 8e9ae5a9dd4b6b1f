"""``multiprocUnixBase``: thespian's multiprocess system base on the node-local Unix transport.

Every actor is its own process as on ``multiprocTCPBase`` (same admin, same supervision of
processes, same ``ChildActorExited``); only the transport differs: persistent, pipelined
Unix-socket connections in a directory only the daemon's user can open, with a per-node secret
(see ``_unixtransport``). thespian finds a base by name as the module
``thespian.system.<name>``; :func:`register` makes this module answer to that name, so
``ActorSystem("multiprocUnixBase", ...)`` works in this process and in every actor it forks.
"""

from __future__ import annotations

import sys
from typing import Any

import thespian.system
from thespian.system.multiprocCommon import multiprocessCommon

from tai_autonomics.runtime._unixtransport import DIRECTORY_CAPABILITY, UnixTransport, node_directory

NAME = "multiprocUnixBase"

__all__ = ["DIRECTORY_CAPABILITY", "NAME", "ActorSystemBase", "node_directory", "register"]


class ActorSystemBase(multiprocessCommon):
    """thespian's multiprocess base with :class:`UnixTransport`."""

    transportType = UnixTransport

    def __init__(self, system: Any, logDefs: Any = None) -> None:  # noqa: N803 (thespian's signature)
        system.capabilities["Thespian ActorSystem Name"] = NAME
        system.capabilities["Thespian ActorSystem Version"] = 1
        system.capabilities["Thespian Watch Supported"] = True
        super().__init__(system, logDefs)


def register() -> None:
    """Make ``thespian.system.multiprocUnixBase`` this module (idempotent)."""
    module = sys.modules[__name__]
    sys.modules[f"thespian.system.{NAME}"] = module
    setattr(thespian.system, NAME, module)


register()
