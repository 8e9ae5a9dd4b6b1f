"""Checkpoints are signed per interval and on demand, not per append (docs/specification.md §4):
an append stores receipts only; a read that needs a tree no checkpoint covers signs one; open
and verify take a stored tree ahead of its latest checkpoint; instances signing checkpoints of
different sizes never move the latest one backwards. On both stores."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tai_autonomics.ledger import Ledger, LedgerKey, LedgerStore, ReceiptDraft, SQLiteStore, verify_store
from tai_autonomics.ledger.configured import checkpoint_interval
from tai_autonomics.ledger.errors import LedgerError, StoreUnavailable
from tai_autonomics.ledger.note import open_checkpoint


def draft(n: int, chain: str = "policy-1") -> ReceiptDraft:
    return ReceiptDraft("deploy.intent", "prod", {"n": n}, chain=chain)


def test_an_append_signs_no_checkpoint_and_a_proof_signs_one_on_demand(
        open_store: Callable[[], LedgerStore], key: LedgerKey) -> None:
    store = open_store()
    ledger = Ledger.open(store, key)
    receipt = ledger.append(draft(1))
    assert store.checkpoint() is None and ledger.unsigned == 1
    proof = ledger.inclusion_proof(receipt.id)  # nothing covers it yet: signed now, not refused
    stored = store.checkpoint()
    assert stored is not None and (proof.tree_size, stored.size, ledger.unsigned) == (1, 1, 0)
    proof.verify(receipt.leaf_hash, open_checkpoint(stored.note, key.public, ledger.origin).root)
    again = ledger.append_batch([draft(2), draft(3, "other")])
    assert store.checkpoint() == stored and ledger.unsigned == 2
    assert ledger.sign_latest().size == 3 == store.checkpoint().size  # what the owner's interval does
    assert [c.size for c in store.checkpoints()] == [1, 3]
    ledger.inclusion_proof(again[1].id).verify(again[1].leaf_hash, store.checkpoint().root)


def test_open_takes_a_tree_ahead_of_its_latest_checkpoint_and_verify_checks_the_tail(
        open_store: Callable[[], LedgerStore], key: LedgerKey) -> None:
    first = Ledger.open(open_store(), key)
    signed = [receipt for start in range(0, 300, 100)  # past one complete tile
              for receipt in first.append_batch([draft(n, f"c{n % 3}") for n in range(start, start + 100)])]
    assert first.checkpoint().size == 300
    tail = first.append_batch([draft(n, f"c{n % 3}") for n in range(300, 310)])
    first.close()
    store = open_store()
    assert (store.size(), store.checkpoint().size) == (310, 300)
    report = verify_store(store, key.public)
    assert report.tree_size == 310  # the unsigned tail is checked like the rest
    reopened = Ledger.open(store, key)
    assert (reopened.size, reopened.unsigned) == (310, 10)
    proof = reopened.inclusion_proof(tail[-1].id)
    checkpoint = reopened.checkpoint()
    assert (proof.tree_size, checkpoint.size) == (310, 310) and checkpoint.root == report.root
    proof.verify(tail[-1].leaf_hash, checkpoint.root)
    reopened.consistency_proof(300).verify(store.checkpoint(300).root, checkpoint.root)
    nxt = reopened.append(draft(999, "c0"))
    assert (nxt.leaf_index, nxt.seq) == (310, 105)
    reopened.inclusion_proof(signed[0].id).verify(signed[0].leaf_hash, reopened.checkpoint().root)


def test_a_store_with_receipts_and_no_checkpoint_opens_and_proves(
        open_store: Callable[[], LedgerStore], key: LedgerKey) -> None:
    """What a process killed before its first interval leaves behind."""
    first = Ledger.open(open_store(), key)
    receipts = first.append_batch([draft(n) for n in range(5)])
    first.close()
    store = open_store()
    assert store.checkpoint() is None
    assert verify_store(store, key.public).tree_size == 5
    reopened = Ledger.open(store, key)
    assert reopened.unsigned == 5
    reopened.inclusion_proof(receipts[2].id).verify(receipts[2].leaf_hash, reopened.checkpoint().root)


def test_instances_signing_different_sizes_never_move_the_latest_back(
        open_store: Callable[[], LedgerStore], key: LedgerKey) -> None:
    one, two = Ledger.open(open_store(), key), Ledger.open(open_store(), key)
    one.append_batch([draft(1), draft(2)])
    two.append(draft(3))  # two sees size 3; one still has the tree of 2
    assert two.sign_latest().size == 3
    assert one.sign_latest().size == 2  # signed late, for a smaller tree: stored, but not the latest
    store = open_store()
    assert [c.size for c in store.checkpoints()] == [2, 3] and store.checkpoint().size == 3
    assert one.checkpoint() == two.checkpoint() == store.checkpoint()
    assert two.sign_latest() == store.checkpoint(3)  # the same size again: the same note
    for checkpoint in store.checkpoints():
        assert open_checkpoint(checkpoint.note, key.public, one.origin) == checkpoint
    assert verify_store(store, key.public).tree_size == 3


def test_a_readonly_reader_signs_for_itself_and_stores_nothing(tmp_path, key: LedgerKey) -> None:
    """``ledger export``/``backup`` beside the daemon: a read-only store takes no write."""
    writer = Ledger.open(SQLiteStore(tmp_path / "ledger.sqlite3"), key)
    receipt = writer.append(draft(1))
    reader = Ledger.open(SQLiteStore(tmp_path / "ledger.sqlite3", readonly=True), key, readonly=True)
    checkpoint = reader.checkpoint()
    assert checkpoint.size == 1 and writer._store.checkpoint() is None
    reader.inclusion_proof(receipt.id).verify(receipt.leaf_hash, checkpoint.root)
    assert writer.checkpoint().note == checkpoint.note  # Ed25519 is deterministic: the same note
    reader.close()
    writer.close()


class _FullDisk(SQLiteStore):
    """A store whose disk refuses the checkpoint's write (as a full one does after the append)."""

    def put_checkpoint(self, checkpoint):
        raise StoreUnavailable(f"{self.path}: the disk is full", detail={"reason": "the disk is full"})


def test_a_disk_that_refuses_the_checkpoint_does_not_refuse_the_proof(tmp_path, key: LedgerKey) -> None:
    ledger = Ledger.open(_FullDisk(tmp_path / "ledger.sqlite3"), key)
    receipt = ledger.append(draft(1))
    proof, checkpoint = ledger.inclusion_proof(receipt.id), ledger.checkpoint()
    proof.verify(receipt.leaf_hash, open_checkpoint(checkpoint.note, key.public, ledger.origin).root)
    assert ledger.unsigned == 1 and ledger._store.checkpoint() is None  # signed again once the disk allows
    ledger.close()


@pytest.mark.parametrize("value", [-0.1, 61, True, "1", None])
def test_a_bad_checkpoint_interval_is_refused_naming_it(value) -> None:
    with pytest.raises(LedgerError, match=r"\[ledger\] checkpoint_interval"):
        checkpoint_interval({"checkpoint_interval": value})
    assert checkpoint_interval({}) == 0.25 and checkpoint_interval({"checkpoint_interval": 0}) == 0.0
