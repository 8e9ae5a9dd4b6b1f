"""What an actor tells an observer about itself (the ``$stats`` call every actor answers).

An operator's ``top`` (Erlang's ``etop``) wants, per actor, its process's memory and CPU, how
many messages it handles and how fast, and what it has not yet sent. The actor counts its
messages itself (only it sees them); memory and CPU come from /proc for its own pid.

:class:`MessageRate` is kept free of actors and clocks (``now`` is passed in) so that the rate
can be tested on its own; counting costs an integer compare per message, against thespian's
~0.7 ms of transport work per message.
"""

from __future__ import annotations

import math
import os
from typing import Any

from tai_autonomics.runtime import _process

RATE_WINDOW_S = 5
"""Messages per second are those of the last this many whole seconds (fewer while younger)."""


class MessageRate:
    """Messages handled in all, and per second over the last :data:`RATE_WINDOW_S` whole seconds.

    One bucket per second in a ring: the rate an observer reads does not depend on when (or by
    how many observers) it was read before, unlike a rate between two reads.
    """

    def __init__(self, now: float) -> None:
        self.total = 0
        self._started = now
        self._second = math.floor(now)
        self._buckets = [0] * (RATE_WINDOW_S + 1)  # the full window and the second under way

    def count(self, now: float, n: int = 1) -> None:
        """Note ``n`` messages handled at ``now``."""
        if now >= self._second + 1:  # a new second (checked here: this runs for every message)
            self._roll(math.floor(now))
        self._buckets[self._second % len(self._buckets)] += n
        self.total += n

    def per_second(self, now: float) -> float:
        """The rate over the last whole seconds (the second under way is not over yet)."""
        self._roll(math.floor(now))
        whole = min(RATE_WINDOW_S, self._second - math.floor(self._started))
        if whole <= 0:  # younger than a whole second: what it has done so far, in that one second
            return float(self.total)
        current = self._second % len(self._buckets)
        counted = sum(self._buckets) - self._buckets[current]
        if whole < RATE_WINDOW_S:  # the buckets before it started are zero, and do not count
            return counted / whole
        return counted / RATE_WINDOW_S

    def _roll(self, second: int) -> None:
        if second <= self._second:
            return
        size = len(self._buckets)
        for gone in range(self._second + 1, min(second, self._second + size) + 1):
            self._buckets[gone % size] = 0
        self._second = second


def snapshot(rate: MessageRate, now: float, pending_outbound: int | None) -> dict[str, Any]:
    """The ``$stats`` answer of the calling process (JSON-able; ``rss_bytes``/``cpu_seconds`` None
    where /proc cannot be read)."""
    pid = os.getpid()
    used = _process.usage(pid)
    return {"pid": pid, "rss_bytes": used[0] if used else None, "cpu_seconds": used[1] if used else None,
            "messages": rate.total, "messages_per_s": round(rate.per_second(now), 3),
            "pending_outbound": pending_outbound}
