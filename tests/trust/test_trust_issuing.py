"""The issuing CA used by the sandbox insurer, tests and ``cert dev-ca``."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from trust_makers import NOW

from tai_autonomics.trust import (
    CaStoreInvalid,
    CertificateAuthority,
    CertificateVerifier,
    CsrInvalid,
    Policy,
    generate_key_and_csr,
    sample_policy,
)

DAY = dt.timedelta(days=1)


@pytest.fixture(scope="module")
def chain():
    root = CertificateAuthority.generate("Root", now=NOW - DAY)
    return root, root.create_intermediate("Issuing", now=NOW - DAY)


@pytest.mark.parametrize("encoding", [serialization.Encoding.PEM, serialization.Encoding.DER, None])
def test_issues_from_a_csr_in_any_form(chain, encoding):
    root, issuing = chain
    key, csr = generate_key_and_csr("ignored")
    request = csr if encoding is None else csr.public_bytes(encoding)
    certificate = issuing.issue(request, sample_policy(), NOW - DAY, NOW + DAY)
    assert certificate.public_key() == key.public_key()
    assert certificate.subject.rfc4514_string() == "UID=dev-account-0001,CN=Development Customer"
    verified = CertificateVerifier(root.certificate, intermediates=issuing.intermediates).verify(certificate, now=NOW)
    assert verified.policy == sample_policy()
    assert Policy.from_certificate(certificate) == sample_policy()


def test_refuses_a_csr_whose_signature_does_not_verify(chain):
    _, issuing = chain
    _, csr = generate_key_and_csr("x")
    der = bytearray(csr.public_bytes(serialization.Encoding.DER))
    der[-2] ^= 0x01
    with pytest.raises(CsrInvalid):
        issuing.issue(bytes(der), sample_policy(), NOW - DAY, NOW + DAY)
    with pytest.raises(CsrInvalid):
        issuing.issue(
            b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
            sample_policy(),
            NOW - DAY,
            NOW + DAY,
        )


def test_refuses_naive_or_inverted_validity(chain):
    _, issuing = chain
    key, _ = generate_key_and_csr("x")
    with pytest.raises(ValueError, match="timezone-aware"):
        issuing.issue(key.public_key(), sample_policy(), dt.datetime(2026, 1, 1), NOW)
    with pytest.raises(ValueError, match="later"):
        issuing.issue(key.public_key(), sample_policy(), NOW, NOW - DAY)


def test_save_and_load_round_trip_with_chain(chain, tmp_path):
    root, issuing = chain
    issuing.save(tmp_path / "issuing")
    loaded = CertificateAuthority.load(tmp_path / "issuing")
    assert loaded.certificate == issuing.certificate and loaded.intermediates == issuing.intermediates
    key, _ = generate_key_and_csr("x")
    certificate = loaded.issue(key.public_key(), sample_policy(), NOW - DAY, NOW + DAY)
    CertificateVerifier(root.certificate, intermediates=loaded.intermediates).verify(certificate, now=NOW)
    root.save(tmp_path / "root")
    assert not (tmp_path / "root" / "chain.pem").exists()
    assert CertificateAuthority.load(tmp_path / "root").intermediates == ()


def test_load_failures_are_typed(chain, tmp_path):
    root, issuing = chain
    with pytest.raises(CaStoreInvalid, match="cannot read"):
        CertificateAuthority.load(tmp_path / "absent")
    root.save(tmp_path / "mixed")
    (tmp_path / "mixed" / "ca.pem").write_bytes(issuing.certificate.public_bytes(serialization.Encoding.PEM))
    with pytest.raises(CaStoreInvalid, match="does not belong"):
        CertificateAuthority.load(tmp_path / "mixed")
    (tmp_path / "mixed" / "ca-key.pem").write_bytes(b"not a key")
    with pytest.raises(CaStoreInvalid, match="not PEM"):
        CertificateAuthority.load(tmp_path / "mixed")


def test_repr_names_the_ca_and_nothing_secret(chain):
    _, issuing = chain
    assert repr(issuing) == "CertificateAuthority(subject='CN=Issuing')"


def test_ca_certificates_carry_the_constraints_path_validation_needs(chain):
    root, issuing = chain
    constraints = issuing.certificate.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca and constraints.value.path_length == 0
    assert root.certificate.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
