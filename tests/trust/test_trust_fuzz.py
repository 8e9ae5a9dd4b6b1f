"""hypothesis: whatever bytes arrive, verification answers with our typed error or a verified certificate."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import NOW
from tai_autonomics.trust import CertificateError, CertificateVerifier, load_certificate

# Corrupt serial numbers make cryptography warn before we refuse them; the warning is expected here.
pytestmark = pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")
_SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _check(verifier: CertificateVerifier, data: bytes) -> None:
    try:
        verifier.verify(data, now=NOW)
    except CertificateError:
        pass


@_SETTINGS
@given(data=st.binary(max_size=2048))
def test_arbitrary_bytes_raise_only_typed_errors(world, data):
    _check(CertificateVerifier(load_certificate(world.anchor_pem)), data)


@_SETTINGS
@given(flips=st.lists(st.tuples(st.integers(min_value=0), st.integers(min_value=1, max_value=255)), min_size=1, max_size=4))
def test_byte_flips_in_valid_der_raise_only_typed_errors(world, flips):
    pem = world.scenarios["valid"].leaf_pem
    der = bytearray(x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER))
    for position, mask in flips:
        der[position % len(der)] ^= mask
    _check(CertificateVerifier(load_certificate(world.anchor_pem)), bytes(der))


@_SETTINGS
@given(cut=st.integers(min_value=0), junk=st.binary(max_size=16))
def test_truncated_or_extended_der_raise_only_typed_errors(world, cut, junk):
    der = x509.load_pem_x509_certificate(world.scenarios["valid"].leaf_pem).public_bytes(serialization.Encoding.DER)
    _check(CertificateVerifier(load_certificate(world.anchor_pem)), der[: cut % (len(der) + 1)] + junk)
