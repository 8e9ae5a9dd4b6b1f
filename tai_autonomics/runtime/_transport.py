"""Adjustments to thespian 4.0.1's TCP transport that the runtime cannot do without on
``multiprocTCPBase``. The default base, ``multiprocUnixBase`` (``unixbase``), needs none of
them: it binds nothing on the network, keeps its connections, has no back-offs and its own loop.

1. **Bind address.** The transport listens on all interfaces and unpickles whatever arrives,
   so an open actor port is remote code execution. ``bind_actor_sockets_to`` makes every
   listening socket (admin and actors; the patch is inherited by forked actor processes) bind
   to the configured address, loopback by default, and makes thespian advertise that address.
2. **Socket reuse.** With connection reuse, a sender waiting for a delivery acknowledgement can
   hit an empty read and back off for 34 ms to seconds, stalling that actor pair (measured on
   this machine, see docs/performance.md, "Calibration"). A connection per message removes
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
6. **Debug text on demand** (``unixbase.debug_text_on_demand``, which that base applies too).
7. **Timer arithmetic.** Each pass of the transport's loop asks every pending transmit and
   incoming socket for its ``delay()``: up to three timer views, three ``timedelta`` objects, a
   ``min`` and a ``max`` of ``timedelta`` objects each. The same value is now computed from the
   timers' deadlines as floats with one ``timedelta`` at the end. Together with 6, per
   sequential insured deploy: 21.3 → 19.6 ms of CPU over all processes (Acquisition 8.9 → 8.0).
"""

from __future__ import annotations

import os
import selectors
import types
from datetime import timedelta
from typing import Any

import thespian.system.systemBase as _thespian_system
import thespian.system.transport as _thespian_transport
from thespian.system.timing import ExpirationTimer, currentTime
from thespian.system.transport import IPBase, TCPTransport, TransmitIntent

from tai_autonomics.runtime import unixbase

_state: dict[str, Any] = {"bind": None, "patched": False}


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
    if not _state["patched"]:
        _state["patched"] = True
        unixbase.debug_text_on_demand()
        _float_delays()
    if _state["bind"] is None:
        original = IPBase.IPActorAddress.__init__

        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
            original(self, *args, **kwargs)
            if self.bindname[0] in ("", "0.0.0.0"):
                self.bindname = (_state["bind"], self.bindname[1])

        IPBase.IPActorAddress.__init__ = __init__
    _state["bind"] = address


def _time_left(now: float, *timers: ExpirationTimer | None) -> timedelta | None:
    """Until the earliest of ``timers`` (``None`` entries skipped), never negative, rounded as
    thespian's ``max(0, min(timer.view(now).remaining(), ...))`` is; None if one never expires
    (or none is given: then thespian's own code decides)."""
    earliest: float | None = None
    for timer in timers:
        if timer is not None:
            at = timer._time_to_quit
            if at is None:
                return None
            if earliest is None or at < earliest:
                earliest = at
    if earliest is None:
        return None
    return timedelta(seconds=max(earliest - now, 0))


def _float_delays() -> None:
    """See the module docstring, 7."""
    transmit_delay, incoming_delay = TransmitIntent.delay, TCPTransport.TCPIncoming_Common.delay

    def transmit(self: TransmitIntent, current_time: float | None = None) -> timedelta:
        if not getattr(self, "_awaitingTXSlot", False):
            left = _time_left(current_time or currentTime(), self._quitTime, getattr(self, "_retryTime", None),
                              getattr(self, "_pauseUntil", None))
            if left is not None:
                return left
        return transmit_delay(self, current_time)

    def incoming(self: Any, current_time: float | None = None) -> timedelta:
        left = _time_left(current_time or currentTime(), self._expires, getattr(self, "_pauseUntil", None))
        return incoming_delay(self, current_time) if left is None else left

    TransmitIntent.delay = transmit
    TCPTransport.TCPIncoming_Common.delay = incoming


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
