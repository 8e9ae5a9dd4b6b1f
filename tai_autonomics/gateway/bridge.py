"""The bridge from the event loop to the actors: blocking calls in a bounded thread pool.

thespian contexts are blocking and not thread-safe, so each pool thread calls through its own
private context (:meth:`Node.client` gives one per thread); this design measured best on this
machine (docs/performance.md, "Calibration"). Requests waiting on actors are bounded: beyond
``max_in_flight`` the bridge answers 503 ``overloaded`` at once, because past a point thespian
stops receiving while it sends and actors can deadlock — shedding load is the only safe answer.
A call's timeout counts from the moment the request enters the bridge, its wait for a free
thread included: with more requests in flight than threads, one queued behind threads blocked
on a restarting actor would otherwise wait that long and then its whole timeout again.
"""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from tai_autonomics.errors import ConfigError, TaiError
from tai_autonomics.gateway.errors import ApiError, from_actor_error
from tai_autonomics.runtime import Node
from tai_autonomics.runtime.errors import CallTimeout

ANSWER_GRACE_S = 1.0
"""How long past a call's timeout the bridge still waits for its thread: a running call ends by
its own timeout with the runtime's answer (``no_such_actor`` for a name never registered, say),
which must arrive first; only a call that found no thread in time is answered by the bridge."""


class ActorBridge:
    """``await bridge.call(name, type, payload)``: the actor's reply, or an :class:`ApiError`."""

    def __init__(self, node: Node, *, workers: int, max_in_flight: int, call_timeout_s: float) -> None:
        if not node.multiprocess:
            raise ConfigError("the runtime's configuration", "base", "the gateway needs a multiprocess thespian "
                              "base (the in-process base runs actors in the calling thread)")
        self._node = node
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="gateway-bridge")
        self.max_in_flight = max_in_flight
        self.call_timeout_s = call_timeout_s
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._in_flight = 0

    @property
    def in_flight(self) -> int:
        return self._in_flight

    async def call(self, actor: str, msg_type: str, payload: Any = None, timeout_s: float | None = None) -> Any:
        """``timeout_s`` for calls that wait on outside parties (an insured operation's own
        retries take longer than a read); the configured ``call_timeout_s`` otherwise."""
        return await self._submit(self._call, actor, msg_type, payload, timeout_s or self.call_timeout_s)

    async def cast(self, actor: str, msg_type: str, payload: Any = None) -> None:
        await self._submit(self._cast, actor, msg_type, payload, self.call_timeout_s)

    async def _submit(self, work, actor: str, msg_type: str, payload: Any, timeout_s: float) -> Any:
        """``work(actor, msg_type, payload, deadline)`` on a pool thread; answered by the deadline
        (503 ``call_timeout``, within :data:`ANSWER_GRACE_S`) even if no thread was free in time,
        in which case it never runs."""
        with self._lock:
            if self._in_flight >= self.max_in_flight:
                raise ApiError(503, "overloaded", "the gateway is at its limit of requests in flight; retry later",
                               {"max_in_flight": self.max_in_flight}, headers={"Retry-After": "1"})
            self._in_flight += 1
        try:
            future = self._pool.submit(work, actor, msg_type, payload, time.monotonic() + timeout_s)
        except RuntimeError:  # the pool is shut down: the gateway is stopping
            self._release()
            raise ApiError(503, "draining", "the gateway is stopping", headers={"Retry-After": "1"}) from None
        # released when the work ends, not when the request does: a client that gave up still holds a thread
        future.add_done_callback(self._release)
        try:  # cancelled past the deadline: a call still queued is dropped, one running ends by its own timeout
            return await asyncio.wait_for(asyncio.wrap_future(future), timeout_s + ANSWER_GRACE_S)
        except asyncio.TimeoutError:
            raise from_actor_error(_timed_out(actor, msg_type, timeout_s), actor, msg_type) from None
        except TaiError as exc:
            raise from_actor_error(exc, actor, msg_type) from None

    def _call(self, actor: str, msg_type: str, payload: Any, deadline: float) -> Any:
        return self._node.client().call(actor, msg_type, payload, _left(actor, msg_type, deadline))

    def _cast(self, actor: str, msg_type: str, payload: Any, deadline: float) -> None:
        self._node.client().cast(actor, msg_type, payload, _left(actor, msg_type, deadline))

    def _release(self, _future: object = None) -> None:
        with self._lock:
            self._in_flight -= 1
            if not self._in_flight:
                self._idle.notify_all()

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` until no call is in flight; whether none is."""
        with self._lock:
            return self._idle.wait_for(lambda: not self._in_flight, timeout=max(0.0, timeout_s))

    def close(self) -> None:
        """Refuse new calls and wait for those running (each ends within the call timeout)."""
        self._pool.shutdown(wait=True, cancel_futures=True)


def _timed_out(actor: str, msg_type: str, timeout_s: float) -> CallTimeout:
    return CallTimeout(f"no reply from {actor!r} to {msg_type!r} within {timeout_s:g} s",
                       detail={"actor": actor, "message_type": msg_type, "timeout_s": timeout_s})


def _left(actor: str, msg_type: str, deadline: float) -> float:
    """The time a call that got its thread still has; CallTimeout if none (it waited it all out)."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise CallTimeout(f"{actor!r} {msg_type!r}: no thread was free before the deadline",
                          detail={"actor": actor, "message_type": msg_type})
    return left
