"""``tai-autonomics cert inspect`` and ``cert dev-ca`` through the real command-line entry point."""

from __future__ import annotations

import datetime as dt
import json
import stat

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from trust_makers import NOW

from tai_autonomics.cli import main
from tai_autonomics.trust import (
    CertificateAuthority,
    CertificateVerifier,
    load_certificate,
)


@pytest.fixture
def files(tmp_path, world):
    (tmp_path / "anchor.pem").write_bytes(world.anchor_pem)
    for name, scenario in world.scenarios.items():
        (tmp_path / f"{name}.pem").write_bytes(scenario.leaf_pem)
        (tmp_path / f"{name}.chain.pem").write_bytes(b"".join(scenario.intermediates))
    return tmp_path


def _inspect(files, name, *extra):
    args = [
        "cert",
        "inspect",
        str(files / f"{name}.pem"),
        "--trust-anchor",
        str(files / "anchor.pem"),
        "--at",
        NOW.isoformat(),
        *extra,
    ]
    return main(args)


def test_valid_certificate_text(files, capsys):
    assert _inspect(files, "valid") == 0
    out = capsys.readouterr().out
    assert "policy:       pol-42 for Acme Ltd (acct-7)" in out
    assert "sku-002: 3 operations, 30000 USD a month (authorized)" in out
    assert "days left:    60" in out
    assert out.rstrip().endswith("verdict: VALID")


def test_intermediate_option(files, capsys):
    assert _inspect(files, "valid_via_intermediate") == 1
    assert "[cert_intermediate_missing]" in capsys.readouterr().out
    chain = str(files / "valid_via_intermediate.chain.pem")
    assert _inspect(files, "valid_via_intermediate", "--intermediate", chain) == 0


@pytest.mark.parametrize(
    "name", ["expired", "extension_not_critical", "wrong_key_usage", "signed_by_impostor_with_trusted_name"]
)
def test_invalid_certificate_json(files, capsys, world, name):
    assert _inspect(files, name, "--json") == 1
    report = json.loads(capsys.readouterr().out)
    assert report["valid"] is False
    assert report["error"]["code"] == world.scenarios[name].expected
    assert report["certificate"]["subject"] == "CN=Acme Ltd"


def test_valid_certificate_json(files, capsys):
    assert _inspect(files, "valid", "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["valid"] is True and report["error"] is None
    assert report["certificate"]["policy"]["coverage_limits"]["sku-001"]["limit_count"] == 1_000_000
    assert report["certificate"]["days_left"] == 60


def test_malformed_file_is_a_verdict_not_a_crash(files, capsys):
    (files / "junk.pem").write_bytes(b"not a certificate")
    assert _inspect(files, "junk", "--json") == 1
    assert json.loads(capsys.readouterr().out)["error"]["code"] == "cert_malformed"


def test_missing_file_and_bad_anchor_are_usage_errors(files, capsys):
    assert _inspect(files, "absent") == 2
    assert "[file_unreadable]" in capsys.readouterr().err
    args = ["cert", "inspect", str(files / "valid.pem"), "--trust-anchor", str(files / "valid.pem")]
    assert main(args) == 2
    assert "[trust_anchor_invalid]" in capsys.readouterr().err


def test_dev_ca_writes_a_verifiable_setup(tmp_path, capsys):
    out = tmp_path / "dev"
    assert main(["cert", "dev-ca", "--out", str(out)]) == 0
    assert "insurance certificate" in capsys.readouterr().out
    verified = CertificateVerifier(load_certificate((out / "ca.pem").read_bytes())).verify(
        (out / "insurance-cert.pem").read_bytes()
    )
    assert verified.policy.coverage_limits["sku-002"].limit_count == 3
    assert 364 <= verified.days_left <= 365
    key = serialization.load_pem_private_key((out / "insurance-key.pem").read_bytes(), password=None)
    assert key.public_key() == verified.certificate.public_key()
    ledger = serialization.load_pem_private_key((out / "ledger-key.pem").read_bytes(), password=None)
    assert isinstance(ledger, ed25519.Ed25519PrivateKey)
    for secret in ("ca-key.pem", "insurance-key.pem", "ledger-key.pem"):
        assert stat.S_IMODE((out / secret).stat().st_mode) == 0o600
    assert CertificateAuthority.load(out).certificate == verified.chain[-1]
    assert main(["cert", "inspect", str(out / "insurance-cert.pem"), "--trust-anchor", str(out / "ca.pem")]) == 0


def test_dev_ca_refuses_to_overwrite_without_force(tmp_path, capsys):
    out = str(tmp_path / "dev")
    assert main(["cert", "dev-ca", "--out", out]) == 0
    first = (tmp_path / "dev" / "ca.pem").read_bytes()
    assert main(["cert", "dev-ca", "--out", out]) == 2
    assert "[dev_ca_exists]" in capsys.readouterr().err
    assert (tmp_path / "dev" / "ca.pem").read_bytes() == first
    assert main(["cert", "dev-ca", "--out", out, "--force", "--days", "10"]) == 0
    assert (tmp_path / "dev" / "ca.pem").read_bytes() != first
    certificate = load_certificate((tmp_path / "dev" / "insurance-cert.pem").read_bytes())
    assert certificate.not_valid_after_utc - certificate.not_valid_before_utc <= dt.timedelta(days=10, minutes=5)
