"""The bridge from the event loop to the actors: blocking calls in a bounded thread pool.

thespian contexts are blocking and not thread-safe, so each pool thread calls through its own
private context (:meth:`Node.client` gives one per thread); this design measured best on this
machine (docs/performance.md, "Calibration"). Requests waiting on actors are bounded: beyond
``max_in_flight`` the bridge answers 503 ``overloaded`` at once, because past a point thespian
stops receiving while it sends and actors can deadlock — shedding load is the only safe answer.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from tai_autonomics.errors import ConfigError, TaiError
from tai_autonomics.gateway.errors import ApiError, from_actor_error
from tai_autonomics.runtime import Node


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
        return await self._submit(self._call, actor, msg_type, (payload, timeout_s or self.call_timeout_s))

    async def cast(self, actor: str, msg_type: str, payload: Any = None) -> None:
        await self._submit(self._cast, actor, msg_type, payload)

    async def _submit(self, work, actor: str, msg_type: str, payload: Any) -> Any:
        with self._lock:
            if self._in_flight >= self.max_in_flight:
                raise ApiError(503, "overloaded", "the gateway is at its limit of requests in flight; retry later",
                               {"max_in_flight": self.max_in_flight}, headers={"Retry-After": "1"})
            self._in_flight += 1
        try:
            future = self._pool.submit(work, actor, msg_type, payload)
        except RuntimeError:  # the pool is shut down: the gateway is stopping
            self._release()
            raise ApiError(503, "draining", "the gateway is stopping", headers={"Retry-After": "1"}) from None
        # released when the work ends, not when the request does: a client that gave up still holds a thread
        future.add_done_callback(self._release)
        try:
            return await asyncio.wrap_future(future)
        except TaiError as exc:
            raise from_actor_error(exc, actor, msg_type) from None

    def _call(self, actor: str, msg_type: str, payload_and_timeout: tuple[Any, float]) -> Any:
        payload, timeout_s = payload_and_timeout
        return self._node.client().call(actor, msg_type, payload, timeout_s)

    def _cast(self, actor: str, msg_type: str, payload: Any) -> None:
        self._node.client().cast(actor, msg_type, payload, self.call_timeout_s)

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
