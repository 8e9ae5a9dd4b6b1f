"""The operation actors' test driver (one tree per test: the real ReceiptLedger, a configurable ProdMode,
Acquisition and Publisher), their fast retries, and a valid deploy request."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from tai_autonomics.actors.operation_api import CALL_TIMEOUT_S
from tai_autonomics.runtime import Node, parse_tree
from tests.actors.operation_actors.stubs import POLICY

FAST = {"timeout_s": 1.0, "attempts": 3, "backoff_base_s": 0.05, "backoff_cap_s": 0.2, "deadline_s": 5.0}


class Ops:
    """Drives one tree: start it, call the actors, read the ledger and the sandbox's request log."""

    def __init__(self, node: Node, sandbox_url: str, data_dir: Path) -> None:
        self.node, self.sandbox_url, self.data_dir = node, sandbox_url, data_dir
        self.started = False

    def start(self, mode: str = "prod", refusal: dict | None = None, context: dict | None = None,
              real_prod_mode: bool = False, **args: Any) -> Ops:
        """Start the tree; ``real_prod_mode`` runs the real ProdMode on stand-ins for its neighbours."""
        context = {"mode": mode, "profile": "dev", "data_dir": str(self.data_dir),
                   "sandbox": {"url": self.sandbox_url}, **(context or {})}
        operation = {"args": {"context": context, **FAST, **args}}
        workers = {"ReceiptLedger": {"actor": "tai_autonomics.actors.receipt_ledger:ReceiptLedger",
                                     "args": {"context": context}},
                   "ProdMode": {"actor": "tests.actors.operation_actors.stubs:ProdModeStub",
                                "args": {"mode": mode, "refusal": refusal}},
                   "Publisher": {"actor": "tai_autonomics.actors.publisher:Publisher", **operation},
                   "Acquisition": {"actor": "tai_autonomics.actors.acquisition:Acquisition", **operation}}
        trust = []
        if real_prod_mode:
            trust = ["CertManager", "InsuranceClient"]
            workers.update({"CertManager": {"actor": "tests.actors.stubs:CertManagerStub"},
                            "InsuranceClient": {"actor": "tests.actors.stubs:InsuranceStub"},
                            "ProdMode": {"actor": "tai_autonomics.actors.prod_mode:ProdMode",
                                         "args": {"context": context}}})
        self.node.start_tree(parse_tree({"root": "root", "supervisors": {
            "root": {"intensity": 5, "children": ["ReceiptLedger", *trust, "ProdMode", "operations"]},
            "operations": {"intensity": 5, "children": ["Publisher", "Acquisition"]}}, "workers": workers}))
        self.started = True
        return self

    def call(self, actor: str, msg_type: str, payload: Any) -> Any:
        return self.node.call(actor, msg_type, payload, timeout=CALL_TIMEOUT_S)

    def deploy(self, spec: dict[str, Any] | None = None, key: str | None = None) -> dict[str, Any]:
        request: dict[str, Any] = {"spec": spec or deploy_spec()}
        if key is not None:
            request["idempotency_key"] = key
        return self.call("Acquisition", "deploy", request)

    def publish(self, work_id: str = "work-1", **artifacts: str) -> dict[str, Any]:
        return self.call("Publisher", "publish", {"work_id": work_id, "sku_id": "sku-001",
                                                  "artifacts": {**ARTIFACTS, **artifacts}})

    def receipts(self) -> list[dict[str, Any]]:
        """Every receipt, contractual (the policy chain) and advisory (the eval session), in ledger order."""
        session = self.node.call("ReceiptLedger", "status")["session"]
        found = [r for chain in (POLICY, session)
                 for r in self.node.call("ReceiptLedger", "receipts", {"chain": chain, "limit": 1000})]
        return sorted(found, key=lambda r: r["leaf_index"])

    def kinds(self) -> list[str]:
        return [r["kind"] for r in self.receipts()]

    def requests(self, endpoint: str) -> list[dict[str, Any]]:
        with httpx.Client(base_url=self.sandbox_url) as admin:
            return admin.get("/admin/requests", params={"endpoint": endpoint}).json()["requests"]

    def fault(self, **fault: Any) -> None:
        with httpx.Client(base_url=self.sandbox_url) as admin:
            admin.post("/admin/faults", json=fault).raise_for_status()


ARTIFACTS = {"code": "print('hi')\n", "tests": "assert True\n", "docs": "# Hi\n", "metadata": '{"name": "hi"}'}


def deploy_spec(**changes: Any) -> dict[str, Any]:
    return {"sku_id": "sku-001", "target_cloud": "gcp", "customer_ref": "acme", "customer_account": "acct-1",
            "region": "europe-west1", "artifacts": {"image": "registry.example/app:1"}, "cost": "100", **changes}
