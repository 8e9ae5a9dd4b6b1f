"""Restart intensity: OTP's "more than `intensity` restarts within `period` seconds" rule.

Kept free of actors and clocks so the one rule that decides escalation can be tested on its
own (a hypothesis state machine checks it against a reference model).
"""

from __future__ import annotations

from collections import deque


class RestartIntensity:
    """Sliding window of restart times.

    ``record(now)`` notes a restart and answers whether the supervisor may go on: False once
    the window holds more than ``intensity`` restarts, i.e. the (intensity+1)-th restart within
    ``period`` seconds makes the supervisor give up. As in OTP's ``add_restart``, a restart
    exactly ``period`` seconds old still counts.
    """

    def __init__(self, intensity: int, period: float) -> None:
        if intensity < 0 or period <= 0:
            raise ValueError("intensity must be >= 0 and period > 0")
        self.intensity = intensity
        self.period = period
        self._times: deque[float] = deque()

    def record(self, now: float) -> bool:
        self._times.append(now)
        while self._times and self._times[0] < now - self.period:
            self._times.popleft()
        return len(self._times) <= self.intensity

    @property
    def recent(self) -> int:
        """Restarts currently inside the window (as of the last ``record``)."""
        return len(self._times)
