"""SQLite implementation of :class:`~tai_autonomics.ledger.store.LedgerStore` (the embedded default).

Durability: WAL journal with ``synchronous=FULL``. In WAL mode ``NORMAL`` survives a killed
process but may lose the last commits on power loss or an OS crash, because the WAL is only
fsynced at checkpoints; the ledger acknowledges an append as durable, so every commit must
fsync the WAL: ``FULL``. Group commit (one transaction per batch) pays that fsync once for
many receipts.

Concurrency: one writer (``BEGIN IMMEDIATE`` takes the write lock before the head is read,
so sequencing and writing are one atomic step) and any number of readers in other
connections or processes, which WAL lets read the last committed state while a write runs.
A ``SQLiteStore`` object is used by one thread at a time (the ledger actor's), which need not be
the thread that opened it.

Sequencing reads the log head inside the write transaction. The head this connection's last
commit left is reused instead of queried again when ``PRAGMA data_version``, read after ``BEGIN
IMMEDIATE``, shows that no other connection (another store object or process, a hand edit) has
committed since: SQLite changes that value on every commit of another connection and on none of
its own, so a batch is never sequenced on a stale head.
"""

from __future__ import annotations

import errno
import sqlite3
import tempfile
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tai_autonomics.ledger.canonical import parse_json
from tai_autonomics.ledger.errors import (
    CanonicalJSONError,
    ConflictError,
    StoreCorruptError,
    StoreError,
    StoreUnavailable,
)
from tai_autonomics.ledger.indexes import PriceKey, prices_of
from tai_autonomics.ledger.note import Checkpoint
from tai_autonomics.ledger.operations import RECORD_FIELDS, ClaimKey, OperationRecord, Usage, UsageKey, rebuild
from tai_autonomics.ledger.store import (
    NO_READS,
    ChainHead,
    EffectReads,
    LogHead,
    SealedBatch,
    Sealer,
    StoredLeaf,
    check_batch,
    checkpoint_from_row,
)
from tai_autonomics.ledger.tiles import Bundle, Tile, tiles_of

DB_FILE = "ledger.sqlite3"
_SCHEMA_VERSION = 4
_SCHEMA = (
    """CREATE TABLE receipts (
    leaf_index INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    chain TEXT NOT NULL,
    seq INTEGER NOT NULL,
    hash TEXT NOT NULL,
    leaf_hash BLOB NOT NULL,
    data BLOB NOT NULL,
    UNIQUE (chain, seq)
    )""",
    "CREATE TABLE checkpoints (size INTEGER PRIMARY KEY, root BLOB NOT NULL, note TEXT NOT NULL)",
)
# Version 2: coverage counters and operation records, written in the append's transaction
# (ledger/operations.py). A version-1 file gets them rebuilt from its receipts when first opened.
_SCHEMA_2 = (
    """CREATE TABLE usage (
    chain TEXT NOT NULL, period TEXT NOT NULL, sku TEXT NOT NULL, count INTEGER NOT NULL, cost TEXT NOT NULL,
    PRIMARY KEY (chain, period, sku)
    )""",
    """CREATE TABLE operations (
    operation_id TEXT PRIMARY KEY, scope TEXT NOT NULL, key TEXT, fingerprint TEXT NOT NULL, chain TEXT NOT NULL,
    status TEXT NOT NULL, intent_id TEXT NOT NULL, started TEXT NOT NULL, outcome_id TEXT NOT NULL,
    UNIQUE (scope, key)
    )""",
    "CREATE INDEX operations_open ON operations (scope, status, started)",
)
# Version 3: the Merkle tree's tiles (ledger/tiles.py), so that opening reads the tree's right edge
# instead of every leaf hash, and the pricing index (ledger/indexes.py), so that Pricing does not
# replay its chain. An older file gets both computed from its receipts when first opened.
_SCHEMA_3 = ("CREATE TABLE tiles (level INTEGER NOT NULL, idx INTEGER NOT NULL, hashes BLOB NOT NULL, "
             "PRIMARY KEY (level, idx)) WITHOUT ROWID",
             "CREATE TABLE prices (chain TEXT NOT NULL, customer TEXT NOT NULL, value TEXT NOT NULL, "
             "PRIMARY KEY (chain, customer)) WITHOUT ROWID")
# Version 4: full entry bundles (ledger/tiles.py), so that serving one reads one row. An older file
# gets the table empty, not filled (a start stays O(1) in the ledger's size): the bundles of its
# history are assembled from its receipts when asked, as before. A rowid table: a bundle is a
# large row (256 receipts), which WITHOUT ROWID tables store badly.
_SCHEMA_4 = ("CREATE TABLE bundles (idx INTEGER PRIMARY KEY, entries BLOB NOT NULL)",)
_BUNDLES_SINCE = 4  # a read-only open takes a version-3 file as it is: without stored bundles
_OPERATION_COLUMNS = ("operation_id, scope, COALESCE(key, ''), fingerprint, chain, status, intent_id, started, "
                      "outcome_id")
# CASTs: SQLite columns take any type; a hand-edited row must still read as bytes, so that
# verification names it instead of crashing.
_LEAF_COLUMNS = "leaf_index, CAST(id AS TEXT), CAST(leaf_hash AS BLOB), CAST(data AS BLOB)"
_KNOWN_CHAINS = 4096  # chain heads remembered between appends; past that many, memory starts afresh
# Primary result codes of a disk that cannot take writes now (full, read-only, failing): the
# write is refused as StoreUnavailable, which clears when the disk does (docs/reliability.md).
_DISK_CODES = {sqlite3.SQLITE_FULL: "the disk is full", sqlite3.SQLITE_READONLY: "the file system is read-only",
               sqlite3.SQLITE_IOERR: "the disk failed a read or write"}


@dataclass(slots=True)
class _KnownHead:
    """The log head as this connection's last commit left it, valid while ``data_version`` is
    ``version``: the tree size and the heads of the chains it appended to."""

    version: int
    size: int
    chains: dict[str, ChainHead]


class SQLiteStore:
    """Receipts and checkpoints in one SQLite file (WAL, synchronous=FULL)."""

    max_batch = 10_000  # no limit of its own: the ledger's bounds a transaction

    def __init__(self, path: str | Path, *, readonly: bool = False, busy_timeout_s: float = 30.0) -> None:
        self.path = Path(path)
        try:
            if readonly:
                if not self.path.is_file():
                    raise StoreError(f"no ledger database at {self.path}")
                self._db = sqlite3.connect(
                    f"{self.path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None,
                    timeout=busy_timeout_s, check_same_thread=False,
                )
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._db = sqlite3.connect(
                    self.path, isolation_level=None, timeout=busy_timeout_s, check_same_thread=False
                )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open ledger database {self.path}: {exc}") from None
        except OSError as exc:
            raise StoreError(f"cannot open ledger database {self.path}: {exc.strerror}") from None
        self._known: _KnownHead | None = None  # None: the next append queries the head
        with self._errors():
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            if not readonly:
                self._init_schema()
            self._bundles = self._check_schema(readonly)

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """Turn sqlite3 exceptions into our typed errors, naming the file."""
        try:
            yield
        except sqlite3.IntegrityError as exc:
            raise ConflictError(f"{self.path}: write refused: {exc}") from None
        except sqlite3.DatabaseError as exc:
            text = str(exc)
            disk = self._disk_trouble(exc)
            if disk is not None:
                raise StoreUnavailable(f"{self.path}: {disk}: {text}", detail={"reason": disk}) from None
            if "not a database" in text or "malformed" in text or "no such table" in text:
                raise StoreCorruptError(f"{self.path} is not a valid ledger database: {text}") from None
            raise StoreError(f"{self.path}: {text}") from None

    def _disk_trouble(self, exc: sqlite3.DatabaseError) -> str | None:
        """Why the disk refused, if it did. SQLite reports a write to a file system turned read-only
        (ext4's errors=remount-ro) as an I/O error, so a file created beside the database tells."""
        trouble = _DISK_CODES.get(getattr(exc, "sqlite_errorcode", 0) & 0xFF)
        if trouble is None:
            return None
        try:
            with tempfile.TemporaryFile(dir=self.path.parent):
                pass
        except OSError as probe:
            if probe.errno == errno.EROFS:
                return _DISK_CODES[sqlite3.SQLITE_READONLY]
            if probe.errno == errno.ENOSPC:
                return _DISK_CODES[sqlite3.SQLITE_FULL]
        return trouble

    def _init_schema(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version == 0:
                for statement in _SCHEMA + _SCHEMA_2 + _SCHEMA_3 + _SCHEMA_4:
                    self._db.execute(statement)
            if version == 1:
                for statement in _SCHEMA_2:
                    self._db.execute(statement)
                self._write_effects(*rebuild(_parsed(self._leaves(0, None))))
            if version in (1, 2):
                for statement in _SCHEMA_3:
                    self._db.execute(statement)
                self._write_tiles(tiles_of(self._leaf_hashes(0, self._size())))
                self._write_prices(prices_of(_parsed(self._leaves(0, None))))
            if version in (1, 2, 3):
                for statement in _SCHEMA_4:
                    self._db.execute(statement)
            if version in (0, 1, 2, 3):
                self._db.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")
        except BaseException:
            self._rollback()
            raise
        else:
            self._db.execute("COMMIT")

    def _check_schema(self, readonly: bool) -> bool:
        """Refuse a file of another schema version; whether it has the bundles table (a read-only
        open, which cannot migrate, takes a version-3 file without it)."""
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version != _SCHEMA_VERSION and not (readonly and version == _BUNDLES_SINCE - 1):
            raise StoreCorruptError(f"{self.path}: ledger schema version {version}, expected {_SCHEMA_VERSION}")
        return version >= _BUNDLES_SINCE

    def append(self, chains: Collection[str], seal: Sealer, reads: EffectReads = NO_READS) -> SealedBatch:
        with self._errors():
            self._db.execute("BEGIN IMMEDIATE")
            try:
                known, head = self._head(chains, reads)
                batch = seal(head)
                check_batch(head, batch)
                self._write_effects(batch.usage, batch.operations)  # first: it stands or falls with the receipts
                self._db.executemany(
                    "INSERT INTO receipts (leaf_index, id, chain, seq, hash, leaf_hash, data) VALUES (?,?,?,?,?,?,?)",
                    [(r.leaf_index, r.id, r.chain, r.seq, r.hash, r.leaf_hash, r.data) for r in batch.receipts],
                )
                self._write_tiles(batch.tiles)
                self._db.executemany("INSERT OR REPLACE INTO bundles (idx, entries) VALUES (?,?)",
                                     [(bundle.index, bundle.entries) for bundle in batch.bundles])
                self._write_prices(batch.prices)
            except BaseException:
                self._rollback()
                raise
            try:
                self._db.execute("COMMIT")
            except BaseException:  # a full disk can fail the commit itself: nothing of it may stay
                self._rollback()
                raise
        _advance(known, batch)
        self._known = known
        return batch

    def _rollback(self) -> None:
        """End a failed write transaction, unless SQLite already rolled it back (it does on a full
        disk or an I/O error), so the original error is the one reported."""
        if self._db.in_transaction:
            self._db.execute("ROLLBACK")

    def _write_effects(self, usage: Mapping[UsageKey, Usage], operations: Iterable[OperationRecord]) -> None:
        self._db.executemany(
            "INSERT OR REPLACE INTO usage (chain, period, sku, count, cost) VALUES (?,?,?,?,?)",
            [(*key, value.count, str(value.cost)) for key, value in usage.items()])
        self._db.executemany(
            "INSERT OR REPLACE INTO operations (operation_id, scope, key, fingerprint, chain, status, intent_id, "
            "started, outcome_id) VALUES (?,?,?,?,?,?,?,?,?)",
            [(r.operation_id, r.scope, r.key or None, r.fingerprint, r.chain, r.status, r.intent_id, r.started,
              r.outcome_id) for r in operations])

    def _write_tiles(self, tiles: Iterable[Tile]) -> None:
        self._db.executemany("INSERT OR REPLACE INTO tiles (level, idx, hashes) VALUES (?,?,?)",
                             ((tile.level, tile.index, tile.hashes) for tile in tiles))

    def _write_prices(self, prices: Mapping[PriceKey, str]) -> None:
        self._db.executemany("INSERT OR REPLACE INTO prices (chain, customer, value) VALUES (?,?,?)",
                             [(*key, value) for key, value in prices.items()])

    def price(self, key: PriceKey) -> str | None:
        with self._errors():
            row = self._db.execute("SELECT CAST(value AS TEXT) FROM prices WHERE chain = ? AND customer = ?",
                                   key).fetchone()
        return None if row is None else row[0]

    def prices(self) -> Iterator[tuple[PriceKey, str]]:
        with self._errors():
            rows = self._db.execute("SELECT chain, customer, CAST(value AS TEXT) FROM prices ORDER BY chain, customer")
            for chain, customer, value in rows:
                yield PriceKey(str(chain), str(customer)), value

    def tile(self, level: int, index: int) -> bytes | None:
        with self._errors():
            row = self._db.execute("SELECT CAST(hashes AS BLOB) FROM tiles WHERE level = ? AND idx = ?",
                                   (level, index)).fetchone()
        return None if row is None else row[0] or b""

    def bundle(self, index: int) -> bytes | None:
        if not self._bundles:
            return None
        with self._errors():
            row = self._db.execute("SELECT CAST(entries AS BLOB) FROM bundles WHERE idx = ?", (index,)).fetchone()
        return None if row is None else row[0] or b""

    def add_bundles(self, bundles: Sequence[Bundle]) -> int:
        with self._errors():
            self._db.execute("BEGIN IMMEDIATE")
            try:
                before = self._db.total_changes
                self._db.executemany("INSERT OR IGNORE INTO bundles (idx, entries) VALUES (?,?)",
                                     [(bundle.index, bundle.entries) for bundle in bundles])
                written = self._db.total_changes - before
            except BaseException:
                self._rollback()
                raise
            self._db.execute("COMMIT")
        return written

    def _head(self, chains: Collection[str], reads: EffectReads) -> tuple[_KnownHead, LogHead]:
        """The log head with the heads of ``chains`` and what ``reads`` names, read in the write transaction.

        The remembered head is taken out (so an append that fails leaves none behind) and
        trusted only if no other connection has committed since; otherwise the size is
        queried, and so is every chain it does not hold. Returns it to advance after commit.
        """
        version = self._db.execute("PRAGMA data_version").fetchone()[0]
        known, self._known = self._known, None
        if known is None or known.version != version:
            known = _KnownHead(version, self._size(), {})
        remembered = known.chains
        heads = {chain: remembered.get(chain) or self._chain_head(chain) for chain in chains}
        if reads is NO_READS:
            return known, LogHead(known.size, heads)
        usage = {key: found for key in reads.usage if (found := self._usage_row(key)) is not None}
        claims = {key: claim for key in reads.claims if (claim := self._claim(key)) is not None}
        operations = {op: record for op in reads.operations if (record := self._operation(op)) is not None}
        return known, LogHead(known.size, heads, usage, claims, operations)

    def _usage_row(self, key: UsageKey) -> Usage | None:
        row = self._db.execute("SELECT count, cost FROM usage WHERE chain = ? AND period = ? AND sku = ?",
                               key).fetchone()
        return None if row is None else _usage(key, row)

    def _claim(self, key: ClaimKey) -> OperationRecord | None:
        row = self._db.execute(f"SELECT {_OPERATION_COLUMNS} FROM operations WHERE scope = ? AND key = ?",
                               key).fetchone()
        return None if row is None else _record(row)

    def _operation(self, operation_id: str) -> OperationRecord | None:
        row = self._db.execute(f"SELECT {_OPERATION_COLUMNS} FROM operations WHERE operation_id = ?",
                               (operation_id,)).fetchone()
        return None if row is None else _record(row)

    def operation(self, operation_id: str) -> OperationRecord | None:
        with self._errors():
            return self._operation(operation_id)

    def claim(self, key: ClaimKey) -> OperationRecord | None:
        with self._errors():
            return self._claim(key)

    def open_operations(self, scope: str, limit: int) -> list[OperationRecord]:
        with self._errors():
            rows = self._db.execute(
                f"SELECT {_OPERATION_COLUMNS} FROM operations "
                "WHERE scope = ? AND status IN ('in_progress', 'interrupted') "
                "ORDER BY started LIMIT ?", (scope, limit)).fetchall()
        return [_record(row) for row in rows]

    def operation_records(self) -> Iterator[OperationRecord]:
        with self._errors():
            for row in self._db.execute(f"SELECT {_OPERATION_COLUMNS} FROM operations ORDER BY operation_id"):
                yield _record(row)

    def claims(self) -> Iterator[tuple[ClaimKey, str]]:
        """A claim is its operation's row's ``(scope, key)`` (unique), so every keyed row is one."""
        with self._errors():
            rows = self._db.execute("SELECT CAST(scope AS TEXT), CAST(key AS TEXT), CAST(operation_id AS TEXT) "
                                    "FROM operations WHERE key IS NOT NULL AND key != '' ORDER BY scope, key")
            for scope, key, owner in rows:
                yield ClaimKey(scope, key), owner

    def usage(self, chain: str | None = None) -> dict[UsageKey, Usage]:
        with self._errors():
            rows = self._db.execute(
                "SELECT chain, period, sku, count, cost FROM usage WHERE ? IS NULL OR chain = ? "
                "ORDER BY chain, period, sku", (chain, chain)).fetchall()
        counters = {}
        for chain_, period, sku, count, cost in rows:
            key = UsageKey(chain_, period, sku)
            counters[key] = _usage(key, (count, cost))
        return counters

    def _chain_head(self, chain: str) -> ChainHead:
        row = self._db.execute(
            "SELECT seq, hash FROM receipts WHERE chain = ? ORDER BY seq DESC LIMIT 1", (chain,)
        ).fetchone()
        return ChainHead(*row) if row else ChainHead()

    def size(self) -> int:
        with self._errors():
            return self._size()

    def _size(self) -> int:
        return self._db.execute("SELECT COALESCE(MAX(leaf_index) + 1, 0) FROM receipts").fetchone()[0]

    def leaf_hashes(self, start: int, end: int) -> Iterator[bytes]:
        with self._errors():
            yield from self._leaf_hashes(start, end)

    def _leaf_hashes(self, start: int, end: int) -> Iterator[bytes]:
        rows = self._db.execute(
            "SELECT CAST(leaf_hash AS BLOB) FROM receipts WHERE leaf_index >= ? AND leaf_index < ? ORDER BY leaf_index",
            (start, end),
        )
        for (leaf,) in rows:
            yield leaf

    def leaves(self, start: int = 0, end: int | None = None) -> Iterator[StoredLeaf]:
        with self._errors():
            yield from self._leaves(start, end)

    def _leaves(self, start: int, end: int | None) -> Iterator[StoredLeaf]:
        rows = self._db.execute(
            f"SELECT {_LEAF_COLUMNS} FROM receipts WHERE leaf_index >= ? AND leaf_index < ? ORDER BY leaf_index",
            (start, 2**62 if end is None else end),
        )
        for row in rows:
            yield _leaf(row)

    def leaf_by_id(self, receipt_id: str) -> StoredLeaf | None:
        with self._errors():
            row = self._db.execute(f"SELECT {_LEAF_COLUMNS} FROM receipts WHERE id = ?", (receipt_id,)).fetchone()
        return _leaf(row) if row else None

    def chain_leaves(self, chain: str, after_seq: int, limit: int) -> list[StoredLeaf]:
        with self._errors():
            rows = self._db.execute(
                f"SELECT {_LEAF_COLUMNS} FROM receipts WHERE chain = ? AND seq > ? ORDER BY seq LIMIT ?",
                (chain, after_seq, limit),
            ).fetchall()
        return [_leaf(row) for row in rows]

    def put_checkpoint(self, checkpoint: Checkpoint) -> Checkpoint:
        with self._errors():
            self._db.execute(
                "INSERT OR IGNORE INTO checkpoints (size, root, note) VALUES (?,?,?)",
                (checkpoint.size, checkpoint.root, checkpoint.note),
            )
        stored = self.checkpoint(checkpoint.size)
        if stored is None or stored.root != checkpoint.root:
            raise ConflictError(f"tree size {checkpoint.size} already has a checkpoint with another root")
        return stored

    def checkpoint(self, size: int | None = None) -> Checkpoint | None:
        with self._errors():
            if size is None:
                row = self._db.execute("SELECT size, root, note FROM checkpoints ORDER BY size DESC LIMIT 1").fetchone()
            else:
                row = self._db.execute("SELECT size, root, note FROM checkpoints WHERE size = ?", (size,)).fetchone()
        return checkpoint_from_row(*row) if row else None

    def checkpoints(self, first: int = 0, last: int | None = None) -> Iterator[Checkpoint]:
        with self._errors():
            rows = self._db.execute(
                "SELECT size, root, note FROM checkpoints WHERE size >= ? AND size <= ? ORDER BY size",
                (first, 2**62 if last is None else last),
            )
            for row in rows:
                yield checkpoint_from_row(*row)

    def close(self) -> None:
        self._db.close()


def _advance(known: _KnownHead, batch: SealedBatch) -> None:
    """Move ``known`` to the head ``batch`` committed on top of it."""
    known.size = batch.size
    if len(known.chains) >= _KNOWN_CHAINS:
        known.chains.clear()
    for receipt in batch.receipts:
        known.chains[receipt.chain] = ChainHead(receipt.seq, receipt.hash)


def _usage(key: UsageKey, row: tuple) -> Usage:
    return Usage.from_stored(*row, where=f"{DB_FILE}: usage {'/'.join(key)}")


def _record(row: tuple) -> OperationRecord:
    return OperationRecord.from_json(dict(zip(RECORD_FIELDS, row)), f"{DB_FILE}: operation record {row[0]!r}")


def _parsed(leaves: Iterable[StoredLeaf]) -> Iterator[dict]:
    """The receipts that parse (a corrupt one is for ``ledger verify`` to name, not the migration)."""
    for leaf in leaves:
        try:
            yield parse_json(leaf.data)
        except CanonicalJSONError:
            continue


def _leaf(row: tuple) -> StoredLeaf:
    leaf_index, receipt_id, leaf_hash, data = row
    return StoredLeaf(leaf_index, receipt_id or "", leaf_hash or b"", data or b"")
