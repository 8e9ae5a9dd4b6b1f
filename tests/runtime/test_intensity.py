"""The restart-intensity rule against a reference model (hypothesis state machine)."""

from __future__ import annotations

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from tai_autonomics.runtime import RestartIntensity


class IntensityModel(RuleBasedStateMachine):
    """Reference: the supervisor gives up when the restarts in [now - period, now] exceed intensity."""

    @initialize(intensity=st.integers(1, 6), period=st.floats(0.5, 100))
    def setup(self, intensity: int, period: float) -> None:
        self.subject = RestartIntensity(intensity, period)
        self.intensity, self.period = intensity, period
        self.now = 0.0
        self.history: list[float] = []
        self.gave_up = False

    @precondition(lambda self: not self.gave_up)
    @rule(dt=st.floats(0, 50))
    def restart_after(self, dt: float) -> None:
        self.now += dt
        self.history.append(self.now)
        in_window = [t for t in self.history if t >= self.now - self.period]
        expected = len(in_window) <= self.intensity
        assert self.subject.record(self.now) == expected
        self.gave_up = not expected

    @precondition(lambda self: self.gave_up)
    @rule()
    def parent_restarts_the_supervisor(self) -> None:
        """A supervisor that gave up comes back (from its parent) with an empty history."""
        self.subject = RestartIntensity(self.intensity, self.period)
        self.history = []
        self.gave_up = False

    @invariant()
    def never_more_than_intensity_while_alive(self) -> None:
        if hasattr(self, "subject") and not self.gave_up:
            assert self.subject.recent <= self.intensity


TestIntensity = IntensityModel.TestCase


def test_exactly_period_old_restart_still_counts() -> None:
    r = RestartIntensity(1, 10)
    assert r.record(0)
    assert not r.record(10)  # OTP keeps restarts with R >= Now - Period


def test_burst_of_intensity_plus_one_gives_up() -> None:
    r = RestartIntensity(3, 5)
    assert [r.record(t) for t in (0, 1, 2, 3)] == [True, True, True, False]


def test_spread_out_restarts_never_give_up() -> None:
    r = RestartIntensity(1, 5)
    assert all(r.record(t * 5.01) for t in range(100))
