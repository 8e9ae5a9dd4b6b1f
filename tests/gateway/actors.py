"""Actors for the gateway tests (importable: the multiprocess base re-creates them by module path)."""

from __future__ import annotations

import base64
from typing import Any

from tai_autonomics.errors import TaiError
from tests.runtime.actors import Echo

RECEIPTS = {
    f"r-{seq}": {"id": f"r-{seq}", "kind": "deploy.intent", "mode": "prod", "authority": "contractual",
                 "chain": "pol-1", "seq": seq, "prev": "" if seq == 1 else f"h{seq - 1}",
                 "time": "2026-11-25T18:00:00Z", "payload": {"n": seq}, "hash": f"h{seq}", "signature": "c2ln",
                 "key_id": "k1"}
    for seq in (1, 2, 3)
}


class FakeLedger(Echo):
    """Answers the ReceiptLedger's calls from a fixed set of three receipts."""

    def call_receipt(self, payload: dict[str, Any]) -> dict[str, Any]:
        return self._find(payload["id"])

    def call_proof(self, payload: dict[str, Any]) -> dict[str, Any]:
        receipt = self._find(payload["id"])
        return {"leaf_index": receipt["seq"] - 1, "tree_size": payload.get("tree_size", 3), "hashes": ["AAAA"]}

    def call_checkpoint(self, payload: Any) -> dict[str, Any]:
        return {"note": "tai.test/ledger\n3\nAAAA\n\n— tai.test/ledger c2ln\n", "size": 3, "root": "AAAA"}

    def call_tile(self, payload: dict[str, Any]) -> dict[str, Any]:
        if (payload["level"], payload["index"]) != (0, 0) or payload["width"] > 3:
            raise TaiError("tree size 3 has no such tile", code="ledger_not_found")
        return {"data": base64.b64encode(bytes(32 * payload["width"])).decode()}

    def call_entries(self, payload: dict[str, Any]) -> dict[str, Any]:
        if payload["index"] != 0 or payload["width"] > 3:
            raise TaiError("tree size 3 has no such entry bundle", code="ledger_not_found")
        return {"data": base64.b64encode(b"\x00\x01x" * payload["width"]).decode()}

    def call_consistency(self, payload: dict[str, Any]) -> dict[str, Any]:
        if payload["to"] > 3:
            raise TaiError("the ledger is smaller than that", code="not_found", detail={"size": 3})
        return {"from": payload["from"], "to": payload["to"], "hashes": ["AAAA"]}

    def call_receipts(self, payload: dict[str, Any]) -> list[dict[str, Any]]:
        chosen = [r for r in RECEIPTS.values() if r["chain"] == payload["chain"] and r["seq"] > payload["after"]]
        return chosen[: payload["limit"]]

    def call_latest(self, payload: dict[str, Any]) -> list[dict[str, Any]]:
        return list(RECEIPTS.values())[-payload["limit"]:]

    def call_opaque(self, payload: Any) -> Any:
        return {1, 2}  # not JSON: the gateway must say so, not crash

    def call_overloaded(self, payload: Any) -> None:
        raise TaiError("slow down", code="rate_limited")

    def call_conflicting(self, payload: Any) -> None:
        raise TaiError("already done", code="conflict", detail={"first": "op-1"})

    def call_refused(self, payload: Any) -> None:
        raise TaiError("this SKU is not covered", code="sku_not_authorized", detail={"sku": "sku-9"})

    def call_broken_store(self, payload: Any) -> None:
        raise TaiError("cannot write /srv/tai/var/ledger.db: disk I/O error", code="ledger_store_error")

    def _find(self, receipt_id: str) -> dict[str, Any]:
        if receipt_id not in RECEIPTS:
            raise TaiError(f"no receipt {receipt_id!r}", code="ledger_not_found", detail={"id": receipt_id})
        return RECEIPTS[receipt_id]


class Worker(Echo):
    """Echo that also takes casts: a cast ``echo`` counts like a call."""

    def cast_echo(self, payload: Any) -> None:
        self.seen += 1


class FakeOperations(Echo):
    """Answers the operation actors' calls (Acquisition, Publisher, Pricing, ProdMode, CertManager,
    InsuranceClient) in their real shapes; the real actors meet the gateway in the daemon test."""

    def _result(self, operation_id: str) -> dict[str, Any]:
        return {"operation_id": operation_id, "status": "completed", "receipts": [RECEIPTS["r-1"], RECEIPTS["r-2"]]}

    def call_deploy(self, payload: dict[str, Any]) -> dict[str, Any]:
        """A key starting ``replayed-`` is answered as a repeat of a finished operation."""
        key = payload.get("idempotency_key") or "op-1"
        return {**self._result(key), "replayed": True} if key.startswith("replayed-") else self._result(key)

    def call_publish(self, payload: dict[str, Any]) -> dict[str, Any]:
        return self._result("op-2")

    def call_get(self, payload: dict[str, Any]) -> dict[str, Any]:
        return self._result(payload.get("operation_id") or payload.get("work_id"))

    def call_quote(self, payload: dict[str, Any]) -> dict[str, Any]:
        return {"quote": {"price": "10.00"}, "receipt": RECEIPTS["r-3"]}

    def call_mode(self, payload: Any) -> dict[str, Any]:
        return {"mode": "prod", "reason": "certificate valid and policy verified", "configured": "prod",
                "manual_resume": False}

    def call_status(self, payload: Any) -> dict[str, Any]:
        """CertManager's and InsuranceClient's with what /metrics reads from them (numbers checked
        in tests/gateway/test_routes.py::test_metrics)."""
        if self.name == "CertManager":
            return {"loaded": True, "policy_id": "pol-1", "days_left": 41, "revoked": False}
        if self.name == "InsuranceClient":
            return {"configured": True, "policy_id": "pol-1", "breaker_state": "closed",
                    "cache": {"status": "active", "age_s": 3.0, "fresh": True}, "in_flight": 0,
                    "cache_lookups": {"hit": 9, "miss": 1},
                    "request_seconds": {"buckets": [[0.5, 2], [1.0, 3], [2.5, 4]], "count": 5, "sum": 7.25}}
        return {"loaded": True, "policy_id": "pol-1"}

    def call_record(self, payload: dict[str, Any]) -> dict[str, Any]:
        """ProdMode's ``record``: the shell's (and contract events') receipts, kept for ``recorded``; a line saying
        ``unrecordable`` is refused as a ledger that cannot write would refuse it."""
        if "unrecordable" in payload["payload"].get("line", ""):
            raise TaiError("the ledger cannot write now", code="ledger_store_error")
        self.records = [*getattr(self, "records", []), payload]
        return {**RECEIPTS["r-1"], "id": f"shell-{len(self.records)}", "kind": payload["kind"],
                "payload": payload["payload"]}

    def call_recorded(self, payload: Any) -> list[dict[str, Any]]:
        return getattr(self, "records", [])
