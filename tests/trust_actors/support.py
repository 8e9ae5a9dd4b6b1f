"""The trust actors' test helpers: one daemon's trust files, the policy, fast retries, a real restart."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives import serialization

from tai_autonomics.runtime import Node
from tai_autonomics.sandbox import SandboxServer
from tai_autonomics.trust import (
    CertificateVerifier,
    CertManager,
    VerifiedCertificate,
    generate_key_and_csr,
    sample_policy,
)
from tai_autonomics.trust._files import private_key_pem

POLICY_ID = sample_policy().policy_id
FAST_RETRIES = {"timeout_s": 2.0, "backoff_base_s": 0.01, "backoff_cap_s": 0.05, "max_retry_after_s": 2.0}


def restart(node: Node, name: str) -> None:
    """Crash ``name`` for real (kill -9) on the multiprocess base, else have its supervisor restart it."""
    old = node.call(name, "$info")
    if node.multiprocess:
        os.kill(old["pid"], 9)
    else:
        node.call("root", "restart_child", name)
    assert node.whereis(name, wait=10, after=old["incarnation"]).incarnation != old["incarnation"]


@dataclass
class Trust:
    """One daemon's files: the trust anchor, the certificate directory and the recorded receipts."""

    data_dir: Path
    anchor: Path
    cert_dir: Path
    receipts: Path
    sandbox: SandboxServer

    def context(self, mode: str = "prod") -> dict[str, Any]:
        """The ``context`` the daemon hands to every worker (the keys these actors read)."""
        return {
            "data_dir": str(self.data_dir), "mode": mode,
            "insurer": {"url": self.sandbox.url, "policy_id": POLICY_ID,
                        "public_key_file": str(self.sandbox.sandbox.config.insurer_public_key_file)},
            "trust": {"anchor": str(self.anchor), "cert_dir": str(self.cert_dir), "expected_issuer": None},
        }

    def held(self) -> VerifiedCertificate:
        """The certificate in ``cert_dir``, read from disk (what a restarted CertManager would load)."""
        return CertManager(self.cert_dir, CertificateVerifier.from_files(self.anchor)).load()

    def issue_certificate(self, admin: httpx.Client) -> tuple[bytes, bytes]:
        """A certificate (PEM) issued by the sandbox insurer for a new key, and that key (PEM)."""
        key, csr = generate_key_and_csr("insured-daemon")
        issued = admin.post(f"/insurer/v1/policies/{POLICY_ID}/certificates",
                            json={"csr_pem": csr.public_bytes(serialization.Encoding.PEM).decode()})
        issued.raise_for_status()
        return issued.json()["certificate_pem"].encode(), private_key_pem(key)

    def install_certificate(self, admin: httpx.Client) -> str:
        """A certificate issued by the sandbox insurer, installed as current; its fingerprint."""
        manager = CertManager(self.cert_dir, CertificateVerifier.from_files(self.anchor))
        return manager.install(*self.issue_certificate(admin)).fingerprint
