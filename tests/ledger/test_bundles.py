"""Stored entry bundles (C2SP ``tlog-tiles`` ``tile/entries/<N>``): each full bundle is written
with the batch that completes it and is the bundle assembled from its receipts, byte for byte,
whoever appended them; a ledger older than bundles opens without filling them and serves its
history's bundles from its receipts (and ``ledger fill-bundles`` stores them offline); ``verify``
names a hand-edited bundle."""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Callable, Collection
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tai_autonomics.cli import main
from tai_autonomics.ledger import (
    DB_FILE,
    Ledger,
    LedgerKey,
    LedgerStore,
    ReceiptDraft,
    SQLiteStore,
    VerificationError,
    load_ledger_key,
)
from tai_autonomics.ledger.bundles import fill_bundles
from tai_autonomics.ledger.errors import ConflictError
from tai_autonomics.ledger.firestore_store import FirestoreStore
from tai_autonomics.ledger.store import NO_READS, EffectReads, LogHead, SealedBatch
from tai_autonomics.ledger.tiles import TILE_WIDTH, entry_bundle
from tai_autonomics.ledger.verify import verify_store
from tests.helpers import EMULATOR_PROJECT

_MAX_BATCH = {"sqlite": 600, "firestore": 120}  # FirestoreStore.max_batch is 120


def _drafts(start: int, sizes: list[int]) -> list[ReceiptDraft]:
    """Receipts of varied lengths (so bundles' 16-bit lengths vary), numbered from ``start``."""
    return [ReceiptDraft("test.note", "prod", {"n": start + n, "pad": "x" * size}, chain="c")
            for n, size in enumerate(sizes)]


def _assembled(store: LedgerStore, index: int, width: int = TILE_WIDTH) -> bytes:
    """The bundle as it was served before bundles were stored: assembled from its receipts."""
    first = index * TILE_WIDTH
    leaves = list(store.leaves(first, first + width))
    assert [leaf.leaf_index for leaf in leaves] == list(range(first, first + width))
    return entry_bundle([leaf.data for leaf in leaves])


def _opener(kind: str, tmp_path: Path) -> Callable[[], LedgerStore]:
    """Opens connections to one new store of ``kind`` (call again for a second instance)."""
    name = uuid.uuid4().hex
    if kind == "sqlite":
        return lambda: SQLiteStore(tmp_path / f"{name}.sqlite3")
    return lambda: FirestoreStore(f"test-{name}", project=EMULATOR_PROJECT)


@pytest.mark.parametrize("kind", ["sqlite", "firestore"])
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_stored_bundles_are_the_bundles_assembled_from_the_receipts(
        kind: str, data: st.DataObject, request: pytest.FixtureRequest, tmp_path: Path, key: LedgerKey) -> None:
    """Random batch sizes, appended by two instances in turn (each then sees the other's receipts
    only in the store), and one attempt that sealed a batch and did not commit it."""
    if kind == "firestore":
        request.getfixturevalue("firestore_emulator")
    open_store = _opener(kind, tmp_path)
    ledgers = [Ledger.open(open_store(), key, max_batch=_MAX_BATCH[kind]) for _ in range(2)]
    reader = open_store()
    try:
        batches = data.draw(st.lists(st.integers(1, _MAX_BATCH[kind]), min_size=3, max_size=8), label="batches")
        for number, count in enumerate(batches):
            writer = ledgers[data.draw(st.integers(0, 1), label=f"writer of batch {number}")]
            sizes = data.draw(st.lists(st.integers(0, 300), min_size=count, max_size=count), label="lengths")
            writer.append_batch(_drafts(writer._store.size(), sizes))
        size = reader.size()
        assert size == sum(batches)
        for index in range(size // TILE_WIDTH):
            assert reader.bundle(index) == _assembled(reader, index), f"bundle {index}"
            assert ledgers[0].entry_bundle(index, TILE_WIDTH) == _assembled(reader, index)
        if size % TILE_WIDTH:
            index, width = divmod(size, TILE_WIDTH)
            assert reader.bundle(index) is None  # the partial bundle is never stored
            assert ledgers[1].entry_bundle(index, width) == _assembled(reader, index, width)
        verify_store(reader, key.public)
    finally:
        for ledger in ledgers:
            ledger.close()
        reader.close()


class _LosesOneAttempt(SQLiteStore):
    """A store whose next append seals its batch, then fails before writing it (what a Firestore
    attempt that lost the head to another instance does before it is sealed again)."""

    lose_next = False

    def append(self, chains: Collection[str], seal: Callable[[LogHead], SealedBatch],
               reads: EffectReads = NO_READS) -> SealedBatch:
        if not self.lose_next:
            return super().append(chains, seal, reads)
        self.lose_next = False

        def sealed_then_lost(head: LogHead) -> SealedBatch:
            seal(head)
            raise ConflictError("another instance committed first")

        return super().append(chains, sealed_then_lost, reads)


def test_a_batch_that_did_not_commit_leaves_no_receipt_in_a_later_bundle(tmp_path: Path, key: LedgerKey) -> None:
    store = _LosesOneAttempt(tmp_path / "ledger.sqlite3")
    ledger = Ledger.open(store, key)
    ledger.append_batch(_drafts(0, [10] * 200))
    store.lose_next = True
    with pytest.raises(ConflictError):
        ledger.append_batch(_drafts(200, [20] * 100))  # would have completed bundle 0
    ledger.append_batch(_drafts(200, [30] * 100))
    assert store.bundle(0) == _assembled(store, 0)
    verify_store(store, key.public)
    ledger.close()


def _filled(path: Path, key: LedgerKey, count: int) -> None:
    ledger = Ledger.open(SQLiteStore(path), key)
    for start in range(0, count, 200):
        ledger.append_batch(_drafts(start, [start % 97] * min(200, count - start)))
    ledger.close()


def _bundle_rows(path: Path) -> list[int]:
    with sqlite3.connect(path) as db:
        return [idx for (idx,) in db.execute("SELECT idx FROM bundles ORDER BY idx")]


def test_a_version_3_file_opens_without_filling_bundles_and_serves_them(tmp_path: Path, key: LedgerKey) -> None:
    """A version-3 file (this schema without the bundles table) is read as it is by a read-only
    open, and migrated by a writer without a bundle written (no backfill at open: a start reads
    no receipt); its history's bundles are assembled from its receipts, the next one is stored."""
    path = tmp_path / "ledger.sqlite3"
    _filled(path, key, 600)
    before = SQLiteStore(path, readonly=True)
    expected = {index: _assembled(before, index) for index in (0, 1)}
    partial = _assembled(before, 2, 600 - 2 * TILE_WIDTH)
    before.close()
    with sqlite3.connect(path) as db:
        db.executescript("DROP TABLE bundles; PRAGMA user_version=3;")

    reader = SQLiteStore(path, readonly=True)
    assert reader.bundle(0) is None
    old = Ledger.open(reader, key)
    assert [old.entry_bundle(index, TILE_WIDTH) for index in (0, 1)] == [expected[0], expected[1]]
    assert old.entry_bundle(2, 600 - 2 * TILE_WIDTH) == partial
    verify_store(reader, key.public)

    class _Counted(SQLiteStore):
        leaves_read = 0

        def leaves(self, start: int = 0, end: int | None = None):  # type: ignore[no-untyped-def]
            for leaf in super().leaves(start, end):
                self.leaves_read += 1
                yield leaf

    store = _Counted(path)
    ledger = Ledger.open(store, key)
    assert store.leaves_read == 0 and _bundle_rows(path) == []
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 4
    assert [ledger.entry_bundle(index, TILE_WIDTH) for index in (0, 1)] == [expected[0], expected[1]]
    ledger.append_batch(_drafts(600, [5] * 200))  # completes bundle 2: its first 88 receipts are read
    assert _bundle_rows(path) == [2]
    assert store.bundle(2) == _assembled(store, 2) == ledger.entry_bundle(2, TILE_WIDTH)
    assert store.bundle(2)[: len(partial)] == partial
    ledger.close()
    old.close()
    verified = SQLiteStore(path, readonly=True)
    verify_store(verified, key.public)
    verified.close()


def test_a_firestore_ledger_older_than_bundles_serves_them_from_its_receipts(
        firestore_emulator: str, key: LedgerKey) -> None:
    open_store = _opener("firestore", Path())
    ledger = Ledger.open(open_store(), key, max_batch=120)
    for start in range(0, 600, 120):
        ledger.append_batch(_drafts(start, [start % 50] * 120))
    store = open_store()
    expected = [_assembled(store, index) for index in (0, 1)]
    assert [store.bundle(index) for index in (0, 1)] == expected  # written, not assembled
    for doc in store.head_ref.collection("bundles").stream():
        doc.reference.delete()  # what a ledger written before bundles holds
    reopened = Ledger.open(store, key)
    assert store.bundle(0) is None
    assert [reopened.entry_bundle(index, TILE_WIDTH) for index in (0, 1)] == expected
    verify_store(store, key.public)
    ledger.close()
    reopened.close()


def test_verify_names_a_hand_edited_bundle(tmp_path: Path, key: LedgerKey) -> None:
    path = tmp_path / "ledger.sqlite3"
    _filled(path, key, 600)
    with sqlite3.connect(path) as db:
        (entries,) = db.execute("SELECT entries FROM bundles WHERE idx = 1").fetchone()
        db.execute("UPDATE bundles SET entries = ? WHERE idx = 1", (entries[:-1] + b"!",))
    edited = SQLiteStore(path, readonly=True)
    with pytest.raises(VerificationError) as err:
        verify_store(edited, key.public)
    edited.close()
    assert err.value.where == "entry bundle 1" and err.value.detail["bundle_index"] == 1


def test_a_receipt_too_long_for_a_bundle_is_still_appended(tmp_path: Path, key: LedgerKey) -> None:
    """A bundle entry's length is 16 bits: the bundle of a longer receipt is not stored (serving
    it is refused as it always was), and the append that completes it is not refused."""
    store = SQLiteStore(tmp_path / "ledger.sqlite3")
    ledger = Ledger.open(store, key)
    ledger.append_batch(_drafts(0, [10] * 255 + [70_000]))
    assert ledger.size == TILE_WIDTH and store.bundle(0) is None
    ledger.append_batch(_drafts(256, [10] * 256))
    assert store.bundle(1) == _assembled(store, 1)
    verify_store(store, key.public)
    ledger.close()


def test_fill_bundles_stores_the_history_of_a_version_3_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """``ledger fill-bundles`` (the offline backfill): the bundles a version-3 file lacks are
    stored, the same bytes as assembled; a second run writes none; verify passes. A data directory
    without a ledger is an error, and gets none."""
    data_dir = tmp_path / "var"
    path = data_dir / DB_FILE
    _filled(path, load_ledger_key(data_dir=data_dir), 1100)
    with sqlite3.connect(path) as db:
        db.executescript("DROP TABLE bundles; PRAGMA user_version=3;")
    runs = []
    for _ in range(2):
        assert main(["ledger", "fill-bundles", "--data-dir", str(data_dir)]) == 0
        out, err = capsys.readouterr()
        runs.append(json.loads(out))
    assert runs == [{"ok": True, "bundles": 4, "written": 4}, {"ok": True, "bundles": 4, "written": 0}]
    assert "1024/1024 receipts" in err
    store = SQLiteStore(path, readonly=True)
    assert _bundle_rows(path) == [0, 1, 2, 3]
    empty = tmp_path / "nodb"
    load_ledger_key(data_dir=empty)
    assert main(["ledger", "fill-bundles", "--data-dir", str(empty)]) == 2
    assert "no ledger database" in capsys.readouterr().err and not (empty / DB_FILE).exists()
    assert [store.bundle(index) for index in range(4)] == [_assembled(store, index) for index in range(4)]
    assert main(["ledger", "verify", "--data-dir", str(data_dir)]) == 0
    store.close()


def test_fill_bundles_on_firestore_leaves_stored_bundles_as_they_are(firestore_emulator: str, key: LedgerKey) -> None:
    open_store = _opener("firestore", Path())
    ledger = Ledger.open(open_store(), key, max_batch=120)
    for start in range(0, 600, 120):
        ledger.append_batch(_drafts(start, [start % 50] * 120))
    store = open_store()
    expected = [_assembled(store, index) for index in (0, 1)]
    store.head_ref.collection("bundles").document(f"{1:012d}").delete()
    assert fill_bundles(store).to_json() == {"bundles": 2, "written": 1}
    assert [store.bundle(index) for index in (0, 1)] == expected
    ledger.close()
    store.close()
