"""Coverage limits against the dev policy: count and cost, per SKU per month."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tai_autonomics.operations.coverage import (
    CoverageExceeded,
    SkuNotAuthorized,
    Usage,
    check_coverage,
    period_of,
)
from tai_autonomics.trust import sample_policy

POLICY = sample_policy()  # sku-002: 3 operations, 30,000 USD a month


def test_the_fourth_operation_is_refused_with_the_numbers() -> None:
    usage = Usage()
    for _ in range(3):
        check_coverage(POLICY, "sku-002", usage, Decimal(100))
        usage = usage.plus(Decimal(100))
    with pytest.raises(CoverageExceeded) as err:
        check_coverage(POLICY, "sku-002", usage, Decimal(100))
    assert err.value.detail == {"sku": "sku-002", "limit_count": 3, "limit_cost": "30000", "current_count": 3,
                                "current_cost": "300", "requested_cost": "100", "remaining_count": 0,
                                "remaining_cost": "29700"}


def test_cost_limit() -> None:
    check_coverage(POLICY, "sku-002", Usage(1, Decimal(20_000)), Decimal(10_000))
    with pytest.raises(CoverageExceeded):
        check_coverage(POLICY, "sku-002", Usage(1, Decimal(20_000)), Decimal("10000.01"))


def test_unknown_sku() -> None:
    with pytest.raises(SkuNotAuthorized):
        check_coverage(POLICY, "sku-999", Usage(), Decimal(0))


@given(st.datetimes(timezones=st.just(timezone.utc)))
def test_period_is_the_utc_calendar_month(moment: datetime) -> None:
    assert period_of(moment) == f"{moment.year:04d}-{moment.month:02d}"
    assert period_of(moment.astimezone(timezone(timedelta(hours=-11)))) == period_of(moment)


@given(count=st.integers(0, 5), spent=st.integers(0, 40_000), cost=st.integers(0, 40_000))
def test_allowed_exactly_when_within_both_limits(count: int, spent: int, cost: int) -> None:
    within = count + 1 <= 3 and spent + cost <= 30_000
    try:
        check_coverage(POLICY, "sku-002", Usage(count, Decimal(spent)), Decimal(cost))
    except CoverageExceeded:
        assert not within
    else:
        assert within
