"""Coverage limits against the dev policy: count and cost, per SKU per month.

The policy says the limit (:func:`limit_for`); the ledger's reservation rule
(:class:`~tai_autonomics.ledger.operations.EffectState`) says whether one more operation fits.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tai_autonomics.ledger.operations import (
    Counted,
    CoverageExceeded,
    EffectState,
    Limit,
    OpenOperation,
    Usage,
    UsageKey,
)
from tai_autonomics.operations.coverage import SkuNotAuthorized, limit_for, period_of
from tai_autonomics.trust import sample_policy

POLICY = sample_policy()  # sku-002: 3 operations, 30,000 USD a month
KEY = UsageKey(POLICY.policy_id, "2026-12", "sku-002")


def reserve(state: EffectState, cost: int | str, number: int = 0) -> None:
    state.apply(OpenOperation("deploy", "", "f"), operation_id=f"op-{number}", receipt_id=f"r-{number}",
                chain=POLICY.policy_id, time="2026-12-05T00:00:00Z",
                counted=Counted(KEY, Decimal(cost), limit_for(POLICY, "sku-002")))


def test_the_fourth_operation_is_refused_with_the_numbers() -> None:
    state = EffectState.read({}, {}, {})
    for number in range(3):
        reserve(state, 100, number)
    with pytest.raises(CoverageExceeded) as err:
        reserve(state, 100, 3)
    assert err.value.detail == {"sku": "sku-002", "period": "2026-12", "limit_count": 3, "limit_cost": "30000",
                                "current_count": 3, "current_cost": "300", "requested_cost": "100",
                                "remaining_count": 0, "remaining_cost": "29700"}
    assert state.changed_usage == {KEY: Usage(3, Decimal(300))}


def test_cost_limit() -> None:
    state = EffectState.read({KEY: Usage(1, Decimal(20_000))}, {}, {})
    with pytest.raises(CoverageExceeded):
        reserve(state, "10000.01")
    reserve(state, 10_000)
    assert state.changed_usage == {KEY: Usage(2, Decimal(30_000))}


def test_unknown_sku() -> None:
    with pytest.raises(SkuNotAuthorized):
        limit_for(POLICY, "sku-999")
    assert limit_for(POLICY, "sku-002") == Limit(3, Decimal(30_000))


@given(st.datetimes(timezones=st.just(timezone.utc)))
def test_period_is_the_utc_calendar_month(moment: datetime) -> None:
    assert period_of(moment) == f"{moment.year:04d}-{moment.month:02d}"
    assert period_of(moment.astimezone(timezone(timedelta(hours=-11)))) == period_of(moment)


@given(count=st.integers(0, 5), spent=st.integers(0, 40_000), cost=st.integers(0, 40_000))
def test_allowed_exactly_when_within_both_limits(count: int, spent: int, cost: int) -> None:
    within = count + 1 <= 3 and spent + cost <= 30_000
    state = EffectState.read({KEY: Usage(count, Decimal(spent))}, {}, {})
    try:
        reserve(state, cost)
    except CoverageExceeded:
        assert not within
        assert state.changed_usage == {} and state.changed_operations == {}
    else:
        assert within
        assert state.changed_usage == {KEY: Usage(count + 1, Decimal(spent + cost))}
