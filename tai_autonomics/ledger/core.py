"""The synchronous ledger core: the state and behaviour of the ReceiptLedger actor.

One :class:`Ledger` per daemon instance is the sequencer: it seals receipts (chain position,
leaf index, hash, signature or session MAC), appends them in batches through the store's
transaction (group commit: one durable write acknowledges every receipt of the batch), and
serves receipts, checkpoints and proofs from a
:class:`~tai_autonomics.ledger.tiles.TiledTree`: the tree's right edge in memory, its complete
tiles (and full entry bundles) written by each batch's transaction and read back through a cache
bounded in bytes. Opening reads a constant number of rows whatever the ledger's size.

Checkpoints are signed per interval, not per append (docs/specification.md §4): an append signs
its receipts only, so a lone append signs once, not twice. Its owner signs the latest tree
(:meth:`Ledger.sign_latest`) at most once per ``checkpoint_interval`` while appends arrive
(the ReceiptLedger actor's timer), and every read that needs a tree no stored checkpoint covers
yet (a proof, the checkpoint, a tile or entry bundle of the latest tree, an export, a backup)
signs one first, so a proof is never refused for lack of one. The stored tree may thus be
ahead of its latest checkpoint (by what was appended since, or for good after a crash);
opening checks the checkpoint against the tree and loads the tail from tiles and leaves like
the rest.

Everything it holds in memory is derived from the store, except the eval session's secrets,
which by design never outlive the process.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any

from tai_autonomics import logs
from tai_autonomics.ledger.errors import (
    CanonicalJSONError,
    DraftError,
    NoteError,
    NotFoundError,
    ProofError,
    StoreCorruptError,
    StoreUnavailable,
)
from tai_autonomics.ledger.indexes import PriceKey, price_of
from tai_autonomics.ledger.keys import LedgerKey, LedgerPublicKey
from tai_autonomics.ledger.note import Checkpoint, open_checkpoint, sign_checkpoint
from tai_autonomics.ledger.operations import (
    ClaimKey,
    CloseOperation,
    Counted,
    EffectState,
    OpenOperation,
    OperationRecord,
    Usage,
    UsageKey,
    usage_of,
)
from tai_autonomics.ledger.proofs import ConsistencyProof, InclusionProof
from tai_autonomics.ledger.receipts import (
    EPOCH_ROTATED,
    EvalSession,
    Place,
    Receipt,
    ReceiptDraft,
    Unsealed,
    finish_seal,
    hash_draft,
    rfc3339_utc,
)
from tai_autonomics.ledger.store import NO_READS, ChainHead, EffectReads, LedgerStore, LogHead, SealedBatch, StoredLeaf
from tai_autonomics.ledger.tiles import DEFAULT_CACHE_BYTES, TILE_HEIGHT, TILE_WIDTH, Bundler, TiledTree, entry_bundle

DEFAULT_ORIGIN = "tai-autonomics/ledger"
_PARALLEL_SIGNING = 32  # contractual receipts in a batch from which two threads sign it
_log = logging.getLogger(__name__)


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Ledger:
    """Append, checkpoint and prove receipts. Not thread-safe: one owner (the actor) calls it."""

    def __init__(
        self,
        store: LedgerStore,
        key: LedgerKey,
        tree: TiledTree,
        *,
        origin: str,
        max_batch: int,
        clock: Callable[[], datetime],
        readonly: bool = False,
    ) -> None:
        self._store = store
        self._key = key
        self._tree = tree
        self._origin = origin
        self._max_batch = max_batch
        self._clock = clock
        self._session = EvalSession()
        self._signer: ThreadPoolExecutor | None = None
        self._signed = 0  # the largest tree size this instance knows a stored checkpoint of
        self._readonly = readonly
        self._bundler = Bundler(self._entries)

    @classmethod
    def open(
        cls,
        store: LedgerStore,
        key: LedgerKey,
        *,
        origin: str = DEFAULT_ORIGIN,
        max_batch: int = 256,
        clock: Callable[[], datetime] = _utcnow,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        readonly: bool = False,
    ) -> Ledger:
        """Take the ledger's state from ``store``: the tree's right edge (at most 255 leaf hashes
        and one tile per level above), checked against the latest signed checkpoint, which may
        cover fewer leaves than are stored (the tail appended since it was signed) or none. A new
        eval session starts. What lies left of the edge is checked by ``ledger verify``.

        ``max_batch`` bounds one append transaction (Firestore allows 500 writes in one);
        ``cache_bytes`` bounds the tiles kept in memory for proofs. ``readonly``: a reader beside
        the daemon (``ledger export``, ``ledger backup`` on a read-only store): a checkpoint it
        signs on demand is returned but not stored.
        """
        tree = TiledTree(store, cache_bytes=cache_bytes)
        ledger = cls(store, key, tree, origin=origin, max_batch=max_batch, clock=clock, readonly=readonly)
        # the checkpoint before the size: a checkpoint is stored after the leaves it covers, so a
        # size read after it is at least its size
        latest = store.checkpoint()
        size = store.size()
        ledger._catch_up(size)
        if latest is not None:
            ledger._signed = ledger._check_checkpoint(latest).size
        logs.event(_log, "ledger.opened", size=size, origin=origin, key_id=key.key_id, session=ledger._session.id,
                   unsigned=size - ledger._signed)
        return ledger

    @property
    def size(self) -> int:
        """Leaves in the tree as this instance last saw it."""
        return self._tree.size

    @property
    def unsigned(self) -> int:
        """Leaves of this instance's tree that no checkpoint it knows of covers yet: what the
        owner's next interval signs (:meth:`sign_latest`)."""
        return self._tree.size - self._signed

    @property
    def origin(self) -> str:
        """The checkpoint origin (the log's name and the note key name)."""
        return self._origin

    @property
    def public_key(self) -> LedgerPublicKey:
        """The ledger's public key (for exports and verifiers)."""
        return self._key.public

    @property
    def session_id(self) -> str:
        """The eval session's chain id: advisory receipts of this process go there."""
        return self._session.id

    @property
    def epoch(self) -> int:
        """The eval session's current epoch."""
        return self._session.epoch

    def append(self, draft: ReceiptDraft) -> Receipt:
        """Seal and durably store one receipt."""
        return self.append_batch([draft])[0]

    def append_batch(self, drafts: Sequence[ReceiptDraft]) -> list[Receipt]:
        """Seal ``drafts`` in order and store them in one durable transaction (group commit).

        Returns only after the store committed durably, so every returned receipt may be
        acknowledged to its caller. All or none are stored: a refused draft refuses the batch.
        """
        return self._append(drafts, each=False)  # each=False: receipts only

    def integrate(self, drafts: Sequence[ReceiptDraft], **store_options: Any) -> list[Receipt | DraftError]:
        """The leased sequencer's append (:mod:`~tai_autonomics.ledger._sequencer`): like
        :meth:`append_batch`, but a draft the ledger refuses (bad, coverage exceeded, key
        claimed, operation not open) refuses only itself, in place in the result, and the others
        are stored; ``store_options`` go to the store's append (the lease fence, the answers)."""
        return self._append(drafts, each=True, **store_options)

    def _append(self, drafts: Sequence[ReceiptDraft], *, each: bool, **store_options: Any) -> list[Any]:
        if not drafts:
            return []
        if len(drafts) > self._max_batch:
            raise DraftError(f"a batch holds at most {self._max_batch} receipts, got {len(drafts)}")
        committed = self._tree.size
        now = self._clock()
        early: dict[int, DraftError] = {}
        chains: list[str] = []
        counted: list[Counted | None] = []
        for offset, draft in enumerate(drafts):
            try:
                chain = self._chain_of(draft)
                found = _counted(draft, chain, now)
            except DraftError as exc:
                if not each:
                    raise
                early[offset] = exc
                chain, found = "", None
            chains.append(chain)
            counted.append(found)

        def sealer(head: LogHead) -> SealedBatch:
            # a retried attempt (another instance committed first) must not build on the leaves
            # the lost attempt added: they are not in the store
            self._tree.truncate(min(committed, self._tree.size))
            refused = dict(early) if each else None
            return self._seal_batch(head, drafts, chains, now, counted, refused)

        try:
            batch = self._store.append({c for c in chains if c}, sealer, _reads(drafts, counted), **store_options)
        except BaseException:
            self._tree.truncate(min(committed, self._tree.size))
            raise
        self._tree.settle()
        self._bundler.settle()
        if not each:
            return list(batch.receipts)
        receipts = iter(batch.receipts)
        return [batch.refused[offset] if offset in batch.refused else next(receipts) for offset in range(len(drafts))]

    def rotate_epoch(self) -> Receipt:
        """Start a new eval-session epoch (fresh secret), recorded by a ``ledger.epoch_rotated``
        receipt MACed with the old epoch's secret. Older epochs stay checkable in this session."""
        old = self._session.epoch
        draft = ReceiptDraft(EPOCH_ROTATED, "eval", {"from_epoch": old, "to_epoch": old + 1})
        receipt = self.append(draft)
        self._session.rotate()
        logs.event(_log, "ledger.epoch_rotated", session=self._session.id, epoch=self._session.epoch)
        return receipt

    def check_session_mac(self, receipt: Receipt) -> bool:
        """Whether an advisory receipt carries a valid MAC of this process's eval session."""
        return self._session.check(receipt.to_dict())

    def checkpoint(self) -> Checkpoint:
        """The latest signed checkpoint, covering every committed receipt (other instances'
        too): the stored one if it does, else one signed now, on demand, for the tree as
        committed (the empty tree's on first use)."""
        latest = self._store.checkpoint()
        self._catch_up(self._store.size())  # read after the checkpoint: never below its size
        if latest is not None and latest.size >= self._tree.size:
            checked = self._check_checkpoint(latest)
            self._signed = max(self._signed, checked.size)
            return checked
        return self.sign_latest()

    def sign_latest(self) -> Checkpoint:
        """Sign the checkpoint of the tree as this instance has it and store it (the owner's
        interval, and reads on demand). Another instance may store checkpoints of the same or
        other sizes meanwhile: the store keeps each size once and serves the largest, so the
        latest never goes backwards, and one of the same size must be this one (ConflictError
        otherwise: a fork). A disk that refuses writes (StoreUnavailable) does not refuse the
        read that asked: the checkpoint is returned unstored, and signed again later."""
        size = self._tree.size
        signed = sign_checkpoint(self._origin, size, self._tree.root(), self._key)
        if self._readonly:
            return signed
        try:
            stored = self._store.put_checkpoint(signed)
        except StoreUnavailable as exc:  # a full or read-only disk: reads still get a signed tree
            logs.event(_log, "ledger.checkpoint_not_stored", logging.WARNING, size=size, code=exc.code,
                       reason=exc.message)
            return signed
        self._signed = max(self._signed, size)
        logs.event(_log, "ledger.checkpoint_signed", logging.DEBUG, size=size)
        return stored

    def receipt(self, receipt_id: str) -> Receipt:
        """The receipt with this id, or NotFoundError."""
        leaf = self._store.leaf_by_id(receipt_id)
        if leaf is None:
            raise NotFoundError(f"no receipt {receipt_id!r}")
        return self._receipt(leaf)

    def receipts(self, chain: str, after: int = 0, limit: int = 100) -> list[Receipt]:
        """Receipts of ``chain`` with ``seq > after``, by seq, at most ``limit`` (1..1000)."""
        if not 1 <= limit <= 1000 or after < 0:
            raise DraftError("limit must be 1..1000 and after >= 0")
        return [self._receipt(leaf) for leaf in self._store.chain_leaves(chain, after, limit)]

    def iter_receipts(self, start: int = 0, end: int | None = None) -> Iterator[Receipt]:
        """Receipts in leaf order from leaf ``start`` (export, audits)."""
        for leaf in self._store.leaves(start, end):
            yield self._receipt(leaf)

    def operation(self, operation_id: str) -> OperationRecord | None:
        """The stored record of an operation (any instance's)."""
        return self._store.operation(operation_id)

    def claim(self, scope: str, key: str) -> OperationRecord | None:
        """The record of the operation that claimed ``key`` in ``scope``."""
        return self._store.claim(ClaimKey(scope, key))

    def open_operations(self, scope: str, limit: int = 1000) -> list[OperationRecord]:
        """Operations of ``scope`` whose outcome is not recorded yet, oldest first."""
        return self._store.open_operations(scope, limit)

    def usage(self, chain: str | None = None) -> dict[UsageKey, Usage]:
        """The stored coverage counters (of ``chain``, or all)."""
        return self._store.usage(chain)

    def price(self, chain: str, customer: str) -> str | None:
        """The customer's last contractual pricing value on ``chain`` (the stored index)."""
        return self._store.price(PriceKey(chain, customer))

    def tile(self, level: int, index: int, width: int, tree_size: int | None = None) -> bytes:
        """The first ``width`` hashes of tree tile ``(level, index)`` (C2SP ``tlog-tiles``) in the
        tree of ``tree_size`` (default: the latest checkpoint's); NotFoundError if it lacks them."""
        size = self.checkpoint().size if tree_size is None else min(tree_size, self._tree.size)
        if not (0 <= level < 64 and index >= 0 and 1 <= width <= TILE_WIDTH) or \
                (size >> (TILE_HEIGHT * level)) < index * TILE_WIDTH + width:
            raise NotFoundError(f"tree size {size} has no tile {level}/{index} of width {width}")
        return self._tree.tile_hashes(level, index, width)

    def entry_bundle(self, index: int, width: int, tree_size: int | None = None) -> bytes:
        """The C2SP entry bundle of the ``width`` receipts from leaf ``index * 256`` (the first
        ``width`` of bundle ``index``); NotFoundError if the tree of ``tree_size`` (default: the
        latest checkpoint's) does not hold them. A full bundle is the stored one; a partial one,
        or a full one not stored (a ledger older than bundles), is assembled from the receipts."""
        size = self.checkpoint().size if tree_size is None else min(tree_size, self._tree.size)
        first = index * TILE_WIDTH
        if index < 0 or not 1 <= width <= TILE_WIDTH or size < first + width:
            raise NotFoundError(f"tree size {size} has no entry bundle {index} of width {width}")
        stored = self._store.bundle(index) if width == TILE_WIDTH else None
        return stored if stored is not None else entry_bundle(self._entries(first, first + width))

    def _entries(self, start: int, end: int) -> list[bytes]:
        """The bytes of the stored receipts ``start`` to ``end - 1``; StoreCorruptError if one is missing."""
        leaves = list(self._store.leaves(start, end))
        if [leaf.leaf_index for leaf in leaves] != list(range(start, end)):
            raise StoreCorruptError(f"ledger store is missing receipts between {start} and {end}")
        return [leaf.data for leaf in leaves]

    def inclusion_proof(self, receipt_id: str, tree_size: int | None = None) -> InclusionProof:
        """Proof that the receipt is in the tree of ``tree_size`` leaves (default: the latest
        checkpoint's size)."""
        receipt = self.receipt(receipt_id)
        size = self.checkpoint().size if tree_size is None else tree_size
        return self.leaf_proof(receipt.leaf_index, size)

    def leaf_proof(self, leaf_index: int, tree_size: int) -> InclusionProof:
        """Inclusion proof of leaf ``leaf_index`` in the tree of ``tree_size`` leaves."""
        self._cover(tree_size)
        if not leaf_index < tree_size <= self._tree.size:
            raise ProofError(f"leaf {leaf_index} is not in a tree of size {tree_size} (current size {self._tree.size})")
        return InclusionProof(leaf_index, tree_size, tuple(self._tree.inclusion_proof(leaf_index, tree_size)))

    def leaf_proofs(self, tree_size: int) -> Iterator[InclusionProof]:
        """The inclusion proof of every leaf in the tree of ``tree_size`` leaves, in leaf order
        (export: one walk of the tree instead of one descent per leaf)."""
        self._cover(tree_size)
        if tree_size > self._tree.size:
            raise ProofError(f"no tree of size {tree_size} (current size {self._tree.size})")
        for index, hashes in enumerate(self._tree.inclusion_proofs(tree_size)):
            yield InclusionProof(index, tree_size, tuple(hashes))

    def consistency_proof(self, from_size: int, to_size: int | None = None) -> ConsistencyProof:
        """Proof that the tree of ``from_size`` is a prefix of the tree of ``to_size`` (default: latest)."""
        to_size = self.checkpoint().size if to_size is None else to_size
        self._cover(to_size)
        return ConsistencyProof(from_size, to_size, tuple(self._tree.consistency_proof(from_size, to_size)))

    def close(self) -> None:
        """Close the store (and stop the signing thread, if one was started)."""
        if self._signer is not None:
            self._signer.shutdown()
            self._signer = None
        self._store.close()

    def _chain_of(self, draft: ReceiptDraft) -> str:
        if draft.mode == "eval":
            if draft.chain not in (None, self._session.id):
                raise DraftError(f"advisory receipts go on this process's eval session chain {self._session.id}")
            return self._session.id
        return draft.chain  # type: ignore[return-value]  # ReceiptDraft requires it for non-eval

    def _seal_batch(self, head: LogHead, drafts: Sequence[ReceiptDraft], chains: Sequence[str], now: datetime,
                    counted: Sequence[Counted | None], refused: dict[int, DraftError] | None = None) -> SealedBatch:
        """Sequence and seal ``drafts`` on ``head`` (called inside the store's transaction).

        The batch's receipts carry one time, ``now``: the month their reservations were read for
        (a transaction retried across midnight on the 1st still counts where it was checked).
        Effects are applied in order while hashing, so a refused draft aborts the batch before
        anything is signed, unless ``refused`` collects refusals (the sequencer's
        :meth:`integrate`): then that draft takes no place and the next one takes its place
        (:meth:`EffectState.apply` changes nothing when it refuses). Each receipt's ``prev`` is
        the previous one's hash, not its signature, so the batch is hashed in order first and
        signed afterwards (:meth:`_sign_all`, on both cores for large batches); the signatures
        are the same bytes either way (Ed25519 is deterministic).
        """
        self._sync_to(head.size)
        heads = dict(head.chains)
        effects = EffectState.read(head.usage, head.claims, head.operations)
        unsealed: list[Unsealed] = []
        epoch = self._session.epoch
        stamp = rfc3339_utc(now)
        for offset, (draft, chain) in enumerate(zip(drafts, chains)):
            if refused is not None and offset in refused:
                continue
            last = heads.get(chain, ChainHead())
            hashed = hash_draft(draft, Place(chain, last.seq + 1, last.hash, head.size + len(unsealed), now, epoch))
            if draft.effect is not None:
                try:
                    effects.apply(draft.effect, operation_id=draft.operation_id, receipt_id=hashed.body["id"],
                                  chain=chain, time=stamp, counted=counted[offset])
                except DraftError as exc:
                    if refused is None:
                        raise
                    refused[offset] = exc
                    continue
            heads[chain] = ChainHead(last.seq + 1, hashed.hash)
            unsealed.append(hashed)
        signatures = iter(self._sign_all([item.digest for item in unsealed if item.contractual]))
        receipts = []
        for offset, item in enumerate(unsealed):
            fields, data = finish_seal(item, self._key, self._session, next(signatures) if item.contractual else None)
            receipt = Receipt(head.size + offset, data, fields)
            self._tree.append(receipt.leaf_hash)
            receipts.append(receipt)
        stored = [(draft, chain) for offset, (draft, chain) in enumerate(zip(drafts, chains))
                  if not (refused and offset in refused)]
        prices = dict(found for draft, chain in stored
                      if (found := price_of(draft.kind, chain, draft.authority, draft.payload)) is not None)
        return SealedBatch(receipts, self._tree.size, effects.changed_usage, tuple(effects.changed_operations.values()),
                           self._tree.drain(), prices, refused or {},
                           bundles=self._bundler.add(head.size, [receipt.data for receipt in receipts]))

    def _sign_all(self, digests: list[bytes]) -> list[bytes]:
        """Ed25519 signatures of ``digests``, in order. From ``_PARALLEL_SIGNING`` digests on, a
        helper thread signs the first half while this one signs the rest: libsodium runs
        without the GIL, so a group commit's batch is signed on two cores."""
        sign = self._key.sign
        if len(digests) < _PARALLEL_SIGNING:
            return [sign(digest) for digest in digests]
        if self._signer is None:
            self._signer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ledger-sign")
        half = len(digests) // 2
        first = self._signer.submit(lambda: [sign(digest) for digest in digests[:half]])
        rest = [sign(digest) for digest in digests[half:]]
        return first.result() + rest

    def _sync_to(self, size: int) -> None:
        """Make the tree exactly ``size`` leaves: drop uncommitted ones, fetch others' commits."""
        if self._tree.size > size:
            self._tree.truncate(size)
        self._catch_up(size)

    def _cover(self, size: int) -> None:
        """Before serving a proof for ``size``, fetch leaves other instances committed, if any."""
        if size > self._tree.size:
            self._catch_up(min(size, self._store.size()))

    def _catch_up(self, size: int) -> None:
        """Move the tree's edge to ``size``, committed by other instances (or before this opened)."""
        if size > self._tree.size:
            self._tree.load(size)

    def _check_checkpoint(self, checkpoint: Checkpoint) -> Checkpoint:
        """A stored checkpoint must be signed by our key and match our tree."""
        try:
            opened = open_checkpoint(checkpoint.note, self._key.public, self._origin)
        except NoteError as exc:
            raise StoreCorruptError(f"stored checkpoint of size {checkpoint.size}: {exc.message}") from None
        if (opened.size, opened.root) != (checkpoint.size, checkpoint.root) or checkpoint.size > self._tree.size:
            raise StoreCorruptError(f"stored checkpoint of size {checkpoint.size} does not match its row")
        if self._tree.root(checkpoint.size) != checkpoint.root:
            raise StoreCorruptError(f"stored leaves do not match the signed checkpoint of size {checkpoint.size}")
        return opened

    def _receipt(self, leaf: StoredLeaf) -> Receipt:
        try:
            return Receipt.from_data(leaf.leaf_index, leaf.data)
        except CanonicalJSONError as exc:
            raise StoreCorruptError(f"stored receipt at leaf {leaf.leaf_index}: {exc.message}") from None

    def __repr__(self) -> str:
        return f"Ledger(origin={self._origin!r}, size={self._tree.size}, key_id={self._key.key_id})"


def _counted(draft: ReceiptDraft, chain: str, now: datetime) -> Counted | None:
    """What an intent reserves; DraftError if it reserves without opening its operation (the
    stored counters would then differ from a recount of the receipts)."""
    found = usage_of(draft.kind, chain, draft.authority, rfc3339_utc(now), draft.payload)
    if found is not None and not isinstance(draft.effect, OpenOperation):
        raise DraftError("an intent that reserves coverage (payload.coverage) must open its operation (effect)")
    return found


def _reads(drafts: Sequence[ReceiptDraft], counted: Sequence[Counted | None]) -> EffectReads:
    """What the batch's effects need read in the append's transaction."""
    opens = [d.effect for d in drafts if isinstance(d.effect, OpenOperation)]
    if not opens and not any(isinstance(d.effect, CloseOperation) for d in drafts):
        return NO_READS
    return EffectReads(
        usage=frozenset(found.key for found in counted if found is not None),
        claims=frozenset(ClaimKey(e.scope, e.key) for e in opens if e.key),
        operations=frozenset(d.operation_id for d in drafts if d.effect is not None and d.operation_id),
    )
