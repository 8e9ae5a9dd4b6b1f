"""Which insurer verdicts become receipts: each change, and once per period while one holds."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tai_autonomics.operations.verdicts import FAILED, VERIFIED, Verdict, VerdictLog

OK = Verdict("p-1")
BAD = Verdict("p-1", "insurance_revoked", "revoked on 2026-12-01")


def test_first_verdict_changes_and_repeats_are_recorded_with_their_payloads() -> None:
    log = VerdictLog(repeat_s=3600)
    assert log.observe(OK, 0) == (VERIFIED, {"policy_id": "p-1", "repeat": False})
    assert log.observe(OK, 3599) is None
    assert log.observe(OK, 3600) == (VERIFIED, {"policy_id": "p-1", "repeat": True})
    assert log.observe(BAD, 3601) == (FAILED, {"policy_id": "p-1", "repeat": False, "code": "insurance_revoked",
                                               "reason": "revoked on 2026-12-01"})
    assert log.observe(BAD, 3700) is None
    assert log.observe(OK, 3701)[1]["repeat"] is False


@pytest.mark.parametrize("bad", [0, -1, float("nan")])
def test_a_period_that_is_not_positive_is_refused(bad: float) -> None:
    with pytest.raises(ValueError, match="repeat_s"):
        VerdictLog(repeat_s=bad)


@given(st.lists(st.tuples(st.booleans(), st.floats(0, 10_000)), max_size=60))
def test_every_change_is_recorded_and_no_two_receipts_of_one_verdict_are_closer_than_the_period(steps) -> None:
    log, recorded, previous, now = VerdictLog(repeat_s=3600), [], None, 0.0
    for ok, gap in steps:
        now += gap
        decided = log.observe(OK if ok else BAD, now)
        if ok is not previous:
            assert decided is not None and decided[1]["repeat"] is False
        if decided is not None:
            recorded.append((decided[0], now))
        previous = ok
    for (kind, at), (next_kind, next_at) in zip(recorded, recorded[1:]):
        assert kind != next_kind or next_at - at >= 3600
