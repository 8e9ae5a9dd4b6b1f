"""Firestore implementation of :class:`~tai_autonomics.ledger.store.LedgerStore` (production, Cloud Run).

Layout under ``ledgers/{name}``:

* the ledger document itself: ``{"size": n}``, the log head;
* ``chains/{sha256(chain)}``: ``{"chain", "seq", "hash"}``, each chain's head;
* ``leaves/{receipt id}``: ``{"leaf_index", "id", "chain", "seq", "hash", "leaf_hash", "data"}``
  (random document ids, so appends do not hot-spot one key range);
* ``checkpoints/{size, zero-padded}``: ``{"size", "root", "note"}``.

No forks across daemon instances: :meth:`FirestoreStore.append` reads the log head and the heads
of the batch's chains inside a transaction and writes the new heads in it, so of two instances
sequencing on the same head, one commits and the other's transaction is retried (the client
re-runs it, ``seal`` included, on the new head) or fails. Batching: the log head document is
written once per batch, not per receipt, so Firestore's sustained rate of about one write per
second per document limits batches, not receipts; a batch is at most ~490 writes (Firestore
allows 500 per transaction), which is why the ledger bounds ``max_batch``.

Queries used in production need one composite index: ``leaves`` on (``chain`` ascending,
``seq`` ascending).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection, Iterator
from typing import Any, TypeVar

from google.api_core import exceptions as gexc
from google.cloud import firestore

from tai_autonomics.ledger.errors import ConflictError, StoreError
from tai_autonomics.ledger.note import Checkpoint
from tai_autonomics.ledger.store import (
    ChainHead,
    LogHead,
    SealedBatch,
    Sealer,
    StoredLeaf,
    check_batch,
    checkpoint_from_row,
)

_T = TypeVar("_T")
_PAGE = 1000


class FirestoreStore:
    """Receipts and checkpoints of ledger ``name`` in Firestore."""

    def __init__(self, name: str, *, client: firestore.Client | None = None, project: str | None = None) -> None:
        self.name = name
        try:
            self._client = client or firestore.Client(project=project)
        except (gexc.GoogleAPIError, ValueError, OSError) as exc:
            raise StoreError(f"cannot connect to Firestore: {exc}") from None
        self._head = self._client.collection("ledgers").document(name)
        self._chains = self._head.collection("chains")
        self._leaves = self._head.collection("leaves")
        self._checkpoints = self._head.collection("checkpoints")

    def _call(self, what: str, action: Callable[[], _T]) -> _T:
        """Run ``action``, turning Firestore errors into our typed ones."""
        try:
            return action()
        except (gexc.AlreadyExists, gexc.Conflict, gexc.Aborted) as exc:
            raise ConflictError(f"Firestore ledger {self.name}: {what} refused: {exc.message}") from None
        except gexc.GoogleAPIError as exc:
            raise StoreError(f"Firestore ledger {self.name}: {what} failed: {exc}") from None

    def _chain_ref(self, chain: str) -> firestore.DocumentReference:
        return self._chains.document(hashlib.sha256(chain.encode()).hexdigest())

    def append(self, chains: Collection[str], seal: Sealer) -> SealedBatch:
        chain_list = sorted(chains)

        @firestore.transactional
        def sequence(transaction: firestore.Transaction) -> SealedBatch:
            head_doc = self._head.get(transaction=transaction)
            size = head_doc.get("size") if head_doc.exists else 0
            refs = [self._chain_ref(chain) for chain in chain_list]
            heads = {}
            for snapshot in self._client.get_all(refs, transaction=transaction):
                if snapshot.exists:
                    heads[snapshot.get("chain")] = ChainHead(snapshot.get("seq"), snapshot.get("hash"))
            head = LogHead(size, heads)
            batch = seal(head)
            check_batch(head, batch)
            last: dict[str, ChainHead] = {}
            for receipt in batch.receipts:
                transaction.create(self._leaves.document(receipt.id), _leaf_doc(receipt))
                last[receipt.chain] = ChainHead(receipt.seq, receipt.hash)
            for chain, chain_head in last.items():
                transaction.set(self._chain_ref(chain), {"chain": chain, "seq": chain_head.seq, "hash": chain_head.hash})
            cp = batch.checkpoint
            transaction.create(self._checkpoints.document(f"{cp.size:020d}"), _checkpoint_doc(cp))
            transaction.set(self._head, {"size": cp.size})
            return batch

        return self._call("append", lambda: sequence(self._client.transaction()))

    def size(self) -> int:
        doc = self._call("read head", self._head.get)
        return doc.get("size") if doc.exists else 0

    def leaf_hashes(self, start: int, end: int) -> Iterator[bytes]:
        for doc in self._range(start, end, ["leaf_hash"]):
            yield doc.get("leaf_hash")

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
            page = self._call(f"read {collection.id}", lambda q=query: list(q.stream()))
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
    return StoredLeaf(doc["leaf_index"], str(doc.get("id", "")), bytes(doc.get("leaf_hash", b"")), bytes(doc.get("data", b"")))


def _checkpoint_doc(checkpoint: Checkpoint) -> dict[str, Any]:
    return {"size": checkpoint.size, "root": checkpoint.root, "note": checkpoint.note}


def _checkpoint(doc: dict[str, Any]) -> Checkpoint:
    return checkpoint_from_row(doc["size"], doc["root"], doc["note"])
