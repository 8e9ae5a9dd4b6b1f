"""The guard operation actors run on ProdMode's pushed authority (docs/specification.md §2)."""

from __future__ import annotations

import pickle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tai_autonomics.errors import TaiError
from tai_autonomics.operations.authority import CERTIFICATE_EXPIRED, Authority
from tai_autonomics.operations.mode import MODES
from tai_autonomics.trust import sample_policy

NOW = 1_800_000_000.0


def prod(valid_s: float = 3600, buffer_s: float = 300) -> Authority:
    return Authority("prod", "verified", sample_policy(), NOW + valid_s, buffer_s)


def test_a_valid_prod_authority_answers_the_skus_limit() -> None:
    assert prod().guard("sku-002", 25, NOW) == {"mode": "prod", "chain": "dev-policy-0001",
                                                "authority": "contractual",
                                                "limit": {"limit_count": 3, "limit_cost": "30000"}}


def test_the_clock_at_call_time_decides_expiry_whatever_was_pushed() -> None:
    authority = prod(valid_s=10, buffer_s=0)
    assert authority.guard("sku-001", 5, NOW)["mode"] == "prod"
    assert authority.expired(NOW + 10)
    with pytest.raises(TaiError) as err:
        authority.guard("sku-001", 5, NOW + 10)
    assert err.value.code == "mode_refused"
    assert err.value.detail == {"mode": "read_only", "reason": CERTIFICATE_EXPIRED, "operation": "write"}


@pytest.mark.parametrize(("sku", "timeout_s", "code"), [("sku-404", 25, "sku_not_authorized"),
                                                         ("sku-001", 3400, "cert_validity_too_short")])
def test_refusals(sku: str, timeout_s: float, code: str) -> None:
    with pytest.raises(TaiError) as err:
        prod().guard(sku, timeout_s, NOW)
    assert err.value.code == code


@settings(max_examples=200, deadline=None)
@given(mode=st.sampled_from(MODES), valid_s=st.floats(-1e6, 1e6), timeout_s=st.floats(0, 86_400),
       with_policy=st.booleans())
def test_only_prod_with_enough_validity_lets_a_write_through_and_it_survives_pickling(
        mode: str, valid_s: float, timeout_s: float, with_policy: bool) -> None:
    authority = Authority(mode, "why", sample_policy() if with_policy else None, NOW + valid_s, 300)
    assert pickle.loads(pickle.dumps(authority)) == authority  # the multiprocess bases pickle it
    try:
        granted = authority.guard("sku-001", timeout_s, NOW)
    except TaiError as refusal:
        assert refusal.code in ("mode_refused", "cert_validity_too_short")
        return
    assert mode == "prod" and with_policy and authority.not_after - NOW >= timeout_s + 300 and granted["mode"] == "prod"
