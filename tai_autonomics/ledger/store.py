"""The store interface: what the ledger needs from durable storage, and nothing more.

Stores hold bytes and positions; they do not sign, hash or parse receipts. Sequencing happens
inside the store's write transaction: :meth:`LedgerStore.append` reads the log head (tree size
and the heads of the chains a batch touches) in the transaction and hands it to the ledger's
``seal`` callback, which assigns ``seq``, ``prev`` and leaf indexes from that head and seals the
receipts. Two writers (two daemon instances on Firestore) thus cannot both extend the same
head: the loser's transaction fails or is retried with the new head, and a chain never forks.
One transaction per batch is also the group commit: many callers, one durable write.
Checkpoints are not part of it: the ledger signs them per interval and on demand
(:meth:`LedgerStore.put_checkpoint`), so the stored tree may be ahead of the latest one.

The same transaction reads and writes what the batch's receipts do to shared state
(:mod:`~tai_autonomics.ledger.operations`): the coverage counters its intents reserve against,
the idempotency claims they make, the operation records its outcomes close. The store reads
what :class:`EffectReads` names into the head, and writes what :class:`SealedBatch` carries.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from tai_autonomics.ledger.errors import ConflictError, DraftError
from tai_autonomics.ledger.indexes import PriceKey
from tai_autonomics.ledger.note import Checkpoint
from tai_autonomics.ledger.operations import ClaimKey, OperationRecord, Usage, UsageKey
from tai_autonomics.ledger.receipts import Receipt
from tai_autonomics.ledger.tiles import Bundle, Tile


@dataclass(frozen=True, slots=True)
class ChainHead:
    """The last receipt of a chain: its ``seq`` and ``hash`` (0 and "" for a new chain)."""

    seq: int = 0
    hash: str = ""


@dataclass(frozen=True, slots=True)
class EffectReads:
    """What a batch's effects need read in its transaction, besides the chain heads."""

    usage: frozenset[UsageKey] = frozenset()
    claims: frozenset[ClaimKey] = frozenset()
    operations: frozenset[str] = frozenset()


NO_READS = EffectReads()


@dataclass(frozen=True, slots=True)
class LogHead:
    """The committed state a batch is sequenced against: the tree size, the chain heads, and the
    counters, claims and operation records :class:`EffectReads` asked for (absent: none stored)."""

    size: int
    chains: Mapping[str, ChainHead]
    usage: Mapping[UsageKey, Usage] = field(default_factory=dict)
    claims: Mapping[ClaimKey, OperationRecord] = field(default_factory=dict)
    operations: Mapping[str, OperationRecord] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SealedBatch:
    """Receipts sealed at consecutive leaf indexes from a head, the tree size after them, and
    the counters, operation records, index entries (:mod:`~tai_autonomics.ledger.indexes`), tree
    tiles and full entry bundles they change (written in the same transaction; a tile, a bundle
    or an index entry replaces the stored one of its key)."""

    receipts: Sequence[Receipt]
    size: int
    usage: Mapping[UsageKey, Usage] = field(default_factory=dict)
    operations: Sequence[OperationRecord] = ()
    tiles: Sequence[Tile] = ()
    prices: Mapping[PriceKey, str] = field(default_factory=dict)
    #: drafts refused in place (their offset in the batch's drafts), when the sequencer seals
    refused: Mapping[int, DraftError] = field(default_factory=dict)
    #: the full entry bundles the receipts complete (:class:`~tai_autonomics.ledger.tiles.Bundler`)
    bundles: Sequence[Bundle] = ()


@dataclass(frozen=True, slots=True)
class StoredLeaf:
    """One stored receipt as raw bytes: what verification reads even when it is corrupt."""

    leaf_index: int
    receipt_id: str
    leaf_hash: bytes
    data: bytes


Sealer = Callable[[LogHead], SealedBatch]


class LedgerStore(Protocol):
    """Durable storage of receipts (leaves) and checkpoints. Every method may raise StoreError."""

    #: the most receipts one append may hold (Firestore: 500 writes per atomic batch)
    max_batch: int

    def append(self, chains: Collection[str], seal: Sealer, reads: EffectReads = NO_READS) -> SealedBatch:
        """Atomically and durably append the batch ``seal`` builds from the current head.

        Reads the tree size, the heads of ``chains`` and what ``reads`` names inside the write
        transaction, calls ``seal`` with them, writes the receipts, new size, counters, operation
        records, tiles and index entries, and returns only after the commit is durable. ``seal`` may be called
        again if the transaction is retried; an exception from it aborts the transaction.
        Raises ConflictError if the batch does not extend that head exactly.
        """

    def size(self) -> int:
        """The committed tree size (number of leaves)."""

    def leaf_hashes(self, start: int, end: int) -> Iterator[bytes]:
        """Stored leaf hashes of leaves ``start`` to ``end - 1``, in order."""

    def tile(self, level: int, index: int) -> bytes | None:
        """The stored hashes of tree tile ``(level, index)`` (:mod:`~tai_autonomics.ledger.tiles`)."""

    def bundle(self, index: int) -> bytes | None:
        """The stored full entry bundle ``index`` (:mod:`~tai_autonomics.ledger.tiles`), or None
        (not stored: a ledger older than bundles, or a receipt too long for one)."""

    def add_bundles(self, bundles: Sequence[Bundle]) -> int:
        """Store the full entry bundles not stored yet (``ledger fill-bundles``: the history of a
        ledger older than bundles); one stored already is left as it is. Returns how many were written."""

    def leaves(self, start: int = 0, end: int | None = None) -> Iterator[StoredLeaf]:
        """Stored receipts in leaf order (gaps, if any, show as missing indexes)."""

    def leaf_by_id(self, receipt_id: str) -> StoredLeaf | None:
        """The stored receipt with this id."""

    def chain_leaves(self, chain: str, after_seq: int, limit: int) -> list[StoredLeaf]:
        """Up to ``limit`` receipts of ``chain`` with ``seq > after_seq``, by seq."""

    def operation(self, operation_id: str) -> OperationRecord | None:
        """The stored record of an operation."""

    def claim(self, key: ClaimKey) -> OperationRecord | None:
        """The record of the operation that claimed ``key``."""

    def open_operations(self, scope: str, limit: int) -> list[OperationRecord]:
        """Up to ``limit`` operations of ``scope`` still open (in progress or interrupted), oldest first."""

    def operation_records(self) -> Iterator[OperationRecord]:
        """Every stored operation record, by operation id, read page by page (what ``ledger verify``
        recounts); StoreCorruptError naming the first one that is not a record of its operation."""

    def claims(self) -> Iterator[tuple[ClaimKey, str]]:
        """Every stored idempotency claim and the operation id it names, read page by page (what
        ``ledger verify`` recounts); StoreCorruptError naming the first one that is not a claim."""

    def usage(self, chain: str | None = None) -> dict[UsageKey, Usage]:
        """The stored coverage counters (of ``chain``, or all)."""

    def price(self, key: PriceKey) -> str | None:
        """The customer's last contractual pricing value (:func:`~.indexes.price_of`), if any."""

    def prices(self) -> Iterator[tuple[PriceKey, str]]:
        """Every stored pricing value, by chain and customer (what ``ledger verify`` recounts)."""

    def put_checkpoint(self, checkpoint: Checkpoint) -> Checkpoint:
        """Store ``checkpoint`` unless one of its size exists; return the stored one.

        Every size is kept, so :meth:`checkpoint` (the largest) never goes backwards when
        instances store checkpoints of different sizes in any order. Raises ConflictError if
        the stored one has a different root.
        """

    def checkpoint(self, size: int | None = None) -> Checkpoint | None:
        """The stored checkpoint of ``size`` (default: the largest), if any."""

    def checkpoints(self, first: int = 0, last: int | None = None) -> Iterator[Checkpoint]:
        """Stored checkpoints with ``first <= size <= last``, by size."""

    def close(self) -> None:
        """Release connections."""


def check_batch(head: LogHead, batch: SealedBatch) -> None:
    """Refuse a batch that does not continue ``head`` exactly (a bug or a fork attempt)."""
    heads = dict(head.chains)
    for offset, receipt in enumerate(batch.receipts):
        last = heads.get(receipt.chain, ChainHead())
        if receipt.leaf_index != head.size + offset:
            raise ConflictError(f"receipt {receipt.id} is not at the next leaf index {head.size + offset}")
        if receipt.seq != last.seq + 1 or receipt.prev != last.hash:
            raise ConflictError(f"receipt {receipt.id} does not extend chain {receipt.chain} at seq {last.seq}")
        heads[receipt.chain] = ChainHead(receipt.seq, receipt.hash)
    if batch.size != head.size + len(batch.receipts):
        raise ConflictError("the batch's tree size is not its head's plus its receipts")


def checkpoint_from_row(size: int, root: bytes, note: str) -> Checkpoint:
    """A Checkpoint from stored columns (its signature is checked by whoever reads it)."""
    return Checkpoint(note.split("\n", 1)[0], size, bytes(root), note)
