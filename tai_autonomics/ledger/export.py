"""``ledger export``: the docs/receipts.md directory a customer verifies offline."""

from __future__ import annotations

import json
from pathlib import Path

from tai_autonomics.ledger.core import Ledger
from tai_autonomics.ledger.errors import LedgerError
from tai_autonomics.ledger.note import Checkpoint
from tai_autonomics.ledger.verify import CHECKPOINT_FILE, PROOFS_FILE, PUBLIC_KEY_FILE, RECEIPTS_FILE


def export_ledger(ledger: Ledger, out_dir: str | Path) -> Checkpoint:
    """Write receipts.jsonl, proofs.jsonl (each receipt's inclusion proof, same order),
    checkpoint (the signed note covering all of them) and public_key.pem into ``out_dir``."""
    out = Path(out_dir)
    checkpoint = ledger.checkpoint()
    try:
        out.mkdir(parents=True, exist_ok=True)
        with open(out / RECEIPTS_FILE, "wb") as receipts, open(out / PROOFS_FILE, "w", encoding="ascii") as proofs:
            for receipt, proof in zip(ledger.iter_receipts(0, checkpoint.size), ledger.leaf_proofs(checkpoint.size),
                                      strict=True):
                receipts.write(receipt.data + b"\n")
                proofs.write(json.dumps(proof.to_json(), separators=(",", ":")) + "\n")
        (out / CHECKPOINT_FILE).write_text(checkpoint.note, encoding="utf-8")
        (out / PUBLIC_KEY_FILE).write_bytes(ledger.public_key.pem())
    except OSError as exc:
        raise LedgerError(f"cannot write the export to {out}: {exc.strerror}", code="ledger_export_failed") from None
    return checkpoint
