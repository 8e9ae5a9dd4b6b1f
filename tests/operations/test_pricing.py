"""Pricing is deterministic, bounded, recomputable from its payload, and rejects bad metrics."""

from __future__ import annotations

import math
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tai_autonomics.errors import InvalidRequest
from tai_autonomics.operations import PricingParams, quote

PARAMS = PricingParams(weights={"latency_ms": 0.5}, scales={"latency_ms": 200.0})
names = st.from_regex(r"[A-Za-z0-9_.-]{1,12}", fullmatch=True)
metrics = st.dictionaries(names, st.floats(0, 1e9) | st.integers(0, 10**9), min_size=1, max_size=20)


def recompute(payload: dict) -> tuple[Decimal, Decimal]:
    """What a customer does with a receipt: the formula from docs/specification.md §6 and the recorded inputs."""
    p = payload["params"]
    v = sum(payload["weights"][n] * (2 / (1 + math.exp(-x / payload["scales"][n])) - 1)
            for n, x in payload["metrics"].items())
    value = Decimal(repr(v)).quantize(Decimal("0.000001"))
    price = min(max(Decimal(repr(p["alpha"])) * value + Decimal(repr(p["base"])), Decimal(repr(p["min_price"]))),
                Decimal(repr(p["max_price"])))
    return value, price.quantize(Decimal("0.01"))


@given(metrics)
def test_same_inputs_same_payload_and_recomputable(m: dict) -> None:
    first = quote("cust-1", m, PARAMS).to_payload()
    assert quote("cust-1", dict(reversed(list(m.items()))), PARAMS).to_payload() == first
    value, price = recompute(first)
    assert (str(value), str(price)) == (first["value"], first["price"])
    assert Decimal(PARAMS.min_price) <= Decimal(first["price"]) <= Decimal(PARAMS.max_price)


def test_weights_and_the_known_value() -> None:
    q = quote("c", {"latency_ms": 0.0, "users": 1e9}, PARAMS)
    assert q.value == "1.000000"  # s(0) = 0, s(huge) = 1, weight 1
    assert q.price == "110.00"
    assert q.weights == {"latency_ms": 0.5, "users": 1.0}


def test_spike_over_five_times_the_previous_value_is_flagged() -> None:
    assert quote("c", {"a": 1e9}, PARAMS, previous_value="0.100000").spike
    assert not quote("c", {"a": 1e9}, PARAMS, previous_value="0.300000").spike
    assert not quote("c", {"a": 1e9}, PARAMS).spike


@pytest.mark.parametrize(("customer", "m", "field"), [
    ("", {"a": 1}, "customer_id"),
    ("c", {}, "metrics"),
    ("c", [1], "metrics"),
    ("c", {f"m{i}": 1 for i in range(101)}, "metrics"),
    ("c", {"bad name": 1}, "metrics.bad name"),
    ("c", {"a": -1}, "metrics.a"),
    ("c", {"a": 1e9 + 1}, "metrics.a"),
    ("c", {"a": float("nan")}, "metrics.a"),
    ("c", {"a": True}, "metrics.a"),
    ("c", {"a": "1"}, "metrics.a"),
])
def test_bad_metrics_name_the_field(customer, m, field: str) -> None:
    with pytest.raises(InvalidRequest) as err:
        quote(customer, m, PARAMS)
    assert err.value.detail["field"] == field


@given(st.dictionaries(st.text(max_size=5), st.none() | st.booleans() | st.floats() | st.text(max_size=3), max_size=4))
def test_arbitrary_input_is_priced_or_refused_cleanly(m: dict) -> None:
    try:
        q = quote("c", m, PARAMS)
    except InvalidRequest as err:
        assert err.detail["field"].startswith(("metrics", "customer_id"))
    else:
        assert Decimal(q.price) >= Decimal(PARAMS.min_price)


@pytest.mark.parametrize(("metrics", "value", "price"), [  # docs/operations.md, "Pricing"
    ({"throughput_rps": 100, "latency_ms": 50}, "0.707036", "80.70"),
    ({"throughput_rps": 100}, "0.462117", "56.21"),
    ({"latency_ms": 50}, "0.244919", "34.49"),
    ({"throughput_rps": 10}, "0.049958", "15.00"),
    ({"throughput_rps": 300}, "0.905148", "100.51"),
    ({"seats": 1200}, "0.999988", "110.00"),
])
def test_the_default_curve_tells_realistic_metrics_apart(metrics: dict, value: str, price: str) -> None:
    """The first default (scale 1) priced 100 requests/s and 50 ms alike, both saturated (V = 2.0)."""
    q = quote("c", metrics, PricingParams())
    assert (q.value, q.price) == (value, price)
    assert quote("c", {"x": 100}, PricingParams(scales={"x": 1000})).value == "0.049958"


@pytest.mark.parametrize("bad", [{"scale": 0}, {"scale": -1}, {"scale": float("inf")}, {"scales": {"x": True}},
                                 {"scales": {"x": "10"}}])
def test_a_scale_that_is_not_a_positive_number_is_refused(bad: dict) -> None:
    with pytest.raises(ValueError, match="scale"):
        PricingParams(**bad)
