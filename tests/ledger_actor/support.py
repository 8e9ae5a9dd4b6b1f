"""The ledger actor's test helpers: drafts, concurrent loads, and the proof check of stored receipts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tai_autonomics.ledger import (
    InclusionProof,
    LedgerPublicKey,
    canonical_json,
    leaf_hash,
    load_ledger_key,
    open_checkpoint,
)
from tai_autonomics.runtime import Node

LEDGER = "ReceiptLedger"
LOADERS = ("load1", "load2", "load3")
PAYLOAD_BASE = {"sku_id": "sku-001", "region": "europe-west1"}


def draft(n: int, chain: str = "policy-a", **extra: Any) -> dict[str, Any]:
    return {"kind": "deploy.intent", "mode": "prod", "chain": chain, "payload": {**PAYLOAD_BASE, "n": n},
            "operation_id": f"op-{n}", **extra}


def public_key(data_dir: Path) -> LedgerPublicKey:
    """The dev key the actor generated in its data directory (its public half)."""
    return load_ledger_key(data_dir=data_dir).public


def run_loads(node: Node, drafts_by_loader: dict[str, list[dict]], window: int) -> dict[str, dict]:
    """Start every loader at once, then wait for each one's results."""
    for name, drafts in drafts_by_loader.items():
        node.call(name, "start", {"drafts": drafts, "window": window})
    return {name: node.call(name, "results", timeout=60) for name in drafts_by_loader}


def assert_proven(node: Node, data_dir: Path, receipts: list[dict]) -> None:
    """Every receipt's inclusion proof leads to the root of the signed checkpoint."""
    checkpoint = node.call(LEDGER, "checkpoint")
    opened = open_checkpoint(checkpoint["note"], public_key(data_dir), "tai-autonomics/ledger")
    assert (opened.size, opened.note) == (checkpoint["size"], checkpoint["note"])
    for receipt in receipts:
        proof = InclusionProof.from_json(node.call(LEDGER, "proof", {"id": receipt["id"]}))
        assert (proof.leaf_index, proof.tree_size) == (receipt["leaf_index"], opened.size)
        proof.verify(leaf_hash(canonical_json(receipt)), opened.root)
