"""Firestore implementation of :class:`~tai_autonomics.ledger.store.LedgerStore` (production, Cloud Run).

Layout under ``ledgers/{name}``:

* the ledger document itself: ``{"size": n, "sequencer": {"holder", "expires", "term"}}``, the
  log head and the leased sequencer's lease (:mod:`~tai_autonomics.ledger._sequencer`);
* ``pending/{random id}``: drafts an instance queued for the sequencer, and its answers;
* ``chains/{sha256(chain)}``: ``{"chain", "seq", "hash"}``, each chain's head;
* ``leaves/{receipt id}``: ``{"leaf_index", "id", "chain", "seq", "hash", "leaf_hash", "data"}``
  (random document ids, so appends do not hot-spot one key range);
* ``checkpoints/{size, zero-padded}``: ``{"size", "root", "note"}``, written apart from the
  batches (per interval and on demand); each size once, the largest is the latest;
* ``usage/{sha256(chain, period, sku)}``: ``{"chain", "period", "sku", "count", "cost"}``, one
  coverage counter per policy, month and SKU;
* ``operations/{operation id}``: the operation's record (:class:`~.operations.OperationRecord`);
* ``claims/{sha256(scope, key)}``: ``{"scope", "key", "operation_id"}``, an idempotency key's owner;
* ``prices/...``, ``tiles/...`` and ``bundles/...``: the pricing index, the Merkle tree's tiles and
  the full entry bundles, written with each batch (:mod:`~tai_autonomics.ledger.firestore_indexes`),
  so that a start reads the tree's right edge, no actor replays a chain, and serving a bundle
  reads one document.

The counters, claims and records a batch touches are read and written in the append's
transaction (docs/specification.md §10): two instances can never both reserve the last of a SKU's coverage or
both claim one key; the loser's transaction is retried on what the winner wrote. They add no
document that every batch writes: the log head already is one (the ceiling is in
``docs/performance.md``).

Who appends: with the leased sequencer (the default), the lease holder, whose appends carry a
rider (:class:`Rider`) fencing them with its lease; otherwise (eval receipts, which only their
own process may MAC; an instance on its way out; ``sequencing = "optimistic"``) any instance.
Either way, no forks across daemon instances: :meth:`FirestoreStore.append` reads the log head and the heads
of the batch's chains, and commits the batch as one atomic write whose preconditions require
every document it read to be unchanged (or still absent), so of two instances sequencing on the
same head, one commits and the other reads again and re-seals on the new head (optimistic
concurrency, no locks; see :meth:`FirestoreStore.append` for why not a transaction). Batching: the log head document is
written once per batch, not per receipt, so Firestore's sustained rate of about one write per
second per document limits batches, not receipts; a batch is at most ~490 writes (Firestore
allows 500 per transaction), which is why the ledger bounds ``max_batch``.

Queries used in production need one composite index: ``leaves`` on (``chain`` ascending,
``seq`` ascending).
"""

from __future__ import annotations

import hashlib
import itertools
import random
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from functools import partial
from typing import Any, Protocol, TypeVar

from google.api_core import exceptions as gexc
from google.cloud import firestore
from google.cloud.firestore_v1.field_path import FieldPath

from tai_autonomics.ledger.errors import ConflictError, LedgerBusy, StoreCorruptError, StoreError
from tai_autonomics.ledger.firestore_indexes import FirestoreIndexes
from tai_autonomics.ledger.indexes import PriceKey
from tai_autonomics.ledger.note import Checkpoint
from tai_autonomics.ledger.operations import OPEN, ClaimKey, OperationRecord, Usage, UsageKey
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
from tai_autonomics.ledger.tiles import Bundle, tile_from_leaves

_T = TypeVar("_T")
_PAGE = 1000
_DOCUMENT_ID = FieldPath.document_id()  # what a query orders by to walk a collection by document id
_MAX_WRITES = 500  # Firestore's limit for one atomic batch of writes
_BACKOFF_BASE_S = 0.005
_BACKOFF_CAP_S = 0.25


class FirestoreStore:
    """Receipts and checkpoints of ledger ``name`` in Firestore."""

    max_batch = 120  # receipts per append: with their records and claims, well under 500 writes

    def __init__(self, name: str, *, client: firestore.Client | None = None, project: str | None = None,
                 busy_timeout_s: float = 4.0) -> None:
        self.name = name
        self.busy_timeout_s = busy_timeout_s
        self.conflicts = 0  # appends retried because another instance committed first
        try:
            self._client = client or firestore.Client(project=project)
        except (gexc.GoogleAPIError, ValueError, OSError) as exc:
            raise StoreError(f"cannot connect to Firestore: {exc}") from None
        self._head = self._client.collection("ledgers").document(name)
        self._chains = self._head.collection("chains")
        self._leaves = self._head.collection("leaves")
        self._checkpoints = self._head.collection("checkpoints")
        self._usage = self._head.collection("usage")
        self._operations = self._head.collection("operations")
        self._claims = self._head.collection("claims")
        self._indexes = FirestoreIndexes(self._head, self._call)

    @property
    def client(self) -> firestore.Client:
        """The Firestore client (the sequencer's documents live beside the ledger's)."""
        return self._client

    @property
    def head_ref(self) -> firestore.DocumentReference:
        """The ledger document: the log head (``size``) and the sequencer's lease."""
        return self._head

    def call(self, what: str, action: Callable[[], _T]) -> _T:
        """Run ``action``, turning Firestore errors into our typed ones (ConflictError, StoreError)."""
        return self._call(what, action)

    def _call(self, what: str, action: Callable[[], _T]) -> _T:
        """Run ``action``, turning Firestore errors into our typed ones."""
        try:
            return action()
        except (gexc.AlreadyExists, gexc.Conflict, gexc.Aborted, gexc.FailedPrecondition) as exc:
            raise ConflictError(f"Firestore ledger {self.name}: {what} refused: {exc.message}") from None
        except gexc.GoogleAPIError as exc:
            raise StoreError(f"Firestore ledger {self.name}: {what} failed: {exc}") from None

    def _chain_ref(self, chain: str) -> firestore.DocumentReference:
        return self._chains.document(hashlib.sha256(chain.encode()).hexdigest())

    def _usage_ref(self, key: UsageKey) -> firestore.DocumentReference:
        return self._usage.document(_digest(*key))

    def _claim_ref(self, key: ClaimKey) -> firestore.DocumentReference:
        return self._claims.document(_digest(*key))

    def append(self, chains: Collection[str], seal: Sealer, reads: EffectReads = NO_READS, *,
               rider: Rider | None = None) -> SealedBatch:
        """Optimistic: read the head without locks, seal, and commit one atomic batch of writes
        whose preconditions say that nothing read has changed (``create`` for what did not exist,
        an update time for what did). If another instance committed first, read again and
        retry, backing off with jitter, until ``busy_timeout_s``; then :class:`LedgerBusy`.

        Why not a transaction: Firestore's transactions lock what they read, and two instances
        that both read the head and then both write it deadlock until a lock times out (2 s on
        the emulator), so under contention each append waited seconds. A failed precondition
        costs one more round trip instead.

        ``rider`` (the leased sequencer's, :mod:`~tai_autonomics.ledger._sequencer`) reads its
        documents with the head, may refuse the attempt before sealing (a lost lease: not
        retried), adds fields to the head's write and writes of its own to the same commit."""
        deadline = time.monotonic() + self.busy_timeout_s
        for attempt in itertools.count(1):
            try:
                return self._call("append", lambda: self._append_once(sorted(chains), seal, reads, rider))
            except ConflictError as exc:
                wait = random.uniform(0, min(_BACKOFF_CAP_S, _BACKOFF_BASE_S * 2 ** attempt))
                if time.monotonic() + wait >= deadline:
                    raise LedgerBusy(f"Firestore ledger {self.name}: {attempt} attempts to append lost to other "
                                     f"instances within {self.busy_timeout_s:g} s ({exc.message}); retry",
                                     detail={"attempts": attempt}) from None
                self.conflicts += 1
                time.sleep(wait)
        raise AssertionError("unreachable")

    def _append_once(self, chain_list: list[str], seal: Sealer, reads: EffectReads, rider: Rider | None) -> SealedBatch:
        chain_refs = [self._chain_ref(chain) for chain in chain_list]
        effect_refs = self._effect_refs(reads)
        rider_refs = rider.refs() if rider is not None else []
        read = {snap.reference.path: snap
                for snap in self._client.get_all([self._head, *chain_refs, *effect_refs, *rider_refs])}
        head_snap = read[self._head.path]
        if rider is not None:
            rider.check(read, head_snap)
        heads = {}
        for ref in chain_refs:
            if read[ref.path].exists:
                snap = read[ref.path]
                heads[snap.get("chain")] = ChainHead(snap.get("seq"), snap.get("hash"))
        size = head_snap.get("size") if head_snap.exists else 0
        head = LogHead(size, heads) if reads is NO_READS else LogHead(size, heads, *self._effects(reads, read))
        batch = seal(head)
        check_batch(head, batch)
        writes = self._client.batch()
        last: dict[str, ChainHead] = {}
        for receipt in batch.receipts:
            writes.create(self._leaves.document(receipt.id), _leaf_doc(receipt))
            last[receipt.chain] = ChainHead(receipt.seq, receipt.hash)
        for chain, chain_head in last.items():
            self._put(writes, read, self._chain_ref(chain), {"chain": chain, "seq": chain_head.seq,
                                                                "hash": chain_head.hash})
        fields = rider.head_fields() if rider is not None else {}
        if batch.receipts:
            self._put(writes, read, self._head, {"size": batch.size, **fields})
        elif fields:  # every draft refused: no new tree, but the answers are still fenced by the lease
            self._put(writes, read, self._head, fields)
        for key, usage in batch.usage.items():
            self._put(writes, read, self._usage_ref(key), {**key._asdict(), **usage.to_json()})
        opened = {receipt.id for receipt in batch.receipts}  # a record whose intent is in the batch claims its key
        for record in batch.operations:
            self._put(writes, read, self._operations.document(record.operation_id), record.to_json())
            if record.claim is not None and record.intent_id in opened:
                writes.create(self._claim_ref(record.claim), {**record.claim._asdict(),
                                                              "operation_id": record.operation_id})
        self._indexes.write(writes, batch)
        if rider is not None:
            rider.add(writes, read, batch)
        if len(writes) > _MAX_WRITES:
            raise StoreError(f"Firestore ledger {self.name}: a batch of {len(writes)} writes is over Firestore's "
                             f"{_MAX_WRITES}; lower the ledger's max_batch")
        if len(writes):
            writes.commit()
        return batch

    def _put(self, writes: Any, read: dict[str, Any], ref: firestore.DocumentReference, data: dict[str, Any]) -> None:
        """Write ``data`` to ``ref`` only if it is as it was read: absent (create) or unchanged since."""
        snap = read.get(ref.path)
        if snap is None or not snap.exists:
            writes.create(ref, data)
        else:
            writes.update(ref, data, option=self._client.write_option(last_update_time=snap.update_time))

    def _effect_refs(self, reads: EffectReads) -> list[firestore.DocumentReference]:
        return ([self._usage_ref(k) for k in sorted(reads.usage)] + [self._claim_ref(k) for k in sorted(reads.claims)]
                + [self._operations.document(op) for op in sorted(reads.operations)])

    def _effects(self, reads: EffectReads, read: dict[str, Any]) -> tuple[dict, dict, dict]:
        """The counters, claims and records ``reads`` names, from what was read (absent: not
        stored); a claimed key's record is read too, to answer with it."""
        def found(ref: firestore.DocumentReference) -> Any:
            snap = read.get(ref.path)
            return snap if snap is not None and snap.exists else None

        usage = {k: _usage(snap) for k in reads.usage if (snap := found(self._usage_ref(k)))}
        operations = {op: _record(snap) for op in reads.operations if (snap := found(self._operations.document(op)))}
        owners = {k: str(snap.get("operation_id")) for k in reads.claims if (snap := found(self._claim_ref(k)))}
        missing = [self._operations.document(op) for op in set(owners.values()) - set(operations)]
        for snap in self._client.get_all(missing) if missing else ():
            if snap.exists:
                operations[snap.id] = _record(snap)
        claims = {}
        for key, owner in owners.items():
            if owner not in operations:
                raise StoreCorruptError(f"Firestore ledger {self.name}: claim {key.scope}/{key.key!r} names "
                                        f"operation {owner!r}, which has no record")
            claims[key] = operations[owner]
        return usage, claims, operations

    def operation(self, operation_id: str) -> OperationRecord | None:
        if not operation_id or "/" in operation_id:
            return None
        doc = self._call("read operation", self._operations.document(operation_id).get)
        return _record(doc) if doc.exists else None

    def claim(self, key: ClaimKey) -> OperationRecord | None:
        doc = self._call("read claim", self._claim_ref(key).get)
        return self.operation(str(doc.get("operation_id"))) if doc.exists else None

    def open_operations(self, scope: str, limit: int) -> list[OperationRecord]:
        query = (self._operations.where(filter=firestore.FieldFilter("scope", "==", scope))
                 .where(filter=firestore.FieldFilter("status", "in", sorted(OPEN))).limit(limit))
        records = [_record(doc) for doc in self._call("read operations", lambda: list(query.stream()))]
        return sorted(records, key=lambda record: record.started)

    def operation_records(self) -> Iterator[OperationRecord]:
        for snap in self._by_id(self._operations, "read operations"):
            record = _record(snap)
            if record.operation_id != snap.id:  # found by its document id, so that is its operation
                raise StoreCorruptError(f"Firestore document {snap.reference.path}: holds the record of operation "
                                        f"{record.operation_id!r}")
            yield record

    def claims(self) -> Iterator[tuple[ClaimKey, str]]:
        for snap in self._by_id(self._claims, "read claims"):
            doc = snap.to_dict() or {}
            scope, key, owner = doc.get("scope"), doc.get("key"), doc.get("operation_id")
            if not (isinstance(scope, str) and isinstance(key, str) and isinstance(owner, str)) \
                    or snap.id != self._claim_ref(ClaimKey(scope, key)).id:  # found by its id: the key's digest
                raise StoreCorruptError(f"Firestore document {snap.reference.path}: not the claim of its scope and key")
            yield ClaimKey(scope, key), owner

    def _by_id(self, collection: Any, what: str) -> Iterator[Any]:
        """Every document of ``collection``, by document id, page by page."""
        query = collection.order_by(_DOCUMENT_ID).limit(_PAGE)
        while True:
            page = self._call(what, partial(_listed, query))
            yield from page
            if len(page) < _PAGE:
                return
            query = collection.order_by(_DOCUMENT_ID).start_after(page[-1]).limit(_PAGE)

    def usage(self, chain: str | None = None) -> dict[UsageKey, Usage]:
        query = self._usage if chain is None else self._usage.where(filter=firestore.FieldFilter("chain", "==", chain))
        counters = {}
        for doc in self._call("read usage", lambda: list(query.stream())):
            key = UsageKey(str(doc.get("chain")), str(doc.get("period")), str(doc.get("sku")))
            counters[key] = _usage(doc)
        return dict(sorted(counters.items()))

    def price(self, key: PriceKey) -> str | None:
        return self._indexes.price(key)

    def prices(self) -> Iterator[tuple[PriceKey, str]]:
        return self._indexes.prices()

    def size(self) -> int:
        doc = self._call("read head", self._head.get)
        return doc.get("size") if doc.exists else 0

    def leaf_hashes(self, start: int, end: int) -> Iterator[bytes]:
        for doc in self._range(start, end, ["leaf_hash"]):
            yield doc.get("leaf_hash")

    def tile(self, level: int, index: int) -> bytes | None:
        """The tile document (:mod:`~tai_autonomics.ledger.firestore_indexes`); for a ledger older
        than tiles, computed from the leaf hashes under it."""
        stored = self._indexes.tile(level, index)
        return stored if stored is not None else tile_from_leaves(self, self.size(), level, index)

    def bundle(self, index: int) -> bytes | None:
        return self._indexes.bundle(index)

    def add_bundles(self, bundles: Sequence[Bundle]) -> int:
        return self._indexes.add_bundles(bundles)

    def leaves(self, start: int = 0, end: int | None = None) -> Iterator[StoredLeaf]:
        for doc in self._range(start, end, None):
            yield _stored_leaf(doc.to_dict())

    def _range(self, start: int, end: int | None, fields: list[str] | None) -> Iterator[Any]:
        """Leaf documents with ``start <= leaf_index < end`` in order."""
        return self._paged(self._leaves, "leaf_index", start, end, fields)

    def _paged(
        self, collection: Any, field: str, first: int, stop: int | None, fields: list[str] | None
    ) -> Iterator[Any]:
        """Documents of ``collection`` with ``first <= field < stop``, by ``field``, page by page
        (one long-lived query stream would hold a read open for the whole walk)."""
        cursor = first
        while stop is None or cursor < stop:
            query = collection.where(filter=firestore.FieldFilter(field, ">=", cursor))
            if stop is not None:
                query = query.where(filter=firestore.FieldFilter(field, "<", stop))
            query = query.order_by(field).limit(_PAGE)
            if fields is not None:
                query = query.select([field, *fields])
            page = self._call(f"read {collection.id}", partial(_listed, query))
            yield from page
            if len(page) < _PAGE:
                return
            cursor = page[-1].get(field) + 1

    def leaf_by_id(self, receipt_id: str) -> StoredLeaf | None:
        if not receipt_id or "/" in receipt_id:
            return None
        doc = self._call("read receipt", self._leaves.document(receipt_id).get)
        return _stored_leaf(doc.to_dict()) if doc.exists else None

    def chain_leaves(self, chain: str, after_seq: int, limit: int) -> list[StoredLeaf]:
        query = (
            self._leaves.where(filter=firestore.FieldFilter("chain", "==", chain))
            .where(filter=firestore.FieldFilter("seq", ">", after_seq))
            .order_by("seq")
            .limit(limit)
        )
        return [_stored_leaf(doc.to_dict()) for doc in self._call("read chain", lambda: list(query.stream()))]

    def put_checkpoint(self, checkpoint: Checkpoint) -> Checkpoint:
        ref = self._checkpoints.document(f"{checkpoint.size:020d}")
        try:
            self._call("store checkpoint", lambda: ref.create(_checkpoint_doc(checkpoint)))
        except ConflictError:
            pass  # one exists already: it must be this one
        stored = self.checkpoint(checkpoint.size)
        if stored is None or stored.root != checkpoint.root:
            raise ConflictError(f"tree size {checkpoint.size} already has a checkpoint with another root")
        return stored

    def checkpoint(self, size: int | None = None) -> Checkpoint | None:
        if size is not None:
            doc = self._call("read checkpoint", self._checkpoints.document(f"{size:020d}").get)
            return _checkpoint(doc.to_dict()) if doc.exists else None
        query = self._checkpoints.order_by("size", direction=firestore.Query.DESCENDING).limit(1)
        docs = self._call("read checkpoint", lambda: list(query.stream()))
        return _checkpoint(docs[0].to_dict()) if docs else None

    def checkpoints(self, first: int = 0, last: int | None = None) -> Iterator[Checkpoint]:
        stop = None if last is None else last + 1
        for doc in self._paged(self._checkpoints, "size", first, stop, None):
            yield _checkpoint(doc.to_dict())

    def close(self) -> None:
        self._client.close()


class Rider(Protocol):
    """What the leased sequencer adds to an append (see :meth:`FirestoreStore.append`)."""

    def refs(self) -> list[firestore.DocumentReference]:
        """Documents to read with the head, in the same snapshot."""

    def check(self, read: Mapping[str, Any], head: Any) -> None:
        """Refuse the attempt (an error that is not a ConflictError) before anything is sealed."""

    def head_fields(self) -> dict[str, Any]:
        """Fields written to the head document with the new size."""

    def add(self, writes: Any, read: Mapping[str, Any], batch: SealedBatch) -> None:
        """Add writes of its own to the batch's atomic commit."""


def _digest(*parts: str) -> str:
    """A document id for a compound key: any characters may appear in its parts."""
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()


def _usage(snap: Any) -> Usage:
    doc = snap.to_dict() or {}
    return Usage.from_stored(doc.get("count"), doc.get("cost"), where=f"Firestore document {snap.reference.path}")


def _record(snap: Any) -> OperationRecord:
    return OperationRecord.from_json(snap.to_dict() or {}, f"Firestore document {snap.reference.path}")


def _leaf_doc(receipt: Any) -> dict[str, Any]:
    return {
        "leaf_index": receipt.leaf_index,
        "id": receipt.id,
        "chain": receipt.chain,
        "seq": receipt.seq,
        "hash": receipt.hash,
        "leaf_hash": receipt.leaf_hash,
        "data": receipt.data,
    }


def _stored_leaf(doc: dict[str, Any]) -> StoredLeaf:
    return StoredLeaf(doc["leaf_index"], str(doc.get("id", "")), bytes(doc.get("leaf_hash", b"")),
                      bytes(doc.get("data", b"")))


def _checkpoint_doc(checkpoint: Checkpoint) -> dict[str, Any]:
    return {"size": checkpoint.size, "root": checkpoint.root, "note": checkpoint.note}


def _checkpoint(doc: dict[str, Any]) -> Checkpoint:
    return checkpoint_from_row(doc["size"], doc["root"], doc["note"])


def _listed(query: Any) -> list[Any]:
    """Every document a query finds, read at once (so :meth:`FirestoreStore._call` sees its errors)."""
    return list(query.stream())
