"""Certificate verification: each defect its own code, the same for openssl- and cryptography-made certificates."""

from __future__ import annotations

import dataclasses
import datetime as dt
import shutil

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from trust_makers import NOW, SCENARIOS, World, openssl_binary

from tai_autonomics.trust import (
    CertificateAuthority,
    CertificateError,
    CertificateVerifier,
    CertMalformed,
    TrustAnchorInvalid,
    VerifiedCertificate,
    load_certificate,
    sample_policy,
)


def _verify(world: World, name: str, now: dt.datetime = NOW) -> VerifiedCertificate:
    scenario = world.scenarios[name]
    verifier = CertificateVerifier(load_certificate(world.anchor_pem))
    return verifier.verify(
        scenario.leaf_pem, now=now, intermediates=[load_certificate(pem) for pem in scenario.intermediates]
    )


def _verdict(world: World, name: str) -> str | None:
    try:
        _verify(world, name)
    except CertificateError as exc:
        return exc.code
    return None


@pytest.mark.parametrize("name", SCENARIOS)
def test_each_scenario_gets_its_own_verdict(world, name):
    assert _verdict(world, name) == world.scenarios[name].expected


def test_openssl_and_cryptography_agree_on_every_scenario(openssl_world, cryptography_world):
    assert {n: _verdict(openssl_world, n) for n in SCENARIOS} == {n: _verdict(cryptography_world, n) for n in SCENARIOS}


def test_valid_certificate_result(world):
    result = _verify(world, "valid_via_intermediate")
    assert result.policy.policy_id == "pol-42"
    assert result.policy.coverage_limits["sku-002"].limit_count == 3
    assert result.not_after == NOW + dt.timedelta(days=60)
    assert result.days_left == 60
    assert len(result.fingerprint) == 64
    assert [c.subject.rfc4514_string() for c in result.chain] == [
        "CN=Acme Ltd",
        "CN=Test Insurer Issuing CA",
        "CN=Test Insurer Root",
    ]


def test_der_and_pem_are_both_accepted(world):
    pem = world.scenarios["valid"].leaf_pem
    der = x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)
    verifier = CertificateVerifier(load_certificate(world.anchor_pem))
    assert verifier.verify(der, now=NOW).fingerprint == verifier.verify(pem, now=NOW).fingerprint


def test_window_edges_use_the_injected_clock(world):
    result = _verify(world, "valid")
    verifier = CertificateVerifier(load_certificate(world.anchor_pem), clock=lambda: result.not_after)
    assert verifier.verify(world.scenarios["valid"].leaf_pem).days_left == 0
    with pytest.raises(CertificateError) as info:
        verifier.verify(world.scenarios["valid"].leaf_pem, now=result.not_after + dt.timedelta(seconds=1))
    assert info.value.code == "cert_expired"


def test_expected_issuer_refuses_a_sibling_ca(world):
    scenario = world.scenarios["valid_via_intermediate"]
    intermediates = [load_certificate(pem) for pem in scenario.intermediates]
    anchor = load_certificate(world.anchor_pem)
    right = CertificateVerifier(anchor, intermediates=intermediates, expected_issuer="CN=Test Insurer Issuing CA")
    assert right.verify(scenario.leaf_pem, now=NOW).policy.customer_account == "acct-7"
    wrong = CertificateVerifier(anchor, intermediates=intermediates, expected_issuer=anchor.subject)
    with pytest.raises(CertificateError) as info:
        wrong.verify(scenario.leaf_pem, now=NOW)
    assert info.value.code == "cert_issuer_mismatch"


def test_tampered_signature_is_named(world):
    leaf = x509.load_pem_x509_certificate(world.scenarios["valid"].leaf_pem)
    der = bytearray(leaf.public_bytes(serialization.Encoding.DER))
    der[-3] ^= 0x01  # inside the ECDSA signature's last INTEGER
    with pytest.raises(CertificateError) as info:
        CertificateVerifier(load_certificate(world.anchor_pem)).verify(bytes(der), now=NOW)
    assert info.value.code == "cert_signature_invalid"


def test_strict_validation_refuses_an_expired_intermediate():
    root = CertificateAuthority.generate("Root", now=NOW - dt.timedelta(days=400))
    intermediate = root.create_intermediate(
        "Old Issuing CA", now=NOW - dt.timedelta(days=400), valid_for=dt.timedelta(days=100)
    )
    leaf = intermediate.issue(
        CertificateAuthority.generate("k").certificate.public_key(),
        sample_policy(),
        NOW - dt.timedelta(days=1),
        NOW + dt.timedelta(days=1),
    )
    with pytest.raises(CertificateError) as info:
        CertificateVerifier(root.certificate, intermediates=intermediate.intermediates).verify(leaf, now=NOW)
    assert info.value.code == "cert_chain_invalid"


@pytest.mark.parametrize("data", [b"", b"garbage", b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"])
def test_unparseable_input_is_malformed(data):
    with pytest.raises(CertMalformed):
        load_certificate(data)


def test_a_leaf_is_not_accepted_as_trust_anchor(world):
    with pytest.raises(TrustAnchorInvalid):
        CertificateVerifier(load_certificate(world.scenarios["valid"].leaf_pem))


def test_verified_certificate_is_immutable(world):
    result = _verify(world, "valid")
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.fingerprint = "x"  # type: ignore[misc]


def test_a_missing_openssl_fails_the_tests_loudly(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="openssl command-line tool is required"):
        openssl_binary()
