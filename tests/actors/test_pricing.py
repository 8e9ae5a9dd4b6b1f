"""The Pricing actor: quotes recorded as receipts, advisory in eval, spikes against history."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import pytest

from tai_autonomics.errors import InvalidRequest
from tai_autonomics.runtime import Node, parse_tree

STUBS = "tests.actors.stubs"


def start(node: Node, mode: str = "prod", preload: list | None = None) -> None:
    node.start_tree(parse_tree({"root": "root", "supervisors": {"root": {"intensity": 5, "children": [
        "ReceiptLedger", "CertManager", "InsuranceClient", "ProdMode", "Pricing"]}}, "workers": {
        "ReceiptLedger": {"actor": f"{STUBS}:LedgerStub", "args": {"preload": preload or []}},
        "CertManager": {"actor": f"{STUBS}:CertManagerStub"},
        "InsuranceClient": {"actor": f"{STUBS}:InsuranceStub"},
        "ProdMode": {"actor": "tai_autonomics.actors.prod_mode:ProdMode", "args": {"context": {"mode": mode}}},
        "Pricing": {"actor": "tai_autonomics.actors.pricing:Pricing",
                    "args": {"weights": {"acme": {"users": 2.0}}}}}}))


@pytest.fixture
def running(node: Node):
    yield node
    node.stop_tree()


def test_a_quote_is_recorded_and_deterministic(running: Node) -> None:
    start(running)
    first = running.call("Pricing", "quote", {"customer_id": "acme", "metrics": {"users": 3, "latency": 0.5}})
    again = running.call("Pricing", "quote", {"customer_id": "acme", "metrics": {"latency": 0.5, "users": 3}})
    assert {k: v for k, v in first["quote"].items() if k != "previous_value"} == \
        {k: v for k, v in again["quote"].items() if k != "previous_value"}
    assert first["quote"]["weights"] == {"latency": 1.0, "users": 2.0}
    assert first["receipt"]["kind"] == "pricing.quoted" and first["receipt"]["chain"] == "dev-policy-0001"
    assert again["quote"]["previous_value"] == first["quote"]["value"]
    assert Decimal(first["quote"]["price"]) > 0


def test_eval_quotes_are_advisory(running: Node) -> None:
    start(running, mode="eval")
    result = running.call("Pricing", "quote", {"customer_id": "c", "metrics": {"m": 1}})
    assert result["receipt"]["mode"] == "eval" and result["receipt"]["chain"] is None


def test_spike_against_history_read_from_the_ledger(running: Node) -> None:
    history = [{"kind": "pricing.quoted", "chain": "dev-policy-0001", "seq": 1,
                "time": datetime.now(timezone.utc).isoformat(),
                "payload": {"customer_id": "acme", "value": "0.010000"}}]
    start(running, preload=history)
    result = running.call("Pricing", "quote", {"customer_id": "acme", "metrics": {"users": 1e6}})
    assert result["quote"]["previous_value"] == "0.010000" and result["quote"]["spike"] is True


@pytest.mark.parametrize("bad", [None, {"customer_id": "c"}, {"customer_id": "c", "metrics": {"x": -1}},
                                 {"customer_id": "", "metrics": {"x": 1}}])
def test_bad_requests_record_nothing(running: Node, bad) -> None:
    start(running)
    before = len(running.call("ReceiptLedger", "appended"))
    with pytest.raises(InvalidRequest) as err:  # PricingError (invalid_metrics) is one
        running.call("Pricing", "quote", bad)
    assert err.value.code in ("invalid_metrics", "invalid_request")
    assert len(running.call("ReceiptLedger", "appended")) == before
