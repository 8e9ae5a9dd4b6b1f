"""Adjustments to thespian 4.0.1's TCP transport that the runtime cannot do without.

1. **Bind address.** The transport listens on all interfaces and unpickles whatever arrives,
   so an open actor port is remote code execution. ``bind_actor_sockets_to`` makes every
   listening socket (admin and actors; the patch is inherited by forked actor processes) bind
   to the configured address, loopback by default, and makes thespian advertise that address.
2. **Socket reuse.** With connection reuse, a sender waiting for a delivery acknowledgement can
   hit an empty read and back off for 34 ms to seconds, stalling that actor pair (measured on
   this machine, see shared/notes/gateway-calibration.md). A connection per message removes
   the stalls for about 15 % more CPU.
3. **Back-off floor.** Any transient socket condition (a connect still in progress, say) pauses
   a transmit for at least 20 ms × 1.7. A send to a killed actor's address hits exactly that
   before the refusal is seen, so a caller learned of a dead actor only after about 37 ms; with
   a 1 ms floor it does after about 2 ms, and restarts are seen through as fast as thespian
   re-creates actors.
4. **Shutdown wait.** Without socket reuse, the admin's "shutdown completed" often never reaches
   the caller (the admin exits before its new connection delivers it; measured: 1 shutdown in 2
   then waits thespian's full 10 s). By then the tree has been stopped in order and the node
   sweeps every process it leaves, so waiting 1 s for that message is enough.
5. **Selector per loop.** The transport builds a new ``selectors.DefaultSelector`` on every pass
   of its receive loop: an epoll object, a registration per socket, one wait, a close, about
   five system calls per pass. A ``PollSelector`` costs one (``poll``). Measured per sequential
   insured deploy: 5-9 % less CPU in every actor process. Only thespian's TCP transport module
   sees the substitute; asyncio and everything else keep the default selector.
"""

from __future__ import annotations

import os
import selectors
import types
from datetime import timedelta
from typing import Any

import thespian.system.systemBase as _thespian_system
import thespian.system.transport as _thespian_transport
from thespian.system.transport import IPBase, TCPTransport

_state = {"bind": None}


def tune_tcp_transport(address: str) -> None:
    """Bind every thespian TCP socket in this process (and its forks) to ``address``; no socket
    reuse; a 1 ms back-off floor; a 1 s shutdown wait; a poll selector. See the module docstring
    for why each."""
    os.environ["THESPIAN_BASE_IPADDR"] = address
    TCPTransport.REUSE_SOCKETS = False
    _thespian_transport.MIN_BACKOFF_DELAY = timedelta(milliseconds=1)
    _thespian_system.MAX_SYSTEM_SHUTDOWN_DELAY = timedelta(seconds=1)
    TCPTransport.selectors = types.SimpleNamespace(
        DefaultSelector=selectors.PollSelector, EVENT_READ=selectors.EVENT_READ, EVENT_WRITE=selectors.EVENT_WRITE)
    if _state["bind"] is None:
        original = IPBase.IPActorAddress.__init__

        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
            original(self, *args, **kwargs)
            if self.bindname[0] in ("", "0.0.0.0"):
                self.bindname = (_state["bind"], self.bindname[1])

        IPBase.IPActorAddress.__init__ = __init__
    _state["bind"] = address


def log_config(level: str) -> dict[str, Any]:
    """A ``logging.config`` dict for thespian's logger process: our JSON lines on stdout.

    (``logDefs=False`` breaks the multiprocess bases; ``None`` would use thespian's format.)
    """
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "tai_autonomics.logs.JsonFormatter"}},
        "handlers": {"stdout": {"class": "logging.StreamHandler", "stream": "ext://sys.stdout",
                                "formatter": "json"}},
        "root": {"handlers": ["stdout"], "level": level},
    }
