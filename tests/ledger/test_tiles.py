"""The tiled tree: the same roots and proofs as the in-memory tree, tiles as C2SP names them, a
start that reads a constant number of rows, the migration of older files, and ``verify`` naming a
hand-edited tile."""

from __future__ import annotations

import hashlib
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tai_autonomics.ledger import Ledger, LedgerKey, MerkleTree, ReceiptDraft, SQLiteStore, VerificationError
from tai_autonomics.ledger.firestore_store import FirestoreStore
from tai_autonomics.ledger.tiles import (
    TILE_WIDTH,
    TiledTree,
    encode_index,
    entry_bundle,
    parse_tile_path,
    tile_path,
    tiles_of,
)
from tai_autonomics.ledger.verify import verify_store
from tests.helpers import EMULATOR_PROJECT


def _leaves(n: int) -> list[bytes]:
    return [hashlib.sha256(i.to_bytes(8, "big")).digest() for i in range(n)]


class _Store:
    """What a store keeps of a tree: its leaf hashes and the tiles each append handed over."""

    def __init__(self) -> None:
        self.leaves: list[bytes] = []
        self.tiles: dict[tuple[int, int], bytes] = {}
        self.reads = 0

    def tile(self, level: int, index: int) -> bytes | None:
        self.reads += 1
        return self.tiles.get((level, index))

    def leaf_hashes(self, start: int, end: int) -> Iterator[bytes]:
        self.reads += end - start
        return iter(self.leaves[start:end])

    def commit(self, tree: TiledTree, leaves: list[bytes]) -> None:
        self.leaves += leaves
        self.tiles.update(((t.level, t.index), t.hashes) for t in tree.drain())
        tree.settle()


def _grown(batches: list[int], cache_bytes: int = 1) -> tuple[_Store, TiledTree, MerkleTree]:
    store, tree, reference = _Store(), None, MerkleTree()
    tree = TiledTree(store, cache_bytes=cache_bytes)
    for count in batches:
        leaves = _leaves(reference.size + count)[reference.size :]
        tree.extend(leaves)
        reference.extend(leaves)
        store.commit(tree, leaves)
    return store, tree, reference


@settings(max_examples=40, deadline=None)
@given(batches=st.lists(st.integers(1, 700), min_size=1, max_size=5), data=st.data())
def test_the_tiled_tree_gives_the_in_memory_trees_roots_and_proofs(batches: list[int], data: st.DataObject) -> None:
    store, appended, reference = _grown(batches)
    reopened = TiledTree(store, cache_bytes=1)  # one cached tile: every other tile is read again
    reopened.load(reference.size)
    for tree in (appended, reopened):
        assert tree.root() == reference.root()
        for _ in range(5):
            size = data.draw(st.integers(1, reference.size))
            index = data.draw(st.integers(0, size - 1))
            old = data.draw(st.integers(1, size))
            assert tree.root(size) == reference.root(size)
            assert tree.inclusion_proof(index, size) == reference.inclusion_proof(index, size)
            assert tree.consistency_proof(old, size) == reference.consistency_proof(old, size)
    assert list(reopened.inclusion_proofs(reference.size)) == list(reference.inclusion_proofs(reference.size))


def test_three_tile_levels_and_a_start_that_reads_a_constant_number_of_rows() -> None:
    size = TILE_WIDTH * TILE_WIDTH + 3 * TILE_WIDTH + 7  # level-2 tile, complete and partial tiles below
    store, _, reference = _grown([size - 7, 7], cache_bytes=1 << 20)
    assert {level for level, _ in store.tiles} == {0, 1, 2}
    store.reads = 0
    tree = TiledTree(store)
    tree.load(size)
    assert store.reads <= TILE_WIDTH + 2  # the partial level-0 tile's leaf hashes, one tile per level above
    assert tree.root() == reference.root()
    assert tree.inclusion_proof(12345, size) == reference.inclusion_proof(12345, size)
    assert dict(((t.level, t.index), t.hashes) for t in tiles_of(_leaves(size))) == store.tiles


def test_appends_alone_keep_a_constant_number_of_tiles_in_memory_and_read_older_ones_back() -> None:
    """A daemon that only appends must not fill its read cache with every tile it completes (that
    was a growth of about 25 MB an hour at 50 deploys/s until the 16 MiB bound)."""
    store, tree, reference = _grown([TILE_WIDTH * 40 + 5], cache_bytes=1 << 30)
    held = tree.cached_tiles
    assert held <= 4
    tree.extend(_leaves(TILE_WIDTH * 80)[reference.size :])
    assert tree.cached_tiles == held
    reference.extend(_leaves(TILE_WIDTH * 80)[reference.size :])
    store.commit(tree, [])
    store.reads = 0
    latest = reference.size - 1
    assert tree.inclusion_proof(latest - TILE_WIDTH, reference.size) == reference.inclusion_proof(latest - TILE_WIDTH,
                                                                                                   reference.size)
    assert store.reads == 0  # the receipts just appended are proved from memory
    assert tree.inclusion_proof(3, reference.size) == reference.inclusion_proof(3, reference.size)
    assert store.reads == 1  # an old tile is read back once, then cached
    assert tree.inclusion_proof(4, reference.size) == reference.inclusion_proof(4, reference.size)
    assert store.reads == 1 and tree.cached_tiles == held + 1


def test_a_batch_that_did_not_commit_is_forgotten_without_reading_the_store() -> None:
    store, tree, reference = _grown([300])
    tree.extend(_leaves(600)[300:])  # completes a tile, then the transaction fails
    store.reads = 0
    tree.truncate(300)
    assert store.reads == 0 and tree.drain() == []
    assert tree.root() == reference.root() and tree.inclusion_proof(299, 300) == reference.inclusion_proof(299, 300)


@given(st.integers(0, 10**12), st.integers(1, TILE_WIDTH), st.sampled_from([0, 1, 5, "entries"]))
def test_tile_paths_parse_back(index: int, width: int, level: int | str) -> None:
    path = tile_path(level, index, width)
    parsed = parse_tile_path(path.removeprefix("tile/"))
    named = "entries" if parsed.level is None else parsed.level
    assert (named, parsed.index, parsed.width) == (level, index, width)


def test_tile_indexes_are_written_as_c2sp_says() -> None:
    assert [encode_index(n) for n in (0, 67, 1000, 1234067)] == ["000", "067", "x001/000", "x001/x234/067"]
    assert tile_path(0, 1234067, 5) == "tile/0/x001/x234/067.p/5"
    assert entry_bundle([b"ab", b""]) == b"\x00\x02ab\x00\x00"


@pytest.mark.parametrize("bad", ["0", "0/", "0/1", "0/0001", "0/x000/001", "0/001.p/0", "0/001.p/256", "0/001.p/07",
                                 "-1/000", "01/000", "64/000", "x/000", "entries/abc", "0/001/", "0/001.p/"])
def test_bad_tile_paths_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_tile_path(bad)


def _filled(path: Path, key: LedgerKey, count: int) -> Ledger:
    ledger = Ledger.open(SQLiteStore(path), key)
    for start in range(0, count, 200):
        ledger.append_batch([ReceiptDraft("test.note", "prod", {"n": n}, chain="c") for n in
                             range(start, min(count, start + 200))])
    return ledger


def _stored_tree(path: Path) -> MerkleTree:
    store = SQLiteStore(path, readonly=True)
    try:
        return MerkleTree(store.leaf_hashes(0, store.size()))
    finally:
        store.close()


def test_a_ledger_proves_from_its_stored_tiles_after_a_restart(open_store, key: LedgerKey) -> None:
    ledger = Ledger.open(open_store(), key)
    for start in range(0, 700, 100):
        ledger.append_batch([ReceiptDraft("test.note", "prod", {"n": n}, chain="c") for n in range(start, start + 100)])
    store = open_store()
    assert len(store.tile(0, 1) or b"") == 8192 and len(store.tile(1, 0) or b"") == 64  # written, not computed
    reference = MerkleTree(store.leaf_hashes(0, 700))
    reopened = Ledger.open(store, key, cache_bytes=1)
    assert reopened.checkpoint().root == reference.root()
    assert reopened.leaf_proof(3, 600).hashes == tuple(reference.inclusion_proof(3, 600))
    assert reopened.consistency_proof(255, 700).hashes == tuple(reference.consistency_proof(255, 700))
    verify_store(open_store(), key.public)


def test_an_older_file_gets_its_tiles_from_its_leaf_hashes(tmp_path: Path, key: LedgerKey) -> None:
    path = tmp_path / "ledger.sqlite3"
    _filled(path, key, 600).close()
    with sqlite3.connect(path) as db:
        tiles = db.execute("SELECT level, idx, hashes FROM tiles ORDER BY level, idx").fetchall()
        db.executescript("DROP TABLE tiles; DROP TABLE prices; DROP TABLE bundles; PRAGMA user_version=2;")  # a version-2 file
    ledger = Ledger.open(SQLiteStore(path), key)
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT level, idx, hashes FROM tiles ORDER BY level, idx").fetchall() == tiles
    assert len(tiles) == 3 and ledger.checkpoint().root == _stored_tree(path).root()
    ledger.close()


def test_verify_names_a_hand_edited_tile(tmp_path: Path, key: LedgerKey) -> None:
    path = tmp_path / "ledger.sqlite3"
    _filled(path, key, 300).close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE tiles SET hashes = zeroblob(8192) WHERE level = 0 AND idx = 0")
    with pytest.raises(VerificationError) as err:
        verify_store(SQLiteStore(path, readonly=True), key.public)
    assert err.value.where == "tile 0/0"


def test_a_firestore_ledger_older_than_tiles_computes_them_from_its_leaves(firestore_emulator, key: LedgerKey) -> None:
    name = f"test-{uuid.uuid4().hex}"
    ledger = Ledger.open(FirestoreStore(name, project=EMULATOR_PROJECT), key)
    for start in range(0, 600, 100):
        ledger.append_batch([ReceiptDraft("test.note", "prod", {"n": n}, chain="c") for n in range(start, start + 100)])
    expected = ledger.leaf_proof(5, 600), ledger.checkpoint().root
    store = FirestoreStore(name, project=EMULATOR_PROJECT)
    for doc in store._client.collection("ledgers").document(name).collection("tiles").stream():
        doc.reference.delete()  # what a ledger written before tiles holds
    reopened = Ledger.open(store, key)
    assert (reopened.leaf_proof(5, 600), reopened.checkpoint().root) == expected


def test_verify_compares_tiles_while_it_reads_and_names_a_bad_one(tmp_path: Path, key: LedgerKey) -> None:
    """Past 64 recomputed tiles verify compares them with the store's before reading on (memory
    bounded by the tiles, not the ledger): a bad early tile is named, a good ledger passes."""
    path = tmp_path / "ledger.sqlite3"
    ledger = Ledger.open(SQLiteStore(path), key, max_batch=4096)
    for start in range(0, 5 * 4096, 4096):  # 80 level-0 tiles
        ledger.append_batch([ReceiptDraft("test.note", "eval", {"n": n}) for n in range(start, start + 4096)])
    session = ledger._session
    assert verify_store(SQLiteStore(path, readonly=True), key.public, session=session).tree_size == 5 * 4096
    with sqlite3.connect(path) as db:
        db.execute("UPDATE tiles SET hashes = zeroblob(8192) WHERE level = 0 AND idx = 3")
    with pytest.raises(VerificationError) as err:
        verify_store(SQLiteStore(path, readonly=True), key.public, session=session)
    assert err.value.where == "tile 0/3"
