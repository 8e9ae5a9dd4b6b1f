"""Which receipts become notices, for which customer, and the hourly throttle."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tai_autonomics.notifications import Throttle, Watch


def receipt(seq: int, kind: str, payload: dict, **extra) -> dict:
    return {"id": f"r-{seq}", "seq": seq, "kind": kind, "payload": payload, "time": "2026-12-05T10:00:00Z", **extra}


def intent(seq: int, cost: str = "10", operation_id: str = "op-1", account: str = "acct-9") -> dict:
    return receipt(seq, "deploy.intent", {"customer_account": account, "coverage": {
        "sku_id": "sku-002", "cost": cost, "limit_count": 5, "limit_cost": "1000"}}, operation_id=operation_id)


def kinds(watch: Watch, *receipts: dict) -> list[tuple[str, str]]:
    return [(n.kind, n.customer) for r in receipts for n in watch.notices(r)]


def test_each_receipt_kind_gives_its_notice_for_the_right_customer() -> None:
    watch = Watch("policy-customer")
    assert kinds(watch,
                 receipt(1, "insurance.expiry_warning", {"threshold_days": 7, "not_after": "x", "seconds_left": 9}),
                 receipt(2, "mode.changed", {"from": "prod", "to": "read_only", "reason": "certificate: cert expired"}),
                 receipt(3, "mode.changed", {"from": "read_only", "to": "prod", "reason": "insurance verified again"}),
                 intent(4, operation_id="op-7"),
                 receipt(5, "deploy.failed", {"rca": {"classification": "timeout"}}, operation_id="op-7"),
                 receipt(6, "publish.failed", {"rca": {}}, operation_id="op-unknown"),
                 receipt(7, "coverage.exceeded", {"sku": "sku-002", "limit_count": 5}),
                 receipt(8, "contract.insurance_lapsed", {"contract_id": "acme", "date": "2026-02-14"}),
                 receipt(9, "mode.changed", {"from": "", "to": "prod", "reason": "start"}),
                 receipt(10, "pricing.quoted", {"price": "1"})) == [
        ("certificate.expires_in_7d", "policy-customer"), ("mode.read_only", "policy-customer"),
        ("certificate.expired", "policy-customer"), ("mode.restored", "policy-customer"),
        ("deploy.failed", "acct-9"), ("publish.failed", "policy-customer"), ("coverage.exceeded", "policy-customer"),
        ("contract.cure_notice", "acme")]


def test_coverage_warns_once_when_a_month_crosses_80_percent_of_count_or_cost() -> None:
    watch = Watch("c", usage=[{"sku": "sku-002", "period": "2026-12", "count": 2, "cost": "100"}])
    assert kinds(watch, intent(1)) == []  # 3 of 5
    assert kinds(watch, intent(2)) == [("coverage.warning", "c")]  # 4 of 5: 80 %
    assert kinds(watch, intent(3)) == []  # already past
    by_cost = Watch("c")
    assert kinds(by_cost, intent(1, cost="790")) == []
    assert kinds(by_cost, intent(2, cost="10")) == [("coverage.warning", "c")]
    counted = Watch("c", usage=[{"sku": "sku-002", "period": "2026-12", "count": 4, "cost": "0"}], counted_through=9)
    assert kinds(counted, intent(9)) == []  # in the ledger's counters already: not counted twice


def test_malformed_payloads_give_no_notice() -> None:
    watch = Watch("c")
    assert kinds(watch, receipt(1, "deploy.intent", {"coverage": {"sku_id": "s", "cost": "x"}}),
                 receipt(2, "mode.changed", "not an object")) == []


@given(st.lists(st.tuples(st.sampled_from(["a", "b"]), st.sampled_from(["k1", "k2"]), st.floats(0, 5000)),
                max_size=40))
def test_the_throttle_lets_one_notice_per_customer_and_kind_through_per_window(events) -> None:
    throttle, allowed, now = Throttle(3600), [], 0.0
    for customer, kind, gap in events:
        now += gap
        if throttle.allow(customer, kind, now):
            allowed.append((customer, kind, now))
    for i, (customer, kind, at) in enumerate(allowed):
        later = [t for c, k, t in allowed[i + 1:] if (c, k) == (customer, kind)]
        assert not later or later[0] - at >= 3600


def test_a_remembered_notice_holds_back_the_next_and_a_bad_window_is_refused() -> None:
    throttle = Throttle(3600)
    throttle.remember("a", "k", 100.0)
    assert not throttle.allow("a", "k", 3000.0) and throttle.allow("a", "k", 3700.0)
    with pytest.raises(ValueError):
        Throttle(0)


def test_the_throttle_forgets_what_its_window_no_longer_holds_back() -> None:
    """A notice a second for a new customer each time (a failed deploy per customer, a day long):
    the throttle remembers about one window's worth, not every customer ever notified, and still
    holds back a repeat within the window."""
    throttle = Throttle(60)
    for n in range(86_400):
        assert throttle.allow(f"customer-{n}", "deploy.failed", float(n))
        assert len(throttle) <= 2 * 60 + Throttle._SWEEP_MIN
    assert not throttle.allow("customer-86399", "deploy.failed", 86_400.0)
    assert throttle.allow("customer-0", "deploy.failed", 86_400.0)
