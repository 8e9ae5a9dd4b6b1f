"""The dev profile's bootstrap: the dev CA and the sandbox child, as the release file configures them."""

from __future__ import annotations

import socket
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tai_autonomics import devprofile
from tai_autonomics.cli import main
from tai_autonomics.config import load_release
from tai_autonomics.trust import generate_key_and_csr, sample_policy


def validity(pem: bytes) -> timedelta:
    certificate = x509.load_pem_x509_certificate(pem)
    return certificate.not_valid_after_utc - certificate.not_valid_before_utc


def test_the_configured_certificate_lifetime_applies_to_the_first_certificate_and_to_renewals(
        tmp_path: Path) -> None:
    rel = tmp_path / "dev.toml"
    rel.write_text(f'profile = "dev"\ndata_dir = "{tmp_path / "var"}"\n[sandbox]\ncert_validity_s = 40\n')
    dev = devprofile.prepare(load_release(rel))
    try:
        first = Path(dev.context["trust"]["cert_file"]).read_bytes()
        _, csr = generate_key_and_csr("daemon")
        renew = f"{dev.context['sandbox']['url']}/insurer/v1/policies/{sample_policy().policy_id}/certificates/renew"
        renewed = httpx.post(renew, json={"csr_pem": csr.public_bytes(serialization.Encoding.PEM).decode()})
        assert renewed.status_code == 201, renewed.text
    finally:
        dev.stop()
    backdate = timedelta(minutes=5)  # both issuers backdate not_before for clock skew
    assert validity(first) == validity(renewed.json()["certificate_pem"].encode()) == timedelta(seconds=40) + backdate


@pytest.mark.parametrize("days", ["0", "-1", "nan", "inf", "3651", "soon"])
def test_the_sandbox_refuses_a_lifetime_that_issues_nothing_usable(capsys, tmp_path: Path, days: str) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["sandbox", "serve", "--data-dir", str(tmp_path), "--cert-validity-days", days])
    assert exited.value.code == 2
    assert "must be a number of days > 0 and at most 3650" in capsys.readouterr().err


def test_the_admin_port_is_recorded_per_data_dir_and_replaced_when_taken(tmp_path: Path) -> None:
    first = devprofile.admin_port(tmp_path, "127.0.0.1")
    assert (tmp_path / "admin_port").read_text() == f"{first}\n"
    assert devprofile.admin_port(tmp_path, "127.0.0.1") == first  # free: kept across starts
    with socket.socket() as squatter:  # taken meanwhile (e.g. given to another data dir's daemon)
        squatter.bind(("127.0.0.1", first))
        squatter.listen()
        second = devprofile.admin_port(tmp_path, "127.0.0.1")
    assert second != first and devprofile.recorded_admin_port(tmp_path) == second
    (tmp_path / "admin_port").write_text("not a port\n")
    assert devprofile.recorded_admin_port(tmp_path) is None
    assert devprofile.admin_port(tmp_path, "127.0.0.1") == devprofile.recorded_admin_port(tmp_path)
