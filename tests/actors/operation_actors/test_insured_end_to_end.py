"""The whole insured path on real actors: ReceiptLedger (SQLite), CertManager and InsuranceClient on
a certificate the sandbox insurer issued, ProdMode, Acquisition and Publisher — multiprocess, with
the sandbox as insurer, customer endpoint and marketplace over real sockets."""

from __future__ import annotations

import os
import signal

import httpx
import pytest

from tai_autonomics.actors.operation_api import CALL_TIMEOUT_S
from tai_autonomics.errors import CoverageExceeded
from tai_autonomics.runtime import Node, parse_tree
from tests.actors.operation_actors.support import ARTIFACTS, FAST, deploy_spec
from tests.trust_actors.support import FAST_RETRIES, POLICY_ID, Trust


@pytest.fixture
def insured(node: Node, trust: Trust, admin: httpx.Client):
    trust.install_certificate(admin)
    context = {**trust.context("prod"), "profile": "dev", "sandbox": {"url": trust.sandbox.url}}
    real = "tai_autonomics.actors"
    node.start_tree(parse_tree({"root": "root", "supervisors": {
        "root": {"children": ["ReceiptLedger", "CertManager", "InsuranceClient", "ProdMode", "operations"]},
        "operations": {"intensity": 5, "children": ["Publisher", "Acquisition"]}}, "workers": {
        "ReceiptLedger": {"actor": f"{real}.receipt_ledger:ReceiptLedger", "args": {"context": context}},
        "CertManager": {"actor": f"{real}.cert_manager:CertManager", "args": {"context": context}},
        "InsuranceClient": {"actor": f"{real}.insurance_client:InsuranceClient",
                            "args": {**FAST_RETRIES, "context": context}},
        "ProdMode": {"actor": f"{real}.prod_mode:ProdMode", "args": {"context": context}},
        "Publisher": {"actor": f"{real}.publisher:Publisher", "args": {**FAST, "context": context}},
        "Acquisition": {"actor": f"{real}.acquisition:Acquisition", "args": {**FAST, "context": context}}}}))
    yield node
    node.stop_tree()


def test_insured_deploy_and_publish_are_signed_on_the_policy_chain_and_survive_sigkill(insured: Node) -> None:
    deployed = insured.call("Acquisition", "deploy", {"spec": deploy_spec(sku_id="sku-002", cost="5000"),
                                                      "idempotency_key": "e2e"}, timeout=CALL_TIMEOUT_S)
    published = insured.call("Publisher", "publish", {"work_id": "e2e", "sku_id": "sku-001", "artifacts": ARTIFACTS},
                             timeout=CALL_TIMEOUT_S)
    for result in (deployed, published):
        assert result["status"] == "completed"
        assert all(r["chain"] == POLICY_ID and r["authority"] == "contractual" and r["signature"]
                   for r in result["receipts"])
    usage = insured.call("ReceiptLedger", "usage", {"chain": POLICY_ID})
    assert [(u["sku"], u["count"], u["cost"]) for u in usage] == [("sku-001", 1, "0"), ("sku-002", 1, "5000")]

    info = insured.call("Acquisition", "$info")
    os.kill(info["pid"], signal.SIGKILL)
    insured.whereis("Acquisition", wait=10, after=info["incarnation"])
    again = insured.call("Acquisition", "deploy", {"spec": deploy_spec(sku_id="sku-002", cost="5000"),
                                                   "idempotency_key": "e2e"}, timeout=CALL_TIMEOUT_S)
    assert again == {**deployed, "replayed": True}
    with pytest.raises(CoverageExceeded) as err:  # sku-002 insures 30,000 USD a month
        insured.call("Acquisition", "deploy", {"spec": deploy_spec(sku_id="sku-002", cost="25001")},
                     timeout=CALL_TIMEOUT_S)
    assert err.value.code == "coverage_limit_exceeded" and err.value.detail["current_cost"] == "5000"
