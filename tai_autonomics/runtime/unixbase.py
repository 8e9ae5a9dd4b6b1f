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
from collections.abc import Callable
from typing import Any

import thespian.system
from thespian.system.multiprocCommon import multiprocessCommon
from thespian.system.transport import ReceiveEnvelope, TransmitIntent

from tai_autonomics.runtime._unixtransport import DIRECTORY_CAPABILITY, SECRET_BYTES, UnixTransport, node_directory

NAME = "multiprocUnixBase"

__all__ = ["DIRECTORY_CAPABILITY", "NAME", "SECRET_BYTES", "ActorSystemBase", "debug_text_on_demand",
           "node_directory", "register"]
_state = {"quiet": False}


class ActorSystemBase(multiprocessCommon):
    """thespian's multiprocess base with :class:`UnixTransport`."""

    transportType = UnixTransport

    def __init__(self, system: Any, logDefs: Any = None) -> None:  # noqa: N803 (thespian's signature)
        system.capabilities["Thespian ActorSystem Name"] = NAME
        system.capabilities["Thespian ActorSystem Version"] = 1
        system.capabilities["Thespian Watch Supported"] = True
        super().__init__(system, logDefs)


class _Identified:
    """What thespian's ``identify()`` returned, made when a log line formats it (``%s``)."""

    __slots__ = ("_identify", "_subject")

    def __init__(self, identify: Callable[[Any], str], subject: Any) -> None:
        self._identify, self._subject = identify, subject

    def __str__(self) -> str:
        return self._identify(self._subject)

    __repr__ = __str__


def debug_text_on_demand() -> None:
    """Every send and receipt formats the message, its addresses and timers for thespian's debug
    log (``thesplog('... %s', intent.identify())``), whatever the log level: three texts per
    message, a quarter of an actor's CPU per message on this base. ``identify()`` now returns
    an object that makes the same text only when a line is formatted (idempotent; applies to
    thespian's classes, so to every base in this process and its forks)."""
    if _state["quiet"]:
        return
    _state["quiet"] = True

    def on_demand(identify: Callable[[Any], str]) -> Callable[[Any], _Identified]:
        return lambda subject: _Identified(identify, subject)

    for cls in (TransmitIntent, ReceiveEnvelope):
        cls.identify = on_demand(cls.identify)
    ReceiveEnvelope.__str__ = lambda envelope: str(envelope.identify())


def register() -> None:
    """Make ``thespian.system.multiprocUnixBase`` this module (idempotent), debug text on demand."""
    module = sys.modules[__name__]
    sys.modules[f"thespian.system.{NAME}"] = module
    setattr(thespian.system, NAME, module)
    debug_text_on_demand()


register()
