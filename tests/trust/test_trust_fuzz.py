"""hypothesis: whatever bytes arrive, verification answers with our typed error or a verified certificate."""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import os

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from trust_makers import NOW

from tai_autonomics.errors import TaiError
from tai_autonomics.trust import (
    CertificateAuthority,
    CertificateError,
    CertificateVerifier,
    describe,
    generate_key_and_csr,
    load_certificate,
    sample_policy,
)

# Corrupt serial numbers make cryptography warn before we refuse them; the warning is expected here.
pytestmark = pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")
# TAI_FUZZ_EXAMPLES=20000 for a long hunt; the default keeps the suite fast.
_SETTINGS = settings(
    max_examples=int(os.environ.get("TAI_FUZZ_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


def _check(verifier: CertificateVerifier, data: bytes) -> None:
    """Both entry points a hostile file reaches: verification, and ``cert inspect``'s description."""
    with contextlib.suppress(CertificateError):
        verifier.verify(data, now=NOW)
    with contextlib.suppress(CertificateError):
        describe(load_certificate(data), NOW)


@_SETTINGS
@given(data=st.binary(max_size=2048))
def test_arbitrary_bytes_raise_only_typed_errors(world, data):
    _check(CertificateVerifier(load_certificate(world.anchor_pem)), data)


@_SETTINGS
@given(
    flips=st.lists(st.tuples(st.integers(min_value=0), st.integers(min_value=1, max_value=255)), min_size=1, max_size=4)
)
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


def _der(tag: int, body: bytes) -> bytes:
    if len(body) < 0x80:
        return bytes([tag, len(body)]) + body
    size = len(body).to_bytes((len(body).bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + body


def _resign(certificate: x509.Certificate, tbs: bytes, key_pem: bytes) -> bytes:
    """A certificate with this (mutated) TBS, validly signed by the anchor: only our deeper checks can refuse it."""
    key = serialization.load_pem_private_key(key_pem, password=None)
    signature = key.sign(tbs, ec.ECDSA(hashes.SHA256()))
    algorithm = _der(0x30, _der(0x06, bytes.fromhex("2a8648ce3d040302")))  # ecdsa-with-SHA256
    return _der(0x30, tbs + algorithm + _der(0x03, b"\x00" + signature))


@_SETTINGS
@given(
    flips=st.lists(st.tuples(st.integers(min_value=0), st.integers(min_value=1, max_value=255)), min_size=1, max_size=3)
)
def test_resigned_mutations_raise_only_typed_errors(world, flips):
    leaf = x509.load_pem_x509_certificate(world.scenarios["valid"].leaf_pem)
    tbs = bytearray(leaf.tbs_certificate_bytes)
    for position, mask in flips:
        tbs[position % len(tbs)] ^= mask
    _check(CertificateVerifier(load_certificate(world.anchor_pem)), _resign(leaf, bytes(tbs), world.anchor_key_pem))


def test_resigning_helper_reproduces_a_valid_certificate(world):
    leaf = x509.load_pem_x509_certificate(world.scenarios["valid"].leaf_pem)
    again = _resign(leaf, leaf.tbs_certificate_bytes, world.anchor_key_pem)
    assert CertificateVerifier(load_certificate(world.anchor_pem)).verify(again, now=NOW).policy.policy_id == "pol-42"


PEM_CSR = b"-----BEGIN CERTIFICATE REQUEST-----\n%s-----END CERTIFICATE REQUEST-----\n"


@pytest.fixture(scope="module")
def issuing():
    root = CertificateAuthority.generate("Root", now=NOW - dt.timedelta(days=1))
    return root.create_intermediate("Issuing", now=NOW - dt.timedelta(days=1))


@pytest.fixture(scope="module")
def csr_der() -> bytes:
    return generate_key_and_csr("fuzz")[1].public_bytes(serialization.Encoding.DER)


@_SETTINGS
@given(flips=st.lists(st.tuples(st.integers(min_value=0), st.integers(min_value=1, max_value=255)), max_size=4),
       cut=st.integers(min_value=0), junk=st.binary(max_size=16), pem=st.booleans())
def test_mangled_csrs_are_refused_with_a_typed_error_or_issued_for_the_key_they_carry(issuing, csr_der, flips, cut,
                                                                                      junk, pem):
    """Issue 14: a CSR arriving at the issuing CA (byte flips, truncation, junk, PEM or DER) is issued
    only if it still proves possession of its key; anything else is one typed refusal."""
    der = bytearray(csr_der)
    for position, mask in flips:
        der[position % len(der)] ^= mask
    mangled = bytes(der[: cut % (len(der) + 1)]) + junk
    data = PEM_CSR % base64.encodebytes(mangled) if pem else mangled
    try:
        certificate = issuing.issue(data, sample_policy(), NOW - dt.timedelta(days=1), NOW + dt.timedelta(days=1))
    except TaiError:
        return
    request = x509.load_der_x509_csr(mangled)
    assert request.is_signature_valid and certificate.public_key() == request.public_key()
