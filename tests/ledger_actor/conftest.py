"""A ReceiptLedger in a supervision tree with load actors beside it, on a node per thespian base.

Helpers check what a third party would: each receipt's inclusion proof against the signed
checkpoint, with nothing but the ledger's public key.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tai_autonomics.ledger import InclusionProof, LedgerPublicKey, canonical_json, leaf_hash, load_ledger_key, open_checkpoint
from tai_autonomics.runtime import Node, parse_tree
from tests.runtime.conftest import node  # noqa: F401  (the node per base, for this directory's tests)

LEDGER = "ReceiptLedger"
LOADERS = ("load1", "load2", "load3")
PAYLOAD_BASE = {"sku_id": "sku-001", "region": "europe-west1"}


@pytest.fixture
def ledger(node: Node, tmp_path: Path) -> Iterator[Path]:  # noqa: F811
    """Start ReceiptLedger (data in ``tmp_path/var``) and the load actors; yield the data dir."""
    data_dir = tmp_path / "var"
    node.start_tree(parse_tree({
        "root": "root",
        "supervisors": {"root": {"intensity": 10, "period": 60, "children": [LEDGER, *LOADERS]}},
        "workers": {LEDGER: {"actor": "tai_autonomics.actors.receipt_ledger:ReceiptLedger",
                             "args": {"context": {"data_dir": str(data_dir), "profile": "dev"}}},
                    **{name: {"actor": "bench._actors:AppendLoad"} for name in LOADERS}},
    }))
    yield data_dir
    node.stop_tree()


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
