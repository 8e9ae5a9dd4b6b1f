"""The bridge from the gateway's event loop to the actors: how long a request may wait in it."""

from __future__ import annotations

import asyncio
import time

import pytest

from tai_autonomics.gateway import ActorBridge
from tai_autonomics.gateway.errors import ApiError
from tai_autonomics.runtime import Node
from tests.helpers import wait_until

HOLD_S = 4.0  # how long the only thread is busy
TIMEOUT_S = 0.5  # the queued call's timeout, well within it


def test_a_call_queued_for_a_thread_is_answered_by_its_timeout_and_never_runs_late(node: Node) -> None:
    """A call waited for a free thread outside its timeout, which started only once it had one:
    with every thread blocked on an actor being restarted (bench.chaos, an ``operations``
    restart), a deploy queued behind them waited that long, then up to its whole 40 s again,
    and the caller saw no answer in 40 s. Now the timeout counts from the request's arrival, and
    a call whose time ran out in the queue is answered 503 ``call_timeout`` and never sent."""
    bridge = ActorBridge(node, workers=1, max_in_flight=2, call_timeout_s=10)
    seen_before = node.call("echo", "seen")

    async def scenario() -> tuple[asyncio.Task, float, ApiError]:
        holding = asyncio.create_task(bridge.call("worker", "sleep", HOLD_S))
        await asyncio.to_thread(wait_until, lambda: bridge.in_flight == 1, what="the thread taken")
        started = time.monotonic()
        with pytest.raises(ApiError) as caught:
            await bridge.call("echo", "echo", "late", timeout_s=TIMEOUT_S)
        waited = time.monotonic() - started
        await holding
        return holding, waited, caught.value

    try:
        holding, waited, refused = asyncio.run(scenario())
        assert holding.result() == HOLD_S
        assert (refused.status, refused.code) == (503, "call_timeout")
        assert waited < HOLD_S  # answered by its own deadline (and the grace), not when the thread came free
        wait_until(lambda: bridge.in_flight == 0, what="both slots released")
        assert node.call("echo", "seen") == seen_before  # the expired call was never sent
    finally:
        bridge.close()
