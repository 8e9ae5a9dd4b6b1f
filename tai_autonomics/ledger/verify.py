"""Verification of a stored ledger and of an exported directory, naming the first bad item.

Each receipt goes through two steps. :func:`_inspect` checks what needs nothing but the
receipt and the public key — its form, its place in the tree (``leaf_index``), its ``hash``, its
signature (contractual) or session MAC (advisory, checkable only inside the session that made
it) — and is what costs CPU, so an export's receipts are inspected in parallel worker
processes. :class:`_InOrder` then checks, in leaf order, what links receipts: unique ids, each
chain's ``seq`` and ``prev``, and the Merkle tree whose roots must match the signed checkpoints.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import multiprocessing
import os
import re
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from tai_autonomics.ledger.canonical import canonical_json, parse_json, parse_json_plain
from tai_autonomics.ledger.errors import (
    CanonicalJSONError,
    LedgerError,
    NoteError,
    ProofError,
    StoreCorruptError,
    VerificationError,
    VerifyAborted,
)
from tai_autonomics.ledger.indexes import PriceKey, price_of
from tai_autonomics.ledger.keys import LedgerPublicKey
from tai_autonomics.ledger.merkle import (
    InclusionVerifier,
    leaf_hash,
    node_hash,
)
from tai_autonomics.ledger.note import Checkpoint, open_checkpoint
from tai_autonomics.ledger.operations import (
    IN_PROGRESS,
    OPEN,
    OUTCOMES,
    RECORD_FIELDS,
    ClaimKey,
    OperationRecord,
    Recount,
    Usage,
    UsageKey,
)
from tai_autonomics.ledger.proofs import InclusionProof
from tai_autonomics.ledger.receipts import (
    ADVISORY,
    CONTRACTUAL,
    MODES,
    receipt_digest,
)
from tai_autonomics.ledger.store import ChainHead, LedgerStore, StoredLeaf
from tai_autonomics.ledger.tiles import TILE_BYTES, TILE_WIDTH, TiledTree, full_bundle

RECEIPTS_FILE, PROOFS_FILE = "receipts.jsonl", "proofs.jsonl"
CHECKPOINT_FILE, PUBLIC_KEY_FILE = "checkpoint", "public_key.pem"
_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_STRING_MEMBERS = ("id", "kind", "mode", "authority", "chain", "prev", "time", "hash")
_PARALLEL_MIN = 20_000  # below this many receipts, starting worker processes costs more than it saves
_TILES_HELD = 64  # recomputed tiles held before they are compared with the store's (about 0.5 MB)
_CHUNK = 2_048  # a power of two: aligned chunks are complete subtrees (see _ChunkProofs)


class SessionCheck(Protocol):
    """What checks advisory receipts' MACs: an :class:`~tai_autonomics.ledger.receipts.EvalSession`, or
    anything holding the session's secrets that answers the same (the ReceiptLedger actor's)."""

    id: str

    def check(self, receipt: Mapping[str, Any]) -> bool: ...


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """What a successful verification covered."""

    tree_size: int
    chains: int
    contractual: int
    advisory: int
    session_macs_checked: int
    #: the root of the tree of ``tree_size`` leaves (a signed checkpoint's, for an export)
    root: bytes

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": True,
            "tree_size": self.tree_size,
            "chains": self.chains,
            "contractual": self.contractual,
            "advisory": self.advisory,
            "session_macs_checked": self.session_macs_checked,
            "root": base64.b64encode(self.root).decode(),
        }


class _Bad(Exception):
    """A receipt check failed; the caller adds where."""


class _Checked(NamedTuple):
    """What :func:`_inspect` leaves for the in-order checks (a tuple: workers pickle one per receipt)."""

    id: str
    chain: str
    seq: int
    prev: str
    hash: str
    leaf: bytes
    advisory: bool
    mac_checked: bool
    priced: tuple[PriceKey, str] | None  # the pricing value it records


def _inspect(
    data: bytes, position: int, public: LedgerPublicKey, session: SessionCheck | None
) -> tuple[dict[str, Any], _Checked]:
    """Check one receipt on its own, and return it parsed with what the in-order checks need; its
    leaf hash is over ``data`` as given, so a receipt that is not in canonical form fails where
    its leaf hash is compared (see :func:`_leaf_mismatch`)."""
    try:
        obj, plain = parse_json_plain(data)
    except CanonicalJSONError as exc:
        raise _Bad(exc.message) from None
    if not isinstance(obj, dict):
        raise _Bad("not a JSON object")
    _check_form(obj)
    if obj["leaf_index"] != position:
        raise _Bad(f"says leaf_index {obj['leaf_index']} but is at leaf {position} "
                   "(moved, or one before it is missing)")
    try:
        digest = receipt_digest(obj, plain=plain)
    except CanonicalJSONError as exc:
        raise _Bad(exc.message) from None
    if digest.hex() != obj["hash"]:
        raise _Bad("hash does not match the receipt's contents")
    mac_checked = False
    if obj["authority"] == CONTRACTUAL:
        _check_signature(obj, digest, public)
    else:
        mac_checked = _check_advisory(obj, session)
    return obj, _Checked(
        obj["id"], obj["chain"], obj["seq"], obj["prev"], obj["hash"], leaf_hash(data),
        obj["authority"] == ADVISORY, mac_checked,
        price_of(obj["kind"], obj["chain"], obj["authority"], obj["payload"]),
    )


def _check_form(obj: dict[str, Any]) -> None:
    for name in _STRING_MEMBERS:
        if not isinstance(obj.get(name), str):
            raise _Bad(f"member {name!r} is missing or not a string")
    for name in ("seq", "leaf_index"):
        value = obj.get(name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise _Bad(f"member {name!r} is missing or not a non-negative integer")
    if not isinstance(obj.get("payload"), dict):
        raise _Bad("member 'payload' is missing or not an object")
    if obj["mode"] not in MODES or obj["authority"] != (ADVISORY if obj["mode"] == "eval" else CONTRACTUAL):
        raise _Bad(f"mode {obj['mode']!r} with authority {obj['authority']!r} is not allowed")
    if not _TIME.fullmatch(obj["time"]):
        raise _Bad("time is not RFC 3339 UTC with a Z")
    if not obj["chain"]:
        raise _Bad("chain is empty")


def _check_signature(obj: dict[str, Any], digest: bytes, public: LedgerPublicKey) -> None:
    if "session_mac" in obj:
        raise _Bad("a contractual receipt must not carry a session MAC")
    if obj.get("key_id") != public.key_id:
        raise _Bad(f"key_id {obj.get('key_id')!r} is not the ledger key {public.key_id}")
    try:
        signature = base64.b64decode(obj.get("signature", ""), validate=True)
    except (binascii.Error, TypeError, ValueError):
        raise _Bad("signature is not base64") from None
    if not public.verify(signature, digest):
        raise _Bad("signature does not verify with the ledger key")


def _check_advisory(obj: dict[str, Any], session: SessionCheck | None) -> bool:
    """Check an advisory receipt's form, and its MAC when it belongs to ``session``."""
    if "signature" in obj or "key_id" in obj:
        raise _Bad("an advisory receipt must not carry a signature")
    if not isinstance(obj.get("disclaimer"), str) or not isinstance(obj.get("epoch"), int):
        raise _Bad("an advisory receipt needs its disclaimer and epoch")
    if not isinstance(obj.get("session_mac"), str) or not _HEX64.fullmatch(obj["session_mac"]):
        raise _Bad("session_mac is not 64 lowercase hex digits")
    if session is None or obj["chain"] != session.id:
        return False
    if not session.check(obj):
        raise _Bad(f"session MAC does not verify for epoch {obj['epoch']}")
    return True


def _leaf_mismatch(data: bytes, what: str) -> str:
    """Why a receipt's leaf hash is not the expected one: non-canonical bytes, or changed ones."""
    try:
        canonical = canonical_json(parse_json(data)) == bytes(data)
    except CanonicalJSONError:
        canonical = False
    return what if canonical else "not in RFC 8785 canonical form"


class _InOrder:
    """The checks that link receipts: unique ids, chain order, and (``tree``) the tree they form.

    An export needs no tree here: every receipt's inclusion proof is checked against the signed
    root, which fixes the leaf at each index, and with the count that fixes the whole tree.
    """

    def __init__(self, *, tree: bool) -> None:
        self.tree = TiledTree.built() if tree else None
        self.tiles: dict[tuple[int, int], bytes] = {}  # tiles of the tree above, drained but not yet compared
        self.entries: list[bytes] = []  # the stored receipts of the entry bundle not yet complete
        self.size = 0
        self.heads: dict[str, ChainHead] = {}
        self.ids: set[str] = set()
        self.contractual = self.advisory = self.macs = 0
        self.prices: dict[PriceKey, str] = {}
        self.operations = _Operations()  # fed by verify_store only: an export has no stored state to compare

    def add(self, checked: _Checked) -> None:
        if checked.id in self.ids:
            raise _Bad(f"receipt id {checked.id} appears twice")
        last = self.heads.get(checked.chain, ChainHead())
        if checked.seq != last.seq + 1:
            raise _Bad(f"chain {checked.chain}: seq {checked.seq} follows seq {last.seq}")
        if checked.prev != last.hash:
            raise _Bad(f"chain {checked.chain}: prev is not the hash of seq {last.seq}")
        self.heads[checked.chain] = ChainHead(checked.seq, checked.hash)
        self.ids.add(checked.id)
        if self.tree is not None:
            self.tree.append(checked.leaf)
            if self.tree.size % TILE_WIDTH == 0:  # tiles completed or grown: held until compared
                self.tiles.update(((tile.level, tile.index), tile.hashes) for tile in self.tree.drain())
        self.size += 1
        self.advisory += checked.advisory
        self.contractual += not checked.advisory
        self.macs += checked.mac_checked
        if checked.priced is not None:
            self.prices[checked.priced[0]] = checked.priced[1]

    def report(self, root: bytes) -> VerifyReport:
        return VerifyReport(self.size, len(self.heads), self.contractual, self.advisory, self.macs, root)


class _Operations:
    """The coverage counters, operation records and idempotency claims the receipts give, by the
    rule a restore writes them with (:class:`~tai_autonomics.ledger.operations.Recount`), to
    compare with the stored ones once the receipts are read.

    Memory: the counters (one per policy, month and SKU) and the open operations' records are
    kept whole; a record that has closed can no longer change, so of it only an 8-byte digest
    (and 8 more of its claim, if it has one) is kept, beside the id that Recount keeps. What
    grows with history is thus one id and 16 bytes per operation, as the set of receipt ids that
    checks their uniqueness grows by one id per receipt.
    """

    def __init__(self) -> None:
        self.recount = Recount()
        self.closed: dict[str, bytes] = {}  # operation id -> digest of its closed record + of its claim

    def add(self, receipt: Mapping[str, Any], size: int) -> None:
        """Count one receipt; every ``_CHUNK`` receipts, keep only digests of the records closed meanwhile."""
        self.recount.add(receipt)
        if size % _CHUNK == 0:
            self.settle()

    def settle(self) -> None:
        for record in self.recount.take_changed()[1]:
            if record.status in OUTCOMES:
                self.closed[record.operation_id] = _digest(_record_fields(record)) + _claim_digest(record.claim)

    def compare(self, store: LedgerStore, size: int) -> None:
        """Raise VerificationError naming the first stored operation record or claim that differs
        from what the ``size`` receipts read give, that they do not give, or that is missing.

        Once: a writer appending meanwhile (the daemon's, while its ``verify`` runs) writes
        records of receipts after these, so a record or claim that only such receipts can
        explain (:func:`_later`) is passed over, for the next verify, instead of reading on and
        comparing every record again, which under steady appends would never end."""
        self.settle()
        open_records, matched = self.recount.records, 0
        unseen = set(open_records)  # in flight only: the receipts' open operations
        for stored in _listed(store.operation_records(), "operation records"):
            where = f"operation {stored.operation_id}"
            digest = self.closed.get(stored.operation_id)
            recounted = open_records.get(stored.operation_id)
            if recounted is not None:
                unseen.discard(stored.operation_id)
                if not _later(store, size, stored, recounted):
                    _compare_record(stored, recounted)
            elif digest is None:
                if _later(store, size, stored, None):
                    continue
                raise VerificationError(where, "stored, but no receipt opens it (a record with no receipts behind it)",
                                        operation_id=stored.operation_id)
            elif _digest(_record_fields(stored)) != digest[:8]:
                _compare_record(stored, _recounted(store, stored.operation_id, size))
            else:
                matched += 1
        missing = min(unseen) if unseen else None
        if missing is None and matched < len(self.closed):  # one closed record is not stored: which
            missing = next((op for op in self.closed if store.operation(op) is None), None)
        if missing is not None:
            raise VerificationError(f"operation {missing}", "missing: its receipts open it, no record is stored",
                                    operation_id=missing)
        self._compare_claims(store, size)

    def _compare_claims(self, store: LedgerStore, size: int) -> None:
        """Every stored claim must be the claim of the operation it names (whose stored record
        equals the receipts' by now), and every claim the receipts give must be stored."""
        open_records, matched = self.recount.records, 0
        for claim, owner in _listed(store.claims(), "idempotency claims"):
            where = f"claim of {claim.scope} key {claim.key!r}"
            if owner in open_records:
                holds = open_records[owner].claim == claim
            elif owner in self.closed:
                holds = self.closed[owner][8:] == _claim_digest(claim)
            elif (record := store.operation(owner)) is not None and record.claim == claim \
                    and _later(store, size, record, None):
                continue
            else:
                raise VerificationError(where, f"names operation {owner!r}, which no receipt opens (a claim with no "
                                               "receipts behind it)", scope=claim.scope, key=claim.key)
            if not holds:
                raise VerificationError(where, f"names operation {owner!r}, whose receipts do not claim this key",
                                        scope=claim.scope, key=claim.key, operation_id=owner)
            matched += 1
        claimed = sum(record.claim is not None for record in open_records.values()) + \
            sum(len(digest) > 8 for digest in self.closed.values())
        if matched == claimed:
            return
        for record in _listed(store.operation_records(), "operation records"):  # one is missing: which
            found = store.claim(record.claim) if record.claim is not None else None
            if record.claim is not None and (found is None or found.operation_id != record.operation_id):
                raise VerificationError(f"claim of {record.claim.scope} key {record.claim.key!r}",
                                        f"missing: operation {record.operation_id}'s intent claims it",
                                        scope=record.claim.scope, key=record.claim.key,
                                        operation_id=record.operation_id)


def _later(store: LedgerStore, size: int, stored: OperationRecord, recounted: OperationRecord | None) -> bool:
    """Whether receipts appended after the first ``size`` may have made ``stored`` what it is,
    where those receipts give ``recounted`` (None: no record): the store has grown, and either
    its intent is one of them, or it is the receipts' open record closed or interrupted since."""
    if store.size() <= size:
        return False
    if recounted is not None:
        return (recounted.status in OPEN and stored.status != IN_PROGRESS
                and replace(recounted, status=stored.status, outcome_id=stored.outcome_id) == stored)
    leaf = store.leaf_by_id(stored.intent_id)
    return leaf is not None and leaf.leaf_index >= size and parse_json(leaf.data).get("operation_id") == \
        stored.operation_id


def _record_fields(record: OperationRecord) -> Iterable[str]:
    return (getattr(record, name) for name in RECORD_FIELDS)


def _digest(parts: Iterable[str]) -> bytes:
    return hashlib.blake2b("\x00".join(parts).encode(), digest_size=8).digest()


def _claim_digest(claim: ClaimKey | None) -> bytes:
    return b"" if claim is None else _digest(claim)


def _compare_record(stored: OperationRecord, recounted: OperationRecord | None) -> None:
    """Name each member of a stored record that differs from the receipts' record."""
    if recounted is None or stored == recounted:
        return
    differ = [f"stored {name} {getattr(stored, name)!r}, the receipts give {getattr(recounted, name)!r}"
              for name in RECORD_FIELDS if getattr(stored, name) != getattr(recounted, name)]
    raise VerificationError(f"operation {stored.operation_id}", "; ".join(differ), operation_id=stored.operation_id)


def _recounted(store: LedgerStore, operation_id: str, size: int) -> OperationRecord | None:
    """The record the first ``size`` receipts give one operation, read again: only a closed record
    that differs from its digest needs it, to say how."""
    recount = Recount()
    for leaf in store.leaves(0, size):
        receipt = parse_json(leaf.data)  # verified already
        if receipt.get("operation_id") == operation_id:
            recount.add(receipt)
    return recount.records.get(operation_id)


def _listed(items: Iterator[Any], what: str) -> Iterator[Any]:
    """The store's listing, a stored entry that is not one (a hand edit) named as a verification failure."""
    try:
        yield from items
    except StoreCorruptError as exc:
        raise VerificationError(what, exc.message) from None


def verify_store(
    store: LedgerStore, public: LedgerPublicKey, *, origin: str | None = None, session: SessionCheck | None = None
) -> VerifyReport:
    """Verify every stored receipt and checkpoint, the coverage counters, operation records,
    idempotency claims and pricing index against a recount of the receipts, and the tree's tiles
    and the stored entry bundles against their recomputation; raise VerificationError at the
    first bad one.

    Besides each receipt, checks the stored leaf hash the tree is rebuilt from, and that every
    stored checkpoint (one per interval while appends arrived, and those signed on demand) is
    signed and has the root of the receipts before it, so a change that keeps each receipt
    self-consistent is still caught and placed between two checkpoints. The receipts after the
    latest checkpoint (appended since it was signed) are checked like the others. Safe while a
    writer appends: it verifies up to the stored size, then whatever was committed meanwhile,
    until it catches up.
    """
    state = _InOrder(tree=True)
    tree = state.tree
    assert tree is not None
    compared = False  # the operation records and claims, once (see _Operations.compare)
    while True:
        newest = store.checkpoint()  # read before the size: a checkpoint is stored after its leaves
        size = store.size()
        if newest is None and not size:
            raise VerificationError("checkpoints", "the ledger is empty: it has no checkpoint yet")
        if newest is not None and newest.size > size:
            raise VerificationError(f"leaf {size}", f"missing: the checkpoint of size {newest.size} covers "
                                    f"receipts not stored (the store holds {size})", leaf_index=size)
        if size == state.size:
            if not compared:
                state.operations.compare(store, size)
                compared = True
            stored, prices = store.usage(), dict(store.prices())
            if store.size() == size:  # no append between: the counters are of these receipts
                if newest is not None and newest.size == size:  # signed after the walk passed it
                    _check_stored_checkpoint(newest, tree, public, origin, None)
                _compare_usage(stored, state.operations.recount.usage)
                _compare_prices(prices, state.prices)
                _compare_tiles(store, state)
                return state.report(tree.root())
            continue
        _verify_segment(store, state, size, public, origin, session)


def _compare_usage(stored: dict[UsageKey, Usage], counted: dict[UsageKey, Usage]) -> None:
    """The stored coverage counters must be what the receipts give (docs/specification.md §10): a hand edit, or a
    reservation written without its intent, is named."""
    for key in sorted(set(stored) | set(counted)):
        have, want = stored.get(key, Usage()), counted.get(key, Usage())
        if have != want:
            raise VerificationError(
                f"usage {key.sku} of {key.chain} in {key.period}",
                f"stored count {have.count} and cost {have.cost}, the receipts give count {want.count} and cost "
                f"{want.cost}", chain=key.chain, period=key.period, sku=key.sku)


def _compare_prices(stored: dict[PriceKey, str], recounted: dict[PriceKey, str]) -> None:
    """The pricing index must be what the receipts give: Pricing's spike detection reads it."""
    for key in sorted(set(stored) | set(recounted)):
        if stored.get(key) != recounted.get(key):
            raise VerificationError(
                f"pricing index of {key.customer} on {key.chain}",
                f"stored value {stored.get(key)!r}, the receipts give {recounted.get(key)!r}",
                chain=key.chain, customer=key.customer)


def _compare_tiles(store: LedgerStore, state: _InOrder, *, complete_only: bool = False) -> None:
    """The tiles the store should hold for the receipts verified so far must hold the hashes the
    receipts give: proofs, the tile endpoints and a restart read them instead of the receipts.
    ``complete_only``: compare (and forget) the complete ones only, keeping memory bounded while
    the receipts are read; a tile still growing waits for the end. A writer appending meanwhile
    only extends a tile, so a stored tile is compared up to the width expected here."""
    if not complete_only:
        assert state.tree is not None, "verify_store builds the tree"
        state.tiles.update(((tile.level, tile.index), tile.hashes) for tile in state.tree.drain())
    for (level, index), hashes in sorted(state.tiles.items()):
        if complete_only and len(hashes) < TILE_BYTES:
            continue
        del state.tiles[(level, index)]
        stored = store.tile(level, index)
        if stored is None or stored[: len(hashes)] != hashes:
            raise VerificationError(
                f"tile {level}/{index}",
                "missing" if stored is None else "its stored hashes differ from the tree of the receipts",
                tile_level=level, tile_index=index)


def _compare_bundle(store: LedgerStore, state: _InOrder, data: bytes) -> None:
    """Take the verified receipt ``data`` into its entry bundle; once the bundle is full, the
    stored one must be its receipts' bundle: the tile endpoint and ``ledger export --tiles`` serve
    it instead of them. One not stored (a ledger older than bundles, a Firestore instance of an
    older version during a rollout) is no fault: it is assembled from these receipts when asked."""
    state.entries.append(data)
    if len(state.entries) < TILE_WIDTH:
        return
    index = (state.size - 1) // TILE_WIDTH
    expected = full_bundle(state.entries)
    state.entries.clear()
    stored = store.bundle(index)
    if stored is not None and stored != expected:
        raise VerificationError(f"entry bundle {index}", "its stored bytes differ from the bundle of its receipts",
                                bundle_index=index)


def _verify_segment(
    store: LedgerStore, state: _InOrder, end: int, public: LedgerPublicKey, origin: str | None,
    session: SessionCheck | None,
) -> None:
    """Verify the leaves from ``state.size`` to ``end`` and the checkpoints among them."""
    tree = state.tree
    assert tree is not None, "verify_store builds the tree"
    checkpoints = store.checkpoints(state.size, end)
    pending = next(checkpoints, None)
    batch_first: StoredLeaf | None = None

    def settle() -> None:
        nonlocal pending, batch_first
        while pending is not None and pending.size == state.size:
            _check_stored_checkpoint(pending, tree, public, origin, batch_first)
            batch_first = None
            pending = next(checkpoints, None)

    for leaf in store.leaves(state.size, end):
        settle()
        if leaf.leaf_index != state.size:
            raise VerificationError(
                f"leaf {state.size}",
                f"missing: the next stored receipt {leaf.receipt_id} is at leaf {leaf.leaf_index}",
                leaf_index=state.size, receipt_id=leaf.receipt_id,
            )
        batch_first = batch_first or leaf
        _add_stored(state, leaf, public, session)
        _compare_bundle(store, state, leaf.data)
        if len(state.tiles) >= _TILES_HELD:
            _compare_tiles(store, state, complete_only=True)
    settle()
    if state.size != end:
        raise VerificationError(
            f"leaf {state.size}", f"missing: the store's size is {end}, its receipts end at leaf {state.size}",
            leaf_index=state.size,
        )


def _add_stored(state: _InOrder, leaf: StoredLeaf, public: LedgerPublicKey, session: SessionCheck | None) -> None:
    where = f"receipt {leaf.receipt_id} (leaf {leaf.leaf_index})"
    try:
        receipt, checked = _inspect(leaf.data, leaf.leaf_index, public, session)
        if checked.leaf != leaf.leaf_hash:
            raise _Bad(_leaf_mismatch(leaf.data, "stored leaf hash does not match the receipt"))
        state.add(checked)
        state.operations.add(receipt, state.size)
    except _Bad as bad:
        raise VerificationError(where, str(bad), leaf_index=leaf.leaf_index, receipt_id=leaf.receipt_id) from None


def _check_stored_checkpoint(
    checkpoint: Checkpoint, tree: TiledTree, public: LedgerPublicKey, origin: str | None, first: StoredLeaf | None
) -> Checkpoint:
    where = f"checkpoint of size {checkpoint.size}"
    try:
        opened = open_checkpoint(checkpoint.note, public, origin)
    except NoteError as exc:
        raise VerificationError(where, exc.message, tree_size=checkpoint.size) from None
    if opened.size != checkpoint.size or opened.root != checkpoint.root:
        raise VerificationError(where, "its stored size or root differs from its signed note",
                                tree_size=checkpoint.size)
    if tree.root() != opened.root:
        named = f"; the receipts it adds start at {first.receipt_id} (leaf {first.leaf_index})" if first else ""
        raise VerificationError(where, f"root does not match the receipts it covers{named}", tree_size=checkpoint.size)
    return opened


def verify_export(directory: str | Path, *, workers: int | None = None) -> VerifyReport:
    """Verify an exported directory offline: every receipt and its inclusion proof against the
    signed checkpoint, the chains, and the tree size and root.

    ``workers`` processes inspect receipts in parallel (default: one per CPU for large exports).
    """
    base = Path(directory)
    public = LedgerPublicKey.from_pem(_read(base / PUBLIC_KEY_FILE), PUBLIC_KEY_FILE)
    try:
        checkpoint = open_checkpoint(_read(base / CHECKPOINT_FILE).decode("utf-8", "replace"), public)
    except NoteError as exc:
        raise VerificationError(CHECKPOINT_FILE, exc.message) from None
    if workers is None:
        workers = (os.cpu_count() or 1) if checkpoint.size >= _PARALLEL_MIN else 1
    state = _InOrder(tree=False)
    for number, outcome in _inspected_lines(base, public, checkpoint, workers):
        if isinstance(outcome, _Checked):
            try:
                state.add(outcome)
            except _Bad as bad:
                raise VerificationError(f"{RECEIPTS_FILE} line {number}", str(bad), line=number,
                                        leaf_index=number - 1) from None
        else:
            file, reason = outcome
            raise VerificationError(f"{file} line {number}", reason, line=number, leaf_index=number - 1)
    if state.size != checkpoint.size:
        raise VerificationError(RECEIPTS_FILE, f"holds {state.size} receipts, the checkpoint covers {checkpoint.size}")
    if _line_count(base / PROOFS_FILE) != state.size:
        raise VerificationError(PROOFS_FILE, "more proofs than receipts")
    return state.report(checkpoint.root)


_Outcome = _Checked | tuple[str, str]  # inspected, or (file, reason) of the first failure


def _inspect_chunk(
    public_raw: bytes, tree_size: int, root: bytes, first: int, pairs: list[tuple[bytes, bytes | None]]
) -> list[_Outcome]:
    """Inspect receipt lines ``first``.. with their proof lines; stops at the first failure (a
    line's receipt is checked before its proof).

    A top-level function of plain arguments, so worker processes can run it.
    """
    public = LedgerPublicKey.from_raw(public_raw)
    outcomes: list[_Outcome] = []
    for number, (line, _) in enumerate(pairs, start=first):
        try:
            outcomes.append(_inspect(line, number - 1, public, None)[1])
        except _Bad as bad:
            outcomes.append((RECEIPTS_FILE, str(bad)))
            break
    checked = [c for c in outcomes if isinstance(c, _Checked)]
    proofs = _ChunkProofs(tree_size, root, first - 1, [c.leaf for c in checked], pairs[0][1])
    for offset, (line, proof_line) in enumerate(pairs[: len(checked)]):
        failure = proofs.check(offset, line, proof_line)
        if failure is not None:
            return [*outcomes[:offset], failure]
    return outcomes


class _ChunkProofs:
    """Checks the inclusion proof lines of a run of leaves against the checkpoint.

    A run of ``2**k`` leaves starting at a multiple of ``2**k`` is a complete subtree, and the
    proof of each of its leaves is the ``k`` sibling hashes inside it, then the subtree's own
    path, the same for every leaf. Once the subtree built from the leaves and that path lead to
    the signed root, every proof line is checked by comparing it with the line ``ledger export``
    writes for it: about one hash per leaf instead of a climb. Anything else (a line another
    way, a run not so aligned, a mismatch) takes :class:`InclusionVerifier`, then the reference
    checks that name what is wrong.
    """

    def __init__(self, tree_size: int, root: bytes, start: int, leaves: list[bytes], first_line: bytes | None) -> None:
        self._size, self._root, self._start = tree_size, root, start
        self._leaves = leaves
        self._verifier = InclusionVerifier(tree_size, root)
        self._siblings: list[list[bytes]] = []  # per level inside the subtree: each node's base64
        self._path = b""  # the subtree's own path, as in an exported line
        width = len(leaves)
        if width >= 2 and not width & (width - 1) and not start % width and start + width <= tree_size and first_line:
            self._expect_subtree(first_line)

    def _expect_subtree(self, first_line: bytes) -> None:
        """Keep the subtree's hashes if the subtree, made from this chunk's own leaves, and the
        path the first proof line gives it lead to the signed root: that vouches for every leaf
        of the chunk, and for the path, so a line equal to the one they imply is right."""
        levels = len(self._leaves).bit_length() - 1
        hashes = _exported_proof_hashes(first_line, self._start, self._size)
        if hashes is None or len(hashes) < levels:
            return
        siblings, row = [], self._leaves
        for _ in range(levels):
            siblings.append([base64.b64encode(h) for h in row])
            row = [node_hash(row[k], row[k + 1]) for k in range(0, len(row), 2)]
        if self._verifier.accepts(self._start, self._leaves[0], [level[1] for level in siblings] + hashes[levels:]):
            self._siblings = siblings
            self._path = b"".join(b'","' + h for h in hashes[levels:])

    def check(self, offset: int, line: bytes, proof_line: bytes | None) -> _Outcome | None:
        """None if the proof line of leaf ``start + offset`` is right, else its failure."""
        if proof_line is None:
            return (PROOFS_FILE, "missing: fewer proofs than receipts")
        index, leaf = self._start + offset, self._leaves[offset]
        if self._siblings:
            inside = b'","'.join([level[(offset >> up) ^ 1] for up, level in enumerate(self._siblings)])
            expected = b'{"leaf_index":%d,"tree_size":%d,"hashes":["%s%s"]}' % (index, self._size, inside, self._path)
            if proof_line == expected:
                return None
        hashes = _exported_proof_hashes(proof_line, index, self._size)
        if hashes is not None and self._verifier.accepts(index, leaf, hashes):
            return None
        # not shown by the fast paths (another JSON layout, or a bad proof): the reference checks,
        # which name what is wrong
        try:
            proof = InclusionProof.from_json(parse_json(proof_line))
            if (proof.leaf_index, proof.tree_size) != (index, self._size):
                raise ProofError(f"proof is for leaf {proof.leaf_index} of size {proof.tree_size}")
            proof.verify(leaf, self._root)
        except ProofError as exc:
            reason = _leaf_mismatch(line, "")
            return (RECEIPTS_FILE, reason) if reason else (PROOFS_FILE, exc.message)
        except LedgerError as exc:
            return (PROOFS_FILE, exc.message)
        return None


def _exported_proof_hashes(line: bytes, leaf_index: int, tree_size: int) -> list[bytes] | None:
    """The hash strings of a proof line laid out exactly as ``ledger export`` writes it for this
    leaf and tree size (``{"leaf_index":i,"tree_size":n,"hashes":["...",...]}``), else None: the
    line then takes the reference path, whatever valid JSON layout it has. No backslash, and two
    quotes per hash, so every piece is a JSON string without escapes, taken as is; that each is
    base64 of 32 bytes is :class:`InclusionVerifier`'s to check."""
    prefix = b'{"leaf_index":%d,"tree_size":%d,"hashes":[' % (leaf_index, tree_size)
    if not (line.startswith(prefix) and line.endswith(b"]}")):
        return None
    middle = line[len(prefix) : -2]
    if not middle:
        return []
    if middle[:1] != b'"' or middle[-1:] != b'"' or b"\\" in middle:
        return None
    hashes = middle[1:-1].split(b'","')
    return hashes if middle.count(b'"') == 2 * len(hashes) else None


def _inspected_lines(
    base: Path, public: LedgerPublicKey, checkpoint: Checkpoint, workers: int
) -> Iterator[tuple[int, _Outcome]]:
    """Outcomes of all lines in order, inspected in ``workers`` processes (inline when 1)."""
    args = (public.raw, checkpoint.size, checkpoint.root)
    chunks = _chunks(_paired_lines(base))
    if workers <= 1:
        for first, pairs in chunks:
            yield from enumerate(_inspect_chunk(*args, first, pairs), start=first)
        return
    # fork: the workers run one pure function, and unlike spawn/forkserver, fork does not
    # re-import the caller's main module (which would need an `if __name__` guard in it)
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        in_flight: deque[tuple[int, Future]] = deque()
        try:
            for first, pairs in chunks:
                in_flight.append((first, pool.submit(_inspect_chunk, *args, first, pairs)))
                if len(in_flight) >= 3 * workers:
                    start, future = in_flight.popleft()
                    yield from enumerate(future.result(), start=start)
            while in_flight:
                start, future = in_flight.popleft()
                yield from enumerate(future.result(), start=start)
        except BrokenProcessPool:
            raise VerifyAborted("a verification worker process died") from None
        finally:
            for _, future in in_flight:
                future.cancel()


def _chunks(pairs: Iterator[tuple[bytes, bytes | None]]) -> Iterator[tuple[int, list[tuple[bytes, bytes | None]]]]:
    chunk: list[tuple[bytes, bytes | None]] = []
    first = 1
    for pair in pairs:
        chunk.append(pair)
        if len(chunk) == _CHUNK:
            yield first, chunk
            first += len(chunk)
            chunk = []
    if chunk:
        yield first, chunk


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise VerificationError(str(path), f"cannot read: {exc.strerror}") from None


def _paired_lines(base: Path) -> Iterator[tuple[bytes, bytes | None]]:
    """Each line of receipts.jsonl with the same line of proofs.jsonl (None past its end)."""
    try:
        with open(base / RECEIPTS_FILE, "rb") as receipts, open(base / PROOFS_FILE, "rb") as proofs:
            for line in receipts:
                proof = proofs.readline()
                yield line.rstrip(b"\n"), proof.rstrip(b"\n") if proof else None
    except OSError as exc:
        raise VerificationError(str(exc.filename or base), f"cannot read: {exc.strerror}") from None


def _line_count(path: Path) -> int:
    try:
        with open(path, "rb") as lines:
            return sum(1 for _ in lines)
    except OSError as exc:
        raise VerificationError(str(path), f"cannot read: {exc.strerror}") from None
