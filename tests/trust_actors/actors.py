"""A stand-in ReceiptLedger for the trust actor tests (importable: the multiprocess base re-creates it by path).

It keeps every appended receipt as a JSON line in ``args['path']``, so what was appended survives
restarts of the tree and can be read by the test directly.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tai_autonomics.errors import TaiError
from tai_autonomics.runtime import Server


class LedgerRecorder(Server):
    """Records appends; refuses the first ``args['refuse']`` of them, as a ledger that cannot store would.
    ``args['answers']`` ({kind: [code, ...]}) answers the next appends of that kind with those codes in
    turn ("" stores it): a disk that comes and goes, a ledger that crashes meanwhile."""

    def init(self, args: dict[str, Any]) -> None:
        self.path = Path(args["path"])
        self.refuse = int(args.get("refuse", 0))
        self.answers = {kind: list(codes) for kind, codes in (args.get("answers") or {}).items()}

    def call_append(self, receipt: dict[str, Any]) -> dict[str, Any]:
        code = self.answers.get(receipt.get("kind"), [""]).pop(0) if self.answers.get(receipt.get("kind")) else ""
        if code:
            raise TaiError(f"refused by the test's script ({code})", code=code)
        if self.refuse:
            self.refuse -= 1
            raise TaiError("the ledger cannot store receipts right now (test)", code="ledger_unavailable")
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(receipt) + "\n")
        return {"seq": len(recorded(self.path)), "chain": receipt["chain"]}

    def call_receipts(self, query: dict[str, Any]) -> list[dict[str, Any]]:
        """ProdMode reads its chain at start (coverage usage); these tests record no operations."""
        return []


def recorded(path: Path, kind: str | None = None) -> list[dict[str, Any]]:
    try:
        lines = path.read_text("utf-8").splitlines()
    except FileNotFoundError:
        return []
    receipts = [json.loads(line) for line in lines]
    return [r for r in receipts if kind is None or r["kind"] == kind]
