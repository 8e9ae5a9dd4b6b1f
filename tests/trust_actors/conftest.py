"""Fixtures: one sandbox per module over real sockets, a node per thespian base, and a tree of the
trust actors (a recording ReceiptLedger, CertManager, InsuranceClient) started per test."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization

from tai_autonomics.runtime import Node, NodeConfig, parse_tree
from tai_autonomics.sandbox import SandboxConfig, SandboxServer
from tai_autonomics.trust import (
    CertificateVerifier,
    CertManager,
    VerifiedCertificate,
    generate_key_and_csr,
    sample_policy,
)
from tai_autonomics.trust._files import private_key_pem
from tests.conftest import free_port

POLICY_ID = sample_policy().policy_id
BASES = ["simpleSystemBase", "multiprocTCPBase"]
FAST_RETRIES = {"timeout_s": 2.0, "backoff_base_s": 0.01, "backoff_cap_s": 0.05, "max_retry_after_s": 2.0}


@pytest.fixture(scope="module")
def sandbox_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxServer]:
    with SandboxServer(SandboxConfig(data_dir=tmp_path_factory.mktemp("sandbox"))) as server:
        yield server


@pytest.fixture
def admin(sandbox_server: SandboxServer) -> Iterator[httpx.Client]:
    """The sandbox's admin API, reset before each test."""
    with httpx.Client(base_url=sandbox_server.url, timeout=10) as client:
        client.post("/admin/reset").raise_for_status()
        yield client


@pytest.fixture(scope="module", params=BASES)
def node(request: pytest.FixtureRequest) -> Iterator[Node]:
    with Node(NodeConfig(base=request.param, admin_port=free_port())) as n:
        yield n


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


@pytest.fixture
def trust(tmp_path: Path, admin: httpx.Client, sandbox_server: SandboxServer) -> Trust:
    anchor = tmp_path / "insurer-ca.pem"
    anchor.write_text(admin.get("/insurer/v1/ca").json()["certificate_pem"])
    return Trust(tmp_path, anchor, tmp_path / "cert", tmp_path / "receipts.jsonl", sandbox_server)


@pytest.fixture
def tree(node: Node, trust: Trust, admin: httpx.Client) -> Iterator[Callable[..., None]]:
    """``tree(mode=, cert=, client=, ledger=, context_overrides=, prod_mode=)`` starts ReceiptLedger
    (recording), CertManager, InsuranceClient (and ProdMode: ``prod_mode`` true, or a dict of its args) with
    the given extra worker args, in the order of supervision.toml;
    stopped after the test. A certificate from the sandbox is installed first unless one is (or ``install=False``)."""

    def start(mode: str = "prod", cert: dict[str, Any] | None = None, client: dict[str, Any] | None = None,
              ledger: dict[str, Any] | None = None, install: bool = True,
              context_overrides: dict[str, dict[str, Any]] | None = None,
              prod_mode: bool | dict[str, Any] = False) -> None:
        if install and not (trust.cert_dir / "current.pem").exists():
            trust.install_certificate(admin)
        context = trust.context(mode)
        for section, values in (context_overrides or {}).items():
            context[section] = {**context[section], **values}
        workers = {
            "ReceiptLedger": {"actor": "tests.trust_actors.actors:LedgerRecorder",
                              "args": {**(ledger or {}), "path": str(trust.receipts)}},
            "CertManager": {"actor": "tai_autonomics.actors.cert_manager:CertManager",
                            "args": {**(cert or {}), "context": context}},
            "InsuranceClient": {"actor": "tai_autonomics.actors.insurance_client:InsuranceClient",
                                "args": {**FAST_RETRIES, **(client or {}), "context": context}},
        }
        if prod_mode:
            extra = prod_mode if isinstance(prod_mode, dict) else {}
            workers["ProdMode"] = {"actor": "tai_autonomics.actors.prod_mode:ProdMode",
                                   "args": {**extra, "context": context}}
        node.start_tree(parse_tree({"root": "root", "workers": workers, "supervisors": {"root": {
            "intensity": 10, "period": 60, "children": list(workers)}}}))

    yield start
    node.stop_tree()
