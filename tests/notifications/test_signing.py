"""The webhook signature and its check: any change to the body, timestamp or MAC is refused,
and so is a delivery replayed outside the tolerance."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tai_autonomics.notifications import SignatureError, sign, verify_signature

SECRET = "whsec-test"


def test_the_header_is_hmac_sha256_over_timestamp_dot_body() -> None:
    """Written from docs/specification.md §12 alone, as a receiver in another language would."""
    body = b'{"kind":"mode.read_only"}'
    expected = hmac.new(SECRET.encode(), b"1767225600." + body, hashlib.sha256).hexdigest()
    assert sign(SECRET, body, 1767225600) == f"t=1767225600,v1={expected}"
    assert verify_signature(SECRET, body, f"t=1767225600,v1=00,v1={expected}", now=1767225601) == 1767225600


@given(body=st.binary(max_size=200), stamp=st.integers(0, 2**33), skew=st.floats(-300, 300))
def test_a_signed_body_verifies_within_the_tolerance(body: bytes, stamp: int, skew: float) -> None:
    assert verify_signature(SECRET, body, sign(SECRET, body, stamp), now=stamp + skew) == stamp


@given(body=st.binary(min_size=1, max_size=100), flip=st.integers(0, 10_000))
def test_a_changed_body_or_secret_is_refused(body: bytes, flip: int) -> None:
    header = sign(SECRET, body, 1000)
    changed = bytearray(body)
    changed[flip % len(body)] ^= 0x01
    for secret, sent in ((SECRET, bytes(changed)), ("other", body)):
        with pytest.raises(SignatureError) as err:
            verify_signature(secret, sent, header, now=1000)
        assert err.value.code == "signature_mismatch"


@pytest.mark.parametrize(("header", "code"), [
    (None, "signature_missing"), ("", "signature_missing"), ("v1=ab", "signature_malformed"),
    ("t=1000", "signature_malformed"), ("t=1000,t=1001,v1=ab", "signature_malformed"),
    ("t=10a0,v1=ab", "signature_malformed"), ("t=1000,v1=AB", "signature_malformed"),
    ("t=1000;v1=ab", "signature_malformed"), ("t=1000,v2=ab", "signature_malformed"),
    ("t=9999999999999,v1=ab", "signature_malformed"),
])
def test_malformed_headers_are_refused_naming_why(header: str | None, code: str) -> None:
    with pytest.raises(SignatureError) as err:
        verify_signature(SECRET, b"{}", header, now=1000)
    assert err.value.code == code


@given(st.text(max_size=60))
def test_any_header_is_verified_or_refused_never_crashes(header: str) -> None:
    with pytest.raises(SignatureError):
        verify_signature(SECRET, b"{}", header, now=1000)


def test_a_replay_outside_the_tolerance_is_refused() -> None:
    header = sign(SECRET, b"{}", 1000)
    for now in (1000 + 301, 1000 - 301):
        with pytest.raises(SignatureError) as err:
            verify_signature(SECRET, b"{}", header, now=now)
        assert err.value.code == "signature_expired"
    assert verify_signature(SECRET, b"{}", header, now=1600, tolerance_s=600) == 1000
    with pytest.raises(ValueError):
        sign("", b"{}")
