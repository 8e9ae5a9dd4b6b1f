"""The ReceiptLedger signs checkpoints per interval and on demand, not per commit
(docs/specification.md §4): a proof asked right after an append is served; while appends
stream, at most about one checkpoint per ``[ledger] checkpoint_interval`` is signed."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tai_autonomics.ledger import (
    DB_FILE,
    InclusionProof,
    Ledger,
    ReceiptDraft,
    SQLiteStore,
    canonical_json,
    leaf_hash,
    load_ledger_key,
    open_checkpoint,
)
from tai_autonomics.runtime import Node, parse_tree
from tests.ledger_actor.support import LEDGER, LOADERS, draft, public_key, run_loads
from tests.helpers import wait_until

Start = Callable[[float], Path]


@pytest.fixture
def start(node: Node, tmp_path: Path) -> Iterator[Start]:
    """Start ReceiptLedger with a ``checkpoint_interval`` and the load actors; the data dir."""
    def started(interval: float) -> Path:
        data_dir = tmp_path / "var"
        node.start_tree(parse_tree({
            "root": "root",
            "supervisors": {"root": {"intensity": 10, "period": 60, "children": [LEDGER, *LOADERS]}},
            "workers": {LEDGER: {"actor": "tai_autonomics.actors.receipt_ledger:ReceiptLedger",
                                 "args": {"context": {"data_dir": str(data_dir), "profile": "dev",
                                                      "ledger": {"checkpoint_interval": interval}}}},
                        **{name: {"actor": "bench._actors:AppendLoad"} for name in LOADERS}},
        }))
        return data_dir

    yield started
    node.stop_tree()


def stored_checkpoints(data_dir: Path) -> list[int]:
    """The sizes of the checkpoints in the store, read beside the actor."""
    store = SQLiteStore(data_dir / DB_FILE, readonly=True)
    try:
        return [checkpoint.size for checkpoint in store.checkpoints()]
    finally:
        store.close()


def test_a_proof_asked_right_after_an_append_is_signed_on_demand(node: Node, start: Start) -> None:
    data_dir = start(60.0)  # no interval ends within the test: only the reads sign
    receipt = node.call(LEDGER, "append", draft(1))
    assert node.call(LEDGER, "status")["unsigned"] == 1 and stored_checkpoints(data_dir) == []
    proof = InclusionProof.from_json(node.call(LEDGER, "proof", {"id": receipt["id"]}))
    checkpoint = node.call(LEDGER, "checkpoint")
    opened = open_checkpoint(checkpoint["note"], public_key(data_dir), "tai-autonomics/ledger")
    assert (proof.leaf_index, proof.tree_size, opened.size) == (0, 1, 1)
    proof.verify(leaf_hash(canonical_json(receipt)), opened.root)
    assert node.call(LEDGER, "status")["unsigned"] == 0 and stored_checkpoints(data_dir) == [1]
    second = node.call(LEDGER, "append", draft(2))
    tile = node.call(LEDGER, "tile", {"level": 0, "index": 0, "width": 2})  # the latest tree's: signed first
    assert tile["data"] and stored_checkpoints(data_dir) == [1, 2] and second["leaf_index"] == 1


def test_streaming_appends_sign_at_most_one_checkpoint_per_interval(node: Node, start: Start) -> None:
    interval = 30.0
    data_dir = start(interval)
    per_loader = 100
    drafts = {name: [draft(i * 1000 + n, chain=f"policy-{n % 3}") for n in range(per_loader)]
              for i, name in enumerate(LOADERS)}
    began = time.monotonic()
    results = run_loads(node, drafts, window=10)
    elapsed = time.monotonic() - began
    assert all("receipt" in r for summary in results.values() for r in summary["results"])
    status = node.call(LEDGER, "status")
    signed = stored_checkpoints(data_dir)
    assert status["appended"] == per_loader * len(LOADERS) and status["batches"] >= 10, status
    assert len(signed) <= elapsed / interval + 1, (signed, elapsed, status["batches"])
    assert status["unsigned"] == status["size"] - max(signed, default=0) > 0


def test_the_interval_signs_the_latest_tree_without_a_read(node: Node, start: Start) -> None:
    interval = 0.05
    data_dir = start(interval)
    began = time.monotonic()
    for n in range(20):
        node.call(LEDGER, "append", draft(n))
    wait_until(lambda: node.call(LEDGER, "status")["unsigned"] == 0, what="the interval's checkpoint")
    elapsed = time.monotonic() - began
    signed = stored_checkpoints(data_dir)
    assert signed[-1] == 20 and signed == sorted(signed)
    assert len(signed) <= elapsed / interval + 2, (signed, elapsed)


def test_a_start_on_a_tail_no_checkpoint_covers_signs_it_at_its_interval(
        node: Node, start: Start, tmp_path: Path) -> None:
    """What a killed incarnation leaves (receipts appended, their checkpoint not signed yet):
    the next one arms its interval at start, and signs without being asked."""
    data_dir = tmp_path / "var"
    before = Ledger.open(SQLiteStore(data_dir / DB_FILE), load_ledger_key(data_dir=data_dir))
    before.append_batch([ReceiptDraft("deploy.intent", "prod", {"n": n}, chain="policy-1") for n in range(3)])
    before.close()
    assert stored_checkpoints(data_dir) == []
    start(0.05)
    # status signs nothing (and on simpleSystemBase, calling is what lets the timer fire)
    wait_until(lambda: node.call(LEDGER, "status")["unsigned"] == 0, what="the tail's checkpoint, signed at start")
    assert stored_checkpoints(data_dir) == [3]
