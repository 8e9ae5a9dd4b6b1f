"""Fixtures: a node per thespian base, and a tree of the trust actors (a recording ReceiptLedger,
CertManager, InsuranceClient) started per test (the sandbox, ``admin`` and ``trust`` come from
tests/fixtures/)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tai_autonomics.runtime import Node, NodeConfig, parse_tree
from tests.helpers import free_port
from tests.trust_actors.support import FAST_RETRIES, Trust

BASES = ["simpleSystemBase", "multiprocTCPBase"]


@pytest.fixture(scope="module", params=BASES)
def node(request: pytest.FixtureRequest) -> Iterator[Node]:
    with Node(NodeConfig(base=request.param, admin_port=free_port())) as n:
        yield n


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
