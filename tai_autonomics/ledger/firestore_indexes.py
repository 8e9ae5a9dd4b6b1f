"""What a Firestore ledger keeps beside its receipts for reads that must not scan them, under
``ledgers/{name}``:

* ``prices/{sha256(chain, customer)}``: ``{"chain", "customer", "value"}``, the pricing index
  (:mod:`~tai_autonomics.ledger.indexes`);
* ``tiles/{level}-{index}`` (both zero-padded): ``{"level", "index", "hashes"}``, the Merkle tree's
  tiles (:mod:`~tai_autonomics.ledger.tiles`): each complete level-0 tile, and each tile of a
  higher level as it grows. A tile of a ledger written before tiles is not there: it is
  computed from the leaf hashes under it when read (correct, at the old cost of reading them);
* ``bundles/{index}`` (zero-padded): ``{"index", "entries"}``, each full entry bundle
  (:class:`~tai_autonomics.ledger.tiles.Bundler`). One a ledger written before bundles lacks, or
  one over Firestore's 1 MiB document limit (receipts of about 4 KB each), is assembled from the
  receipts when read.

Kept apart from :mod:`~tai_autonomics.ledger.firestore_store`'s sequencing: the store's append
hands each batch to :meth:`FirestoreIndexes.write`, which adds its writes to the batch's atomic
commit. They are plain sets, without preconditions: appends commit one after another in leaf
order (each one's precondition is the log head the previous one wrote), so the last write is the
last receipt's, and two instances never race on an entry.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from typing import Any

from google.cloud import firestore

from tai_autonomics.ledger.errors import ConflictError, StoreCorruptError
from tai_autonomics.ledger.indexes import PriceKey
from tai_autonomics.ledger.store import SealedBatch
from tai_autonomics.ledger.tiles import Bundle

_MAX_BUNDLE = 1_000_000  # bytes of a bundle document's entries: Firestore takes at most 1 MiB per document


class FirestoreIndexes:
    """The index documents under one ledger document; ``call`` turns Firestore errors into ours."""

    def __init__(self, head: firestore.DocumentReference, call: Callable[[str, Callable[[], Any]], Any]) -> None:
        self._prices = head.collection("prices")
        self._tiles = head.collection("tiles")
        self._bundles = head.collection("bundles")
        self._call = call

    def write(self, writes: Any, batch: SealedBatch) -> None:
        """Add the batch's index entries to its atomic write."""
        for key, value in batch.prices.items():
            writes.set(self._price_ref(key), {"chain": key.chain, "customer": key.customer, "value": value})
        for tile in batch.tiles:
            writes.set(self._tile_ref(tile.level, tile.index),
                       {"level": tile.level, "index": tile.index, "hashes": tile.hashes})
        for bundle in batch.bundles:
            if len(bundle.entries) <= _MAX_BUNDLE:
                writes.set(self._bundle_ref(bundle.index), {"index": bundle.index, "entries": bundle.entries})

    def tile(self, level: int, index: int) -> bytes | None:
        """The stored hashes of tile ``(level, index)``, or None if no document holds them."""
        snap = self._call("read a tile", self._tile_ref(level, index).get)
        if not snap.exists:
            return None
        hashes = snap.get("hashes")
        if not isinstance(hashes, bytes):
            raise StoreCorruptError(f"Firestore tile document {snap.reference.path}: 'hashes' is not bytes")
        return hashes

    def _tile_ref(self, level: int, index: int) -> firestore.DocumentReference:
        return self._tiles.document(f"{level:02d}-{index:012d}")

    def bundle(self, index: int) -> bytes | None:
        """The stored full entry bundle ``index``, or None if no document holds it."""
        snap = self._call("read an entry bundle", self._bundle_ref(index).get)
        if not snap.exists:
            return None
        entries = snap.get("entries")
        if not isinstance(entries, bytes):
            raise StoreCorruptError(f"Firestore bundle document {snap.reference.path}: 'entries' is not bytes")
        return entries

    def add_bundles(self, bundles: Sequence[Bundle]) -> int:
        """Create the documents of the bundles no document holds yet (one the daemon writes
        meanwhile is the same bytes: it is left as it is). Returns how many were created."""
        written = 0
        for bundle in bundles:
            if len(bundle.entries) > _MAX_BUNDLE:
                continue
            ref = self._bundle_ref(bundle.index)
            try:
                self._call("store an entry bundle", partial(ref.create, {"index": bundle.index,
                                                                         "entries": bundle.entries}))
            except ConflictError:
                continue
            written += 1
        return written

    def _bundle_ref(self, index: int) -> firestore.DocumentReference:
        return self._bundles.document(f"{index:012d}")

    def price(self, key: PriceKey) -> str | None:
        snap = self._call("read a price", self._price_ref(key).get)
        return str(snap.get("value")) if snap.exists else None

    def prices(self) -> Iterator[tuple[PriceKey, str]]:
        docs = self._call("read prices", lambda: list(self._prices.stream()))
        found = {PriceKey(str(doc.get("chain")), str(doc.get("customer"))): str(doc.get("value")) for doc in docs}
        yield from sorted(found.items())

    def _price_ref(self, key: PriceKey) -> firestore.DocumentReference:
        return self._prices.document(hashlib.sha256(f"{key.chain}\n{key.customer}".encode()).hexdigest())
