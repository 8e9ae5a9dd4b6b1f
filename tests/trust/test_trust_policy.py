"""The policy extension: schema validation, JSON and DER round trips."""

from __future__ import annotations

import contextlib
import json
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tai_autonomics.trust import (
    CertPolicyMalformed,
    CoverageLimit,
    Policy,
    sample_policy,
)


def _doc(**overrides):
    doc = sample_policy().to_dict()
    doc.update(overrides)
    return doc


def test_round_trips_through_json_and_der():
    policy = sample_policy()
    assert Policy.from_json(policy.to_json()) == policy
    assert Policy.from_extension_value(policy.to_extension_value()) == policy
    assert policy.to_extension_value()[0] == 0x0C  # DER UTF8String tag


def test_long_document_uses_long_form_der_length():
    policy = Policy(
        policy_id="p" * 400,
        coverage_limits={"a": CoverageLimit(1, Decimal("2.5"))},
        authorized_sku=("a",),
        customer_name="n",
        customer_account="acct",
    )
    value = policy.to_extension_value()
    assert value[1] == 0x82
    assert Policy.from_extension_value(value) == policy


def test_sample_policy_has_the_two_dev_skus():
    policy = sample_policy()
    assert policy.coverage_limits["sku-001"] == CoverageLimit(1_000_000, Decimal(10) ** 9)
    assert policy.coverage_limits["sku-002"] == CoverageLimit(3, Decimal(30_000))
    assert policy.covers("sku-002") and not policy.covers("sku-003")


@pytest.mark.parametrize(
    "field", ["policy_id", "coverage_limits", "authorized_sku", "customer_name", "customer_account"]
)
def test_every_field_is_required(field):
    doc = _doc()
    del doc[field]
    with pytest.raises(CertPolicyMalformed, match=field):
        Policy.from_dict(doc)


@pytest.mark.parametrize(
    "doc",
    [
        _doc(extra=1),
        _doc(policy_id=""),
        _doc(customer_name=7),
        _doc(authorized_sku="sku-001"),
        _doc(authorized_sku=[]),
        _doc(authorized_sku=["sku-009"]),
        _doc(authorized_sku=["sku-001", "sku-001"]),
        _doc(coverage_limits={}),
        _doc(
            coverage_limits={
                "sku-001": {"limit_count": -1, "limit_cost": 1},
                "sku-002": {"limit_count": 1, "limit_cost": 1},
            }
        ),
        _doc(
            coverage_limits={
                "sku-001": {"limit_count": 1.5, "limit_cost": 1},
                "sku-002": {"limit_count": 1, "limit_cost": 1},
            }
        ),
        _doc(
            coverage_limits={
                "sku-001": {"limit_count": True, "limit_cost": 1},
                "sku-002": {"limit_count": 1, "limit_cost": 1},
            }
        ),
        _doc(coverage_limits={"sku-001": {"limit_count": 1}, "sku-002": {"limit_count": 1, "limit_cost": 1}}),
        _doc(
            coverage_limits={
                "sku-001": {"limit_count": 1, "limit_cost": "1"},
                "sku-002": {"limit_count": 1, "limit_cost": 1},
            }
        ),
        _doc(coverage_limits={"sku-001": [], "sku-002": {"limit_count": 1, "limit_cost": 1}}),
        [],
    ],
)
def test_schema_violations_are_refused(doc):
    with pytest.raises(CertPolicyMalformed):
        Policy.from_dict(doc)


@pytest.mark.parametrize("text", ["", "{", "NaN", '{"limit_cost": Infinity}', b"\xff\xfe", "[" * 100_000])
def test_invalid_json_is_refused(text):
    with pytest.raises(CertPolicyMalformed):
        Policy.from_json(text)


@pytest.mark.parametrize("cost", ["1e999999", "-1", "0.0000001", "1e19"])
def test_hostile_costs_are_refused(cost):
    text = sample_policy().to_json().replace('"limit_cost":30000', f'"limit_cost":{cost}')
    assert text != sample_policy().to_json()
    with pytest.raises(CertPolicyMalformed):
        Policy.from_json(text)


def test_fractional_cost_round_trips_exactly():
    text = sample_policy().to_json().replace('"limit_cost":30000', '"limit_cost":29999.99')
    policy = Policy.from_json(text)
    assert policy.coverage_limits["sku-002"].limit_cost == Decimal("29999.99")
    assert json.loads(policy.to_json()) == json.loads(text)


@pytest.mark.parametrize(
    "der",
    [b"", b"\x0c", b"\x04\x02{}", b"\x0c\x03{}", b"\x0c\x01{}", b"\x0c\x81\x02{}", b"\x0c\x80", b"\x0c\x02\xff\xfe"],
)
def test_strict_der_decoding(der):
    with pytest.raises(CertPolicyMalformed):
        Policy.from_extension_value(der)


@given(st.binary(max_size=300))
def test_arbitrary_extension_bytes_only_raise_typed_errors(data):
    with contextlib.suppress(CertPolicyMalformed):
        Policy.from_extension_value(data)


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=12), inner, max_size=6),
        max_leaves=20,
    )
)
def test_arbitrary_json_values_only_raise_typed_errors(value):
    with contextlib.suppress(CertPolicyMalformed):
        Policy.from_dict(value)


def test_duplicate_keys_are_refused():
    text = sample_policy().to_json().replace('{"authorized_sku"', '{"policy_id":"other","authorized_sku"', 1)
    with pytest.raises(CertPolicyMalformed, match="repeats the key 'policy_id'"):
        Policy.from_json(text)
