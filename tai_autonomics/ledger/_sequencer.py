"""The leased sequencer of a Firestore ledger shared by many daemon instances (docs/specification.md §10).

Why. With every instance sequencing its own batches (:meth:`FirestoreStore.append`'s optimistic
path), every batch of every instance writes the one head document, so instances race for it:
each lost race is a re-read and a re-seal, and latency grows with every instance added
(docs/performance.md). Here, as in Trillian and Tessera, one instance sequences and the others
queue:

* **The lease** lives in the head document itself (``ledgers/{name}``: ``{"size", "sequencer":
  {"holder", "expires", "term"}}``). The holder's every batch rewrites the head anyway, so the
  lease is renewed by the batch that uses it, and fencing costs nothing more: a batch commits
  only if the head is unchanged since its read, and its read must show this holder's unexpired
  lease of this term, so a stale holder (paused past its expiry, then taken over) can never
  write. An idle holder renews when half the lease is gone (one write a second with the default
  two-second lease, Firestore's sustained rate for one document). Anyone may take an expired
  lease (a killed holder's); ``term`` counts the takeovers.
* **Instances that do not hold it** write each group-commit batch of drafts to a document of
  their own, ``ledgers/{name}/pending/{id}`` (``{"instance", "created", "state": "pending",
  "drafts"}``): no document is shared by two writers. The holder reads the pending documents
  once per ``interval_s``, integrates up to a batch of them in **one atomic commit** (receipts,
  chain heads, head and lease, coverage counters, claims and operation records, and
  each pending document rewritten with ``state: "done"`` and one ``outcomes`` entry per draft:
  the stored receipt or the refusal), preconditioned on every pending document being as read.
  The writing instance reads its answer (one poll per interval), replies to its callers and
  deletes the document. An answer not come by ``timeout_s`` is withdrawn: the pending document
  is deleted on the precondition that it is still unanswered, and the callers get
  ``ledger_busy``; if the answer came first, they get it.
* **The holder's own drafts** are integrated at once, in the group commit that gathered them:
  its callers keep single-instance latency; the others wait about one interval more.
* **Refusals** are per draft, exactly as the optimistic path decides them (the same
  :class:`~tai_autonomics.ledger.operations.EffectState`): an intent whose reservation does not
  fit or whose key is claimed is answered with the refusal, in place, and the batch goes on.
* **Signing**: the ledger key is the same on every instance (the release's ``[ledger]
  key_file``/``key_env``), so the holder signs every contractual receipt, and any instance may
  sign a checkpoint (ledger/core.py: per interval and on demand); no
  key or signature travels between instances, only drafts and sealed receipts.
* **Advisory (eval) receipts** are MACed with a secret of the process's own eval session that
  is never stored, and the MAC covers the receipt's place in the tree, so nobody else can seal
  them: an instance appends its eval drafts itself, through the optimistic path (which still
  refuses a fork by its preconditions, and is slower only under contention). Eval receipts
  are not what a busy service appends; contractual ones are.

A takeover loses nothing acknowledged: a receipt is answered only after its commit, and a
pending document is either answered in the commit that stores its receipts or still pending
for the next holder (or withdrawn by its writer, and then never integrated).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tai_autonomics import logs
from tai_autonomics.ledger.canonical import parse_json
from tai_autonomics.ledger.core import Ledger
from tai_autonomics.ledger.errors import (
    CanonicalJSONError,
    ConflictError,
    DraftError,
    LedgerBusy,
    LedgerError,
)
from tai_autonomics.ledger.operations import (
    CloseOperation,
    CoverageExceeded,
    Effect,
    OpenOperation,
    OperationExists,
    OperationNotOpen,
    effect_from_json,
)
from tai_autonomics.ledger.receipts import Receipt, ReceiptDraft
from tai_autonomics.ledger.store import SealedBatch

if TYPE_CHECKING:  # the client library is imported only where a Firestore ledger is configured
    from google.cloud import firestore

    from tai_autonomics.ledger.firestore_store import FirestoreStore

DEFAULT_LEASE_S = 2.0
DEFAULT_INTERVAL_S = 0.25
DEFAULT_TIMEOUT_S = 4.0  # an answer later than this is withdrawn: callers wait 5 s (the default call timeout)
PENDING = "pending"
DONE = "done"
_LEASE_FIELD = "sequencer"
_MAX_WRITES = 500  # Firestore's limit for one atomic commit
_WRITES_PER_DRAFT = 4  # its leaf, operation record, claim and chain head, at most
# the head and the hash tiles a batch completes or grows (ledger/tiles.py: at most two per level,
# eight levels hold 256**8 leaves)
_FIXED_WRITES = 1 + 16
_SCAN = 200  # pending documents read per integration
_REFUSALS: dict[str, type[DraftError]] = {cls.code: cls for cls in
                                           (DraftError, OperationExists, OperationNotOpen, CoverageExceeded)}
_log = logging.getLogger(__name__)

Outcome = Receipt | DraftError


class NotSequencer(LedgerError):
    """This instance does not hold the sequencer lease (lost it to a takeover): queue instead."""

    code = "ledger_not_sequencer"


@dataclass(frozen=True, slots=True)
class Lease:
    """Who sequences the ledger until when (wall-clock seconds), and the how-many-th takeover."""

    holder: str
    expires: float
    term: int

    def to_json(self) -> dict[str, Any]:
        return {"holder": self.holder, "expires": self.expires, "term": self.term}

    @classmethod
    def of(cls, head: Any) -> Lease | None:
        """The lease a head snapshot holds; None if none (or one edited into nonsense: expired)."""
        value = head.get(_LEASE_FIELD) if head.exists and _LEASE_FIELD in (head.to_dict() or {}) else None
        if not isinstance(value, Mapping):
            return None
        holder, expires, term = value.get("holder"), value.get("expires"), value.get("term")
        if (not isinstance(holder, str) or isinstance(expires, bool) or not isinstance(expires, (int, float))
                or isinstance(term, bool) or not isinstance(term, int)):
            return None
        return cls(holder, float(expires), term)


@dataclass(frozen=True, slots=True)
class Entry:
    """A pending document as the holder read it: its drafts, or why they cannot be read."""

    ref: firestore.DocumentReference
    update_time: Any
    created: float
    drafts: tuple[ReceiptDraft, ...]
    error: DraftError | None = None


def draft_to_json(draft: ReceiptDraft) -> dict[str, Any]:
    """A draft as a pending document stores it (the payload as its canonical JSON text)."""
    return {"kind": draft.kind, "mode": draft.mode, "payload": draft.payload_json, "chain": draft.chain,
            "operation_id": draft.operation_id, "effect": _effect_json(draft.effect)}


def draft_from_json(value: Any) -> ReceiptDraft:
    """The draft a pending document stores; DraftError if it is not one (a hand edit)."""
    if not isinstance(value, Mapping) or not isinstance(value.get("payload"), str):
        raise DraftError("a pending draft must be {kind, mode, payload (JSON text), chain, operation_id, effect}")
    try:
        payload = parse_json(value["payload"].encode("utf-8"))
    except CanonicalJSONError as exc:
        raise DraftError(f"pending draft payload: {exc.message}") from None
    kind, mode = value.get("kind"), value.get("mode")
    if not isinstance(kind, str) or not isinstance(mode, str):
        raise DraftError("a pending draft's kind and mode must be strings")
    return ReceiptDraft(kind, mode, payload, chain=value.get("chain"),
                        operation_id=value.get("operation_id"), effect=effect_from_json(value.get("effect")))


def outcome_to_json(outcome: Outcome) -> dict[str, Any]:
    """One draft's answer: the stored receipt (leaf index and bytes) or the refusal."""
    if isinstance(outcome, Receipt):
        return {"leaf_index": outcome.leaf_index, "data": outcome.data}
    return {"error": {"code": outcome.code, "message": outcome.message, "detail": outcome.detail}}


def outcome_from_json(value: Any, where: str) -> Outcome:
    """An answer as :func:`outcome_to_json` wrote it; a DraftError naming ``where`` if it is not one."""
    if isinstance(value, Mapping) and isinstance(value.get("error"), Mapping):
        error = value["error"]
        code, message = str(error.get("code", "ledger_bad_draft")), str(error.get("message", ""))
        detail = error.get("detail") if isinstance(error.get("detail"), Mapping) else {}
        return _REFUSALS.get(code, DraftError)(message, code=code, detail=dict(detail))
    if isinstance(value, Mapping) and isinstance(value.get("leaf_index"), int) and isinstance(value.get("data"), bytes):
        try:
            return Receipt.from_data(value["leaf_index"], value["data"])
        except CanonicalJSONError as exc:
            return DraftError(f"{where}: the answer is not a receipt ({exc.message})")
    return DraftError(f"{where}: the answer is not a receipt or a refusal")


def _effect_json(effect: Effect | None) -> dict[str, Any] | None:
    if isinstance(effect, OpenOperation):
        return {"open": {"scope": effect.scope, "key": effect.key, "fingerprint": effect.fingerprint}}
    if isinstance(effect, CloseOperation):
        return {"close": {"status": effect.status}}
    return None


class Sequencer:
    """One instance's side of the leased sequencer: takes and renews the lease, integrates its
    own drafts and (as holder) the others', queues its drafts (when not), and collects answers.

    Not thread-safe: the ReceiptLedger actor owns it, and calls :meth:`tick` every
    ``interval_s``.
    """

    def __init__(self, ledger: Ledger, store: FirestoreStore, *, max_batch: int, instance: str | None = None,
                 lease_s: float = DEFAULT_LEASE_S, interval_s: float = DEFAULT_INTERVAL_S,
                 timeout_s: float = DEFAULT_TIMEOUT_S, clock: Callable[[], float] = time.time) -> None:
        if not 0 < interval_s < lease_s:
            raise ValueError("the sequencer's interval must be shorter than its lease")
        self.instance = instance or f"ledger-{uuid.uuid4().hex[:12]}"
        self.lease_s, self.interval_s, self.timeout_s = lease_s, interval_s, timeout_s
        self._ledger, self._store, self._clock, self._max_batch = ledger, store, clock, max_batch
        self._pending = store.head_ref.collection("pending")
        self._lease: Lease | None = None  # this instance's, while it holds it
        self._seen: Lease | None = None
        self._queued: dict[str, tuple[Any, float]] = {}  # pending doc id -> (its update time, deadline)
        self.takeovers = 0
        self.integrated = 0  # others' drafts this instance integrated as holder

    @property
    def holding(self) -> bool:
        """Whether this instance holds the lease, with one interval to spare (so a batch started
        now commits before the lease could be taken over)."""
        lease = self._lease
        return lease is not None and self._clock() + self.interval_s < lease.expires

    @property
    def lease(self) -> Lease | None:
        """The lease as this instance last saw it (any holder's)."""
        return self._seen

    @property
    def queued(self) -> int:
        """This instance's pending documents not answered yet."""
        return len(self._queued)

    # -- the lease ------------------------------------------------------------------------------

    def tick(self) -> None:
        """Take the lease if it is free or expired, renew it when half of it is gone, or note
        that another instance holds it. A holder with more than half its lease left reads
        nothing: its batches renew the lease, and a batch would find it taken over."""
        if self._lease is not None and self._lease.expires - self._clock() > self.lease_s / 2:
            return
        snap = self._store.call("read the sequencer lease", self._store.head_ref.get)
        lease, now = Lease.of(snap), self._clock()
        self._seen = lease
        if lease is None:
            term = 1
        elif lease.holder != self.instance:
            if now < lease.expires:
                self._lease = None
                return
            term = lease.term + 1  # a takeover: its holder died or hung
        elif now < lease.expires and lease.expires - now > self.lease_s / 2:
            self._lease = lease
            return
        else:
            term = lease.term
        mine = lease is not None and lease.holder == self.instance
        fresh = Lease(self.instance, now + self.lease_s, term)
        write = {_LEASE_FIELD: fresh.to_json()}
        try:
            if snap.exists:
                option = self._store.client.write_option(last_update_time=snap.update_time)
                self._store.call("take the sequencer lease",
                                 lambda: self._store.head_ref.update(write, option=option))
            else:
                self._store.call("take the sequencer lease", lambda: self._store.head_ref.create({"size": 0, **write}))
        except ConflictError:
            self._lease = None  # another instance took it, or a batch renewed it: seen at the next tick
            return
        if not mine:
            if lease is not None:  # someone held it: a takeover (the first lease of a ledger is not one)
                self.takeovers += 1
            logs.event(_log, "ledger.sequencer_taken", instance=self.instance, term=term,
                       previous=lease.holder if lease is not None else None)
        self._lease = self._seen = fresh

    def release(self) -> None:
        """Give the lease back (stop, rollout) so another instance takes it at its next tick."""
        if self._lease is None:
            return
        self._lease = None
        snap = self._store.call("read the sequencer lease", self._store.head_ref.get)
        lease = Lease.of(snap)
        if lease is None or lease.holder != self.instance:
            return
        option = self._store.client.write_option(last_update_time=snap.update_time)
        try:
            self._store.call("release the sequencer lease", lambda: self._store.head_ref.update(
                {_LEASE_FIELD: Lease(self.instance, 0.0, lease.term).to_json()}, option=option))
        except ConflictError:
            pass  # taken over or renewed by a batch meanwhile: nothing of ours to give back

    # -- integration (the holder) ---------------------------------------------------------------

    def integrate(self, drafts: Sequence[ReceiptDraft]) -> list[Outcome]:
        """As holder: seal and store ``drafts`` now, fenced by the lease (NotSequencer if lost)."""
        return self._integrate(list(drafts), [])

    def integrate_pending(self) -> int:
        """As holder: integrate what other instances queued, oldest first, up to one atomic
        commit; returns how many drafts were answered (refusals included)."""
        if not self.holding:
            return 0
        from google.cloud.firestore import FieldFilter  # a Firestore store has loaded it already

        query = self._pending.where(filter=FieldFilter("state", "==", PENDING)).limit(_SCAN)
        docs = self._store.call("read pending entries", lambda: list(query.stream()))
        entries = sorted((_entry(doc) for doc in docs), key=lambda entry: entry.created)
        chosen: list[Entry] = []
        drafts: list[ReceiptDraft] = []
        for entry in entries:
            total = len(drafts) + len(entry.drafts)
            if drafts and (total > self._max_batch
                           or _WRITES_PER_DRAFT * total + len(chosen) + 1 + _FIXED_WRITES > _MAX_WRITES):
                break
            chosen.append(entry)
            drafts.extend(entry.drafts)
        if not chosen:
            return 0
        try:
            self._integrate(drafts, chosen)
        except _EntryChanged:
            return 0  # withdrawn by its writer meanwhile: read them again at the next tick
        self.integrated += len(drafts)
        return len(drafts)

    def _integrate(self, drafts: list[ReceiptDraft], entries: list[Entry]) -> list[Outcome]:
        if not self.holding or self._lease is None:
            raise NotSequencer(f"instance {self.instance} does not hold the sequencer lease")
        fence = _Fence(self, self._lease, entries)
        if not drafts:  # every entry unreadable: answer them, nothing to seal
            fence.answer_only()
            return []
        try:
            outcomes = self._ledger.integrate(drafts, rider=fence)
        except NotSequencer:
            self._lease = None
            raise
        self._lease = fence.renewed
        return outcomes

    # -- queueing (the others) ------------------------------------------------------------------

    def enqueue(self, drafts: Sequence[ReceiptDraft]) -> str:
        """Write ``drafts`` to a pending document of this instance's; returns its id."""
        ref = self._pending.document()
        now = self._clock()
        doc = {"instance": self.instance, "created": now, "state": PENDING,
               "drafts": [draft_to_json(draft) for draft in drafts]}
        result = self._store.call("queue drafts", lambda: ref.create(doc))
        self._queued[ref.id] = (result.update_time, now + self.timeout_s)
        return ref.id

    def collect(self) -> dict[str, list[Outcome] | LedgerError]:
        """Answers to this instance's pending documents: each answered one's outcomes (the
        document is deleted), and ``ledger_busy`` for each withdrawn past its deadline."""
        if not self._queued:
            return {}
        refs = [self._pending.document(entry_id) for entry_id in self._queued]
        snaps = self._store.call("read answers", lambda: list(self._store.client.get_all(refs)))
        answers: dict[str, list[Outcome] | LedgerError] = {}
        now = self._clock()
        for snap in snaps:
            update_time, deadline = self._queued[snap.id]
            if snap.exists and snap.get("state") == DONE:
                answers[snap.id] = self._answered(snap)
            elif not snap.exists:
                answers[snap.id] = LedgerBusy(f"pending entry {snap.id} of ledger {self._store.name} vanished "
                                              "before it was answered; nothing was stored from it")
            elif now >= deadline:
                answers[snap.id] = self._withdraw(snap.reference, update_time)
        for entry_id in answers:
            self._queued.pop(entry_id, None)
        return answers

    def withdraw_all(self) -> dict[str, list[Outcome] | LedgerError]:
        """On the way out: withdraw every unanswered pending document (answers that came win)."""
        for entry_id, (update_time, _) in list(self._queued.items()):
            self._queued[entry_id] = (update_time, 0.0)
        return self.collect()

    def _withdraw(self, ref: firestore.DocumentReference, update_time: Any) -> list[Outcome] | LedgerError:
        option = self._store.client.write_option(last_update_time=update_time)
        try:
            self._store.call("withdraw drafts", lambda: ref.delete(option=option))
        except ConflictError:  # answered meanwhile: the answer stands
            snap = self._store.call("read answers", ref.get)
            return self._answered(snap)
        return LedgerBusy(f"the sequencer of ledger {self._store.name} did not answer within {self.timeout_s:g} s; "
                          "nothing was stored, retry", detail={"timeout_s": self.timeout_s})

    def _answered(self, snap: Any) -> list[Outcome] | LedgerError:
        where = f"Firestore document {snap.reference.path}"
        outcomes = snap.get("outcomes") if "outcomes" in (snap.to_dict() or {}) else None
        self._store.call("delete answered drafts", snap.reference.delete)
        drafts = snap.get("drafts") if "drafts" in (snap.to_dict() or {}) else None
        if not isinstance(outcomes, list) or not outcomes:
            return DraftError(f"{where}: answered without outcomes")
        answer = [outcome_from_json(value, where) for value in outcomes]
        if not isinstance(drafts, list) or len(answer) != len(drafts):  # the entry was refused as a whole
            return next((outcome for outcome in answer if isinstance(outcome, DraftError)),
                        DraftError(f"{where}: {len(answer)} outcomes for {len(drafts or ())} drafts"))
        return answer


class _EntryChanged(LedgerError):
    """A pending entry was withdrawn (or answered) after the holder read it: read them again."""


class _Fence:
    """The rider of one integration: reads the pending documents with the head, refuses a lost
    lease or a changed entry, renews the lease in the head's write and answers each entry."""

    def __init__(self, sequencer: Sequencer, lease: Lease, entries: list[Entry]) -> None:
        self._sequencer, self._lease, self._entries = sequencer, lease, entries
        self.renewed = lease

    def refs(self) -> list[firestore.DocumentReference]:
        return [entry.ref for entry in self._entries]

    def check(self, read: Mapping[str, Any], head: Any) -> None:
        stored = Lease.of(head)
        if stored != self._lease or not self._sequencer.holding:
            raise NotSequencer(f"instance {self._sequencer.instance} lost the sequencer lease "
                               f"(now {stored.holder if stored else 'nobody'}'s)")
        for entry in self._entries:
            snap = read[entry.ref.path]
            if not snap.exists or snap.update_time != entry.update_time:
                raise _EntryChanged(f"pending entry {entry.ref.id} changed while it was integrated")
        now = self._sequencer._clock()
        self.renewed = Lease(self._lease.holder, now + self._sequencer.lease_s, self._lease.term)

    def head_fields(self) -> dict[str, Any]:
        return {_LEASE_FIELD: self.renewed.to_json()}

    def add(self, writes: Any, read: Mapping[str, Any], batch: SealedBatch) -> None:
        receipts = iter(batch.receipts)
        offset = 0
        for entry in self._entries:
            outcomes: list[Outcome] = []
            for _ in entry.drafts:
                refused = batch.refused.get(offset)
                outcomes.append(next(receipts) if refused is None else refused)
                offset += 1
            self._answer(writes, entry, outcomes)

    def answer_only(self) -> None:
        """Answer entries that hold no readable draft (their refusal), without a batch."""
        writes = self._sequencer._store.client.batch()
        for entry in self._entries:
            self._answer(writes, entry, [])
        self._sequencer._store.call("answer pending entries", writes.commit)

    def _answer(self, writes: Any, entry: Entry, outcomes: list[Outcome]) -> None:
        """Rewrite ``entry`` as answered, if it is still as read (else the whole commit fails)."""
        answer = [entry.error] if entry.error is not None else outcomes
        writes.update(entry.ref, {"state": DONE, "outcomes": [outcome_to_json(outcome) for outcome in answer]},
                      option=self._sequencer._store.client.write_option(last_update_time=entry.update_time))


def _entry(doc: Any) -> Entry:
    """A pending document's drafts; one that does not hold drafts (a hand edit) is answered with
    the refusal naming it, never integrated and never a crash."""
    data = doc.to_dict() or {}
    created = data.get("created")
    created = float(created) if isinstance(created, (int, float)) and not isinstance(created, bool) else 0.0
    try:
        values = data.get("drafts")
        if not isinstance(values, list) or not values:
            raise DraftError("no list of drafts")
        drafts = tuple(draft_from_json(value) for value in values)
    except DraftError as exc:
        error = DraftError(f"Firestore document {doc.reference.path}: not a pending entry ({exc.message}); "
                           "nothing was stored from it")
        return Entry(doc.reference, doc.update_time, created, (), error)
    return Entry(doc.reference, doc.update_time, created, drafts)



SEQUENCING = ("leased", "optimistic")


def open_sequencer(settings: Mapping[str, Any], store: Any, ledger: Ledger, max_batch: int) -> Sequencer | None:
    """The sequencer a ``[ledger]`` table asks for: on a Firestore store (``store = "firestore"``,
    the table :func:`~tai_autonomics.ledger.configured.open_store` opened ``store`` from), leased unless
    ``sequencing = "optimistic"`` (every instance appends itself, racing for the head); None on
    SQLite (one daemon per data directory: it is the sequencer). ``sequencer_lease_s`` and
    ``sequencer_interval_s`` tune it; a bad value is refused naming the setting."""
    mode = settings.get("sequencing", "leased")
    if mode not in SEQUENCING:
        raise LedgerError(f"[ledger] sequencing = {mode!r}: expected one of {', '.join(map(repr, SEQUENCING))}")
    if settings.get("store", "sqlite") != "firestore" or mode == "optimistic":
        return None
    timing = {}
    for name, default in (("sequencer_lease_s", DEFAULT_LEASE_S), ("sequencer_interval_s", DEFAULT_INTERVAL_S)):
        value = settings.get(name, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 60:
            raise LedgerError(f"[ledger] {name} = {value!r}: expected seconds in (0, 60]")
        timing[name] = float(value)
    if timing["sequencer_interval_s"] >= timing["sequencer_lease_s"]:
        raise LedgerError("[ledger] sequencer_interval_s must be shorter than sequencer_lease_s")
    return Sequencer(ledger, store, max_batch=max_batch, lease_s=timing["sequencer_lease_s"],
                     interval_s=timing["sequencer_interval_s"], timeout_s=store.busy_timeout_s)
