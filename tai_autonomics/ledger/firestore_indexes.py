"""What a Firestore ledger keeps beside its receipts for reads that must not scan them: the pricing
index (:mod:`~tai_autonomics.ledger.indexes`), one document per customer and chain under
``ledgers/{name}/prices/{sha256(chain, customer)}``: ``{"chain", "customer", "value"}``.

Kept apart from :mod:`~tai_autonomics.ledger.firestore_store`'s sequencing: the store's append
hands each batch to :meth:`FirestoreIndexes.write`, which adds its writes to the batch's atomic
commit. They are plain sets, without preconditions: appends commit one after another in leaf
order (each one's precondition is the log head the previous one wrote), so the last write is the
last receipt's, and two instances never race on an entry.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from google.cloud import firestore

from tai_autonomics.ledger.indexes import PriceKey
from tai_autonomics.ledger.store import SealedBatch

_T = TypeVar("_T")


class FirestoreIndexes:
    """The index documents under one ledger document; ``call`` turns Firestore errors into ours."""

    def __init__(self, head: firestore.DocumentReference, call: Callable[[str, Callable[[], Any]], Any]) -> None:
        self._prices = head.collection("prices")
        self._call = call

    def write(self, writes: Any, batch: SealedBatch) -> None:
        """Add the batch's index entries to its atomic write."""
        for key, value in batch.prices.items():
            writes.set(self._price_ref(key), {"chain": key.chain, "customer": key.customer, "value": value})

    def price(self, key: PriceKey) -> str | None:
        snap = self._call("read a price", self._price_ref(key).get)
        return str(snap.get("value")) if snap.exists else None

    def prices(self) -> Iterator[tuple[PriceKey, str]]:
        docs = self._call("read prices", lambda: list(self._prices.stream()))
        found = {PriceKey(str(doc.get("chain")), str(doc.get("customer"))): str(doc.get("value")) for doc in docs}
        yield from sorted(found.items())

    def _price_ref(self, key: PriceKey) -> firestore.DocumentReference:
        return self._prices.document(hashlib.sha256(f"{key.chain}\n{key.customer}".encode()).hexdigest())
