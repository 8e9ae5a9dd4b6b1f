"""The store contract, run against SQLite and against Google's Firestore emulator alike."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

from tai_autonomics.ledger import (
    ChainHead,
    ConflictError,
    Ledger,
    LedgerKey,
    LogHead,
    Receipt,
    ReceiptDraft,
    SealedBatch,
    SQLiteStore,
    firestore_store,
    verify_store,
)
from tai_autonomics.ledger.firestore_store import FirestoreStore
from tai_autonomics.ledger.note import sign_checkpoint
from tests.helpers import EMULATOR_PROJECT

CHILD = Path(__file__).with_name("concurrent_child.py")
REPO = Path(__file__).resolve().parents[2]


def draft(i: int, chain: str = "policy-1") -> ReceiptDraft:
    return ReceiptDraft("deploy.intent", "prod", {"i": i}, chain=chain)


def test_an_empty_store(open_store) -> None:
    store = open_store()
    assert store.size() == 0 and store.checkpoint() is None
    assert list(store.leaves()) == [] and list(store.checkpoints()) == []
    assert store.leaf_by_id("nope") is None and store.chain_leaves("c", 0, 10) == []


def test_appended_receipts_read_back_exactly(open_store, key: LedgerKey, monkeypatch) -> None:
    monkeypatch.setattr(firestore_store, "_PAGE", 2)  # Firestore reads page by page: cross pages here
    store = open_store()
    ledger = Ledger.open(store, key)
    first = ledger.append_batch([draft(0, "a"), draft(1, "b"), draft(2, "a")])
    second = ledger.append_batch([draft(3, "b")])
    receipts = first + second
    assert store.size() == 4
    assert [(leaf.leaf_index, leaf.receipt_id, leaf.data, leaf.leaf_hash) for leaf in store.leaves()] == [
        (r.leaf_index, r.id, r.data, r.leaf_hash) for r in receipts
    ]
    assert list(store.leaf_hashes(1, 3)) == [receipts[1].leaf_hash, receipts[2].leaf_hash]
    assert [leaf.leaf_index for leaf in store.leaves(2)] == [2, 3]
    assert store.leaf_by_id(receipts[2].id).data == receipts[2].data
    assert [leaf.receipt_id for leaf in store.chain_leaves("a", 0, 10)] == [receipts[0].id, receipts[2].id]
    assert [leaf.receipt_id for leaf in store.chain_leaves("b", 1, 10)] == [receipts[3].id]
    assert [c.size for c in store.checkpoints()] == [3, 4]
    assert [c.size for c in store.checkpoints(4)] == [4] and [c.size for c in store.checkpoints(0, 3)] == [3]
    assert store.checkpoint() == ledger.checkpoint() == store.checkpoint(4)
    assert verify_store(store, key.public).tree_size == 4


def test_a_size_keeps_its_one_checkpoint(open_store, key: LedgerKey) -> None:
    store = open_store()
    ledger = Ledger.open(store, key)
    ledger.append(draft(1))
    assert store.put_checkpoint(ledger.checkpoint()) == ledger.checkpoint()
    with pytest.raises(ConflictError):
        store.put_checkpoint(sign_checkpoint(ledger.origin, 1, b"\x01" * 32, key))
    assert store.checkpoint(1) == ledger.checkpoint()


def test_a_batch_that_does_not_extend_the_head_is_refused(open_store, key: LedgerKey) -> None:
    store = open_store()
    ledger = Ledger.open(store, key)
    ledger.append(draft(1))
    stale = LogHead(0, {})

    def seal_on_a_stale_head(head: LogHead) -> SealedBatch:
        return ledger._seal_batch(stale, [draft(2)], ["policy-1"], datetime.now(timezone.utc), [None])

    with pytest.raises(ConflictError):
        store.append({"policy-1"}, seal_on_a_stale_head)
    assert store.size() == 1 and [c.size for c in store.checkpoints()] == [1]


def test_a_failing_seal_writes_nothing(open_store, key: LedgerKey) -> None:
    store = open_store()
    ledger = Ledger.open(store, key)
    ledger.append(draft(1))

    def broken(head: LogHead) -> SealedBatch:
        raise RuntimeError("seal failed")

    with pytest.raises(RuntimeError):
        store.append({"policy-1"}, broken)
    nxt = ledger.append(draft(2))
    assert (nxt.seq, nxt.leaf_index, store.size()) == (2, 1, 2)
    verify_store(store, key.public)


def test_two_instances_never_fork_and_see_each_other(open_store, key: LedgerKey) -> None:
    one = Ledger.open(open_store(), key)
    two = Ledger.open(open_store(), key)
    a = one.append(draft(1))
    b = two.append(draft(2))
    c = one.append_batch([draft(3), draft(4, "other")])[0]
    assert [(r.seq, r.prev, r.leaf_index) for r in (a, b, c)] == [(1, "", 0), (2, a.hash, 1), (3, b.hash, 2)]
    checkpoint = two.checkpoint()
    assert checkpoint.size == 4
    two.inclusion_proof(c.id).verify(c.leaf_hash, checkpoint.root)
    one.consistency_proof(1).verify(one._store.checkpoint(1).root, checkpoint.root)


def test_reopen_rebuilds_the_same_tree(open_store, key: LedgerKey) -> None:
    first = Ledger.open(open_store(), key)
    for i in range(5):
        first.append_batch([draft(i), draft(i, "b")])
    again = Ledger.open(open_store(), key)
    assert again.checkpoint() == first.checkpoint() and again.size == 10
    assert again.append(draft(9)).seq == 6


def test_two_processes_appending_to_one_chain_keep_one_valid_chain(open_store, key: LedgerKey) -> None:
    store = open_store()
    if isinstance(store, SQLiteStore):
        target = [str(store.path)]
    else:
        assert isinstance(store, FirestoreStore)
        target = [store.name]
    count = 4
    children = [
        subprocess.Popen(
            [sys.executable, str(CHILD), "sqlite" if isinstance(store, SQLiteStore) else "firestore", *target, str(count), EMULATOR_PROJECT],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO,
        )
        for _ in range(2)
    ]
    acked: list[str] = []
    for child in children:
        out, err = child.communicate(key.private_pem(), timeout=90)
        assert child.returncode == 0, err.decode()[-2000:]
        acked += out.decode().split()
    assert len(acked) == 2 * count
    report = verify_store(store, key.public)
    assert report.tree_size == 2 * count and report.chains == 1
    ids = {leaf.receipt_id for leaf in store.chain_leaves("shared", 0, 100)}
    assert ids == set(acked)


def test_an_append_retried_after_another_instance_won_seals_on_the_winners_leaves(open_store, key: LedgerKey) -> None:
    """The store calls ``seal`` again when its first attempt lost the race: the leaves the lost
    attempt put in the tree must be gone, not stand where the winner's are."""
    store, other = open_store(), open_store()
    ledger, rival = Ledger.open(store, key), Ledger.open(other, key)
    ledger.append(draft(0))
    original = store.append
    raced = []

    def append_losing_once(chains, seal, reads=None):
        if not raced:
            raced.append(True)
            seal(LogHead(1, {"policy-1": store_head(store)}))  # the attempt that loses: its leaf enters the tree
            rival.append_batch([draft(1), draft(2)])  # the winner commits first
        return original(chains, seal) if reads is None else original(chains, seal, reads)

    store.append = append_losing_once
    ledger.append_batch([draft(3), draft(4)])
    assert verify_store(store, key.public).tree_size == 5
    assert ledger.checkpoint().root == rival.checkpoint().root


def store_head(store) -> ChainHead:
    leaf = store.chain_leaves("policy-1", 0, 10)[-1]
    receipt = Receipt.from_data(leaf.leaf_index, leaf.data)
    return ChainHead(receipt.seq, receipt.hash)
