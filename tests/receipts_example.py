"""The worked example of docs/receipts.md, made by our own ledger code.

A tiny ledger (three contractual receipts on one policy's chain) sealed with a key made from a
fixed, published seed, at fixed times and with fixed receipt ids, then exported with
``export_ledger``. ``tests/test_receipts_doc.py`` holds every ``<!-- example: NAME -->`` block of
the doc equal to what this produces, so the doc cannot drift from the code.

When the wire format changes on purpose: ``python -m tests.receipts_example --write`` rewrites
those blocks of docs/receipts.md (review the diff: an auditor's verifier changes with it).
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import re
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from unittest import mock

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tai_autonomics.ledger import Ledger, LedgerKey, ReceiptDraft, SQLiteStore, export_ledger
from tai_autonomics.ledger import receipts as receipts_module

DOC = Path(__file__).resolve().parents[1] / "docs" / "receipts.md"
#: The example key's Ed25519 seed: published in the doc, so it signs nothing that matters.
SEED = hashlib.sha256(b"TAI Autonomics docs/receipts.md worked example key").digest()
POLICY = "dev-policy-0001"
START = datetime(2026, 12, 5, 9, 0, 0, tzinfo=UTC)
DRAFTS = (
    ReceiptDraft("deploy.intent", "prod", {"sku_id": "sku-001", "target_cloud": "gcp", "region": "europe-west1",
                                           "cost": 250}, chain=POLICY, operation_id="op-0001"),
    ReceiptDraft("deploy.completed", "prod", {"deployment_id": "dep-42", "status": "deployed"},
                 chain=POLICY, operation_id="op-0001"),
    ReceiptDraft("pricing.quoted", "prod", {"customer_id": "acme", "price": 1200.5}, chain=POLICY),
)
_BLOCK = re.compile(r"<!-- example: (?P<name>[a-z0-9_.-]+) -->\n```[a-z]*\n(?P<body>.*?)```\n", re.S)


def example_key() -> LedgerKey:
    return LedgerKey(Ed25519PrivateKey.from_private_bytes(SEED))


def make_export(out: Path) -> dict[str, str]:
    """Build the example ledger, export it to ``out``, and return every doc block by name."""
    ids = (f"00000000-0000-4000-8000-{n:012d}" for n in itertools.count(1))
    times = (START + timedelta(seconds=n) for n in itertools.count())
    key = example_key()
    with mock.patch.object(receipts_module, "_random_uuid", lambda: next(ids)):
        ledger = Ledger.open(SQLiteStore(out.parent / f"{out.name}.sqlite3"), key, clock=lambda: next(times))
        try:
            for draft in DRAFTS:
                ledger.append(draft)
            export_ledger(ledger, out)
            consistency = ledger.consistency_proof(1, len(DRAFTS))
        finally:
            ledger.close()
    lines = (out / "receipts.jsonl").read_bytes().splitlines()
    first = json.loads(lines[0])
    body = {k: v for k, v in first.items() if k not in ("hash", "key_id", "signature", "session_mac")}
    import rfc8785  # the reference encoder, not ours: what an auditor would use

    leaves = [hashlib.sha256(b"\x00" + line).hexdigest() for line in lines]
    return {
        "seed": SEED.hex() + "\n",
        "public_key.pem": (out / "public_key.pem").read_text(),
        "receipt-0": lines[0].decode() + "\n",
        "receipt-0-pretty": json.dumps(first, indent=2, ensure_ascii=False) + "\n",
        "body-0": rfc8785.dumps(body).decode() + "\n",
        "hash-0": hashlib.sha256(rfc8785.dumps(body)).hexdigest() + "\n",
        "leaf-hashes": "".join(f"leaf {i}: {h}\n" for i, h in enumerate(leaves)),
        "node-01": hashlib.sha256(b"\x01" + bytes.fromhex(leaves[0]) + bytes.fromhex(leaves[1])).hexdigest() + "\n",
        "checkpoint": (out / "checkpoint").read_text(),
        "proof-0": (out / "proofs.jsonl").read_text().splitlines()[0] + "\n",
        "consistency-1-3": json.dumps(consistency.to_json(), separators=(",", ":")) + "\n",
        "root-3": base64.b64decode((out / "checkpoint").read_text().split("\n")[2]).hex() + "\n",
    }


def doc_blocks(text: str) -> dict[str, str]:
    """The ``<!-- example: NAME -->`` fenced blocks of the doc, by name."""
    return {m["name"]: m["body"] for m in _BLOCK.finditer(text)}


def rewrite(text: str, blocks: dict[str, str]) -> str:
    def one(m: re.Match[str]) -> str:
        fence = m.group(0).split("\n", 2)[1]
        return f"<!-- example: {m['name']} -->\n{fence}\n{blocks[m['name']]}```\n"
    return _BLOCK.sub(one, text)


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        made = make_export(Path(tmp) / "export")
    if sys.argv[1:] == ["--write"]:
        DOC.write_text(rewrite(DOC.read_text(), made))
    else:
        for name, body in made.items():
            print(f"<!-- example: {name} -->\n```\n{body}```\n")
