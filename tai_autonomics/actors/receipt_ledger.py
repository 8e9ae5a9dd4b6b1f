"""ReceiptLedger: the single sequencer of the receipt ledger; every receipt is appended through it.

It owns one :class:`~tai_autonomics.ledger.Ledger`, opened in ``init`` on the store in the data
directory, so a restarted incarnation takes its tree (the right edge of its stored tiles) from what is durable:
nothing acknowledged is lost, and nothing unacknowledged is half-written (one transaction per
batch).

Group commit. An ``append`` is not committed on its own: it joins the pending batch, and the
handler returns without replying. The batch is committed in one ``Ledger.append_batch`` (one
fsync) when a timer fires, or at once when it is full (``max_batch``); only then is each caller
answered with its own receipt. The timer waits ``batch_delay_s`` (2 ms) while requests stream
in (arrive less than that apart: :meth:`~tai_autonomics.runtime.Server.requests_streaming`),
else nothing, so a lone caller, or one request's intent and outcome, does not wait. Why wait at
all: on multiprocTCPBase a due timer ends thespian's receive loop before it
reads another socket, so a zero-delay timer committed almost every append alone (measured:
1.0 receipts per batch with 200 appends in flight; 2 ms gives 3-4, and then one message per
receipt, not the commit, bounds the rate). ``append_many`` puts many drafts in one message for
callers that have them. A draft the ledger refuses while sealing is isolated: that batch is
committed draft by draft, so only its own caller is refused. An incarnation on its way out (stop,
restart, crash) first commits and answers what is pending; a call still queued behind the exit
is refused with ``actor_restarting`` and never stored.

Checkpoints (docs/specification.md §4). A commit signs its receipts, not a checkpoint. After a
commit, when no checkpoint timer is armed, one is armed for ``checkpoint_interval`` (``[ledger]
checkpoint_interval``, 0.25 s); when it fires, the latest tree is signed and stored. So while
appends arrive, a checkpoint is signed at most once per interval, and a lone append signs once.
A read that needs a tree no checkpoint covers yet (``proof``, ``checkpoint``, ``tile``,
``entries``, ``consistency``) signs one first, so a receipt just acknowledged is proved at once.
An incarnation that opens on a tree ahead of its latest checkpoint (the previous one was killed
in between) arms the timer at once; one on its way out signs before it goes.

Many instances on one Firestore ledger (:class:`~tai_autonomics.ledger.Sequencer`): one instance
holds the sequencer lease and commits its batches at once, as above; every other instance
writes each batch to a pending document of its own, which the holder integrates at its next beat
(``sequencer_interval_s``, 0.25 s) and answers draft by draft; the writer answers its callers at
its own next beat, or with ``ledger_busy`` when no answer came within the store's busy timeout
(4 s; the entry is then withdrawn, never stored later). Eval drafts, which only this process's
session may MAC, and everything on the way out (queued entries are withdrawn first) are
appended by the instance itself, racing for the head as every append did before the lease
(``[ledger] sequencing = "optimistic"`` keeps that design for everything). On SQLite there is
one daemon per data directory and no lease.

Calls (payloads and replies are JSON-like; refusals are :class:`~tai_autonomics.errors.TaiError`
codes from :mod:`tai_autonomics.ledger.errors`, e.g. ``ledger_bad_draft``, ``ledger_not_found``,
``ledger_proof_invalid``, ``ledger_store_error``, ``ledger_unavailable`` (the disk refuses
writes: nothing of the batch was stored, and ProdMode is told once per outage),
``ledger_verify_failed``, and
``ledger_bad_request`` for a malformed read request):

* ``append`` ``{kind, mode, payload, chain?, operation_id?, effect?}`` → the stored receipt
  object (docs/receipts.md, ``leaf_index`` included), replied once it is durable. ``effect`` is what the
  receipt does to shared state, decided in the append's transaction
  (:mod:`tai_autonomics.ledger.operations`): ``{"open": {scope, key, fingerprint, reserve?:
  {limit_count, limit_cost}}}`` on an intent (claims the key, reserves coverage), ``{"close":
  {status}}`` on an outcome. Refusals: ``coverage_limit_exceeded`` (``detail`` has the numbers),
  ``operation_exists`` and ``operation_not_open`` (``detail.operation``: the stored record).
* ``append_many`` ``{drafts: [draft, ...]}`` (at most 1000) → one outcome per draft, in order:
  ``{"receipt": {...}}`` or ``{"error": {code, message}}`` (a bad draft refuses only itself),
  replied once all are durable.
* ``receipt`` ``{id}`` → the receipt object.
* ``receipts`` ``{chain, after?=0, limit?=100}`` → the chain's receipts with ``seq > after``.
* ``operation`` ``{operation_id}`` or ``{scope, key}`` → ``{"operation": record, "receipts":
  [intent, outcome?]}``; ``ledger_not_found``. Any instance's operations: the store holds them.
* ``open_operations`` ``{scope, limit?=1000}`` → records of operations with no outcome yet, oldest first.
* ``usage`` ``{chain?}`` → ``[{chain, period, sku, count, cost}]``, the stored coverage counters.
* ``price`` ``{chain, customer_id}`` → ``{"value": str | None}``: the customer's last contractual
  pricing value (the stored index, :mod:`~tai_autonomics.ledger.indexes`).
* ``latest`` ``{limit?=10}`` (1..1000) → the last ``limit`` receipts of the ledger, across
  chains, in leaf order (what the remote shell's ``receipts [N]`` shows).
* ``proof`` ``{id, tree_size?}`` → ``{leaf_index, tree_size, hashes}`` (RFC 9162 inclusion
  proof; default size: the latest checkpoint's).
* ``checkpoint`` → ``{note, size, root}``: the signed note (C2SP checkpoint) and its size and
  base64 root.
* ``tile`` ``{level, index, width}`` → ``{"data": base64}``: the first ``width`` hashes of tree
  tile ``level/index`` (C2SP ``tlog-tiles``) in the latest checkpoint's tree; ``ledger_not_found``
  beyond it. ``entries`` ``{index, width}`` → ``{"data": base64}``: that many receipts of entry
  bundle ``index``.
* ``consistency`` ``{from, to?}`` → ``{from, to, hashes}`` (default ``to``: the latest checkpoint).
* ``verify`` → the report of :func:`~tai_autonomics.ledger.verify_store` over the whole store,
  read through a connection of its own on a worker thread, so appends go on meanwhile; a bad
  store is refused with ``ledger_verify_failed`` naming the first bad receipt.
* ``rotate_epoch`` → the ``ledger.epoch_rotated`` receipt that starts a new eval-session epoch
  (a fresh session secret), after committing what is pending.
* ``status`` → ``{size, origin, key_id, session, epoch, batches, appended, pending, max_batch,
  unsigned, store_retries, sequencer}``; ``batches``/``appended`` count this incarnation's commits,
  ``unsigned`` the leaves no checkpoint covers yet (signed at the next interval or read),
  ``store_retries`` its appends re-sealed because another instance committed first (Firestore);
  ``sequencer`` (null without a lease: SQLite, or ``sequencing = "optimistic"``) is
  ``{instance, holding, holder, term, queued, integrated, takeovers}``: this instance's name in
  the lease, whether it holds it, the holder it last saw and the lease's term, its entries
  waiting for an answer, the drafts it integrated for other instances, and its takeovers.

Arguments: ``args["context"]`` from the daemon — ``data_dir`` (default ``./var``), ``profile``
(default ``dev``) and ``ledger``: ``key_file`` or ``key_env`` (the key PEM, or the environment
variable holding it), ``origin``, ``store``: ``sqlite`` (``DATA_DIR/ledger.sqlite3``) or
``firestore`` (ledger document ``firestore_ledger``, default ``ledger``, in the project named by
the environment variable ``firestore_project_env``, else the client's default project);
with Firestore, ``sequencing`` (``leased``, the default, or ``optimistic``),
``sequencer_lease_s`` (2) and ``sequencer_interval_s`` (0.25); ``checkpoint_interval`` (0.25,
seconds; see above). Only
the dev profile falls back to a key generated in the data directory. From the worker's own
``args``: ``max_batch`` (default 256)
and ``batch_delay_s`` (default 0.002).
The key never leaves :class:`~tai_autonomics.ledger.LedgerKey`: replies, errors and logs carry
its public ``key_id`` only.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from tai_autonomics import logs
from tai_autonomics.actors import status_api
from tai_autonomics.errors import TaiError
from tai_autonomics.ledger import (
    DEFAULT_ORIGIN,
    DraftError,
    Ledger,
    NotFoundError,
    NotSequencer,
    Outcome,
    Receipt,
    ReceiptDraft,
    Sequencer,
    StoreUnavailable,
    open_sequencer,
    verify_store,
)
from tai_autonomics.ledger.canonical import canonical_json
from tai_autonomics.ledger.configured import checkpoint_interval, configured_key, open_store
from tai_autonomics.ledger.errors import LedgerError, LedgerRequestInvalid
from tai_autonomics.ledger.operations import effect_from_json
from tai_autonomics.runtime import NOREPLY, Caller, Server
from tai_autonomics.validation import valid_int, valid_seconds

log = logging.getLogger(__name__)

DEFAULT_MAX_BATCH = 256
DEFAULT_BATCH_DELAY_S = 0.002
MAX_MANY = 1000
_FLUSH = "flush"
_TICK = "sequencer_tick"
_CHECKPOINT = "checkpoint"
_DRAFT_MEMBERS = frozenset({"kind", "mode", "payload", "chain", "operation_id", "effect"})
#: told when the store stops taking writes (disk full, read-only): it holds the daemon read_only


class ReceiptLedger(Server):
    """See the module docstring."""

    def init(self, args: dict[str, Any]) -> None:
        context = args.get("context") or {}
        settings = context.get("ledger") or {}
        data_dir = Path(context.get("data_dir") or "var")
        self._batch_delay = valid_seconds(args.get("batch_delay_s", DEFAULT_BATCH_DELAY_S), "batch_delay_s")
        self._open_reader = lambda: open_store(settings, data_dir, readonly=True)
        self._store = open_store(settings, data_dir)
        max_batch = valid_int(args.get("max_batch", DEFAULT_MAX_BATCH), "max_batch", minimum=1)
        self._max_batch = min(max_batch, self._store.max_batch)
        try:
            self._checkpoint_interval = checkpoint_interval(settings)
            key = configured_key(settings, data_dir, context.get("profile", "dev"))
            self._ledger = Ledger.open(self._store, key, origin=settings.get("origin", DEFAULT_ORIGIN),
                                       max_batch=self._max_batch)
            self._sequencer = open_sequencer(settings, self._store, self._ledger, self._max_batch)
        except BaseException:
            self._store.close()
            raise
        self._pending: list[_Item] = []
        self._queued: dict[str, list[_Item]] = {}  # this instance's pending entries, by id (leased sequencer)
        self._leaving = False
        self._batch_timer_armed = False
        self._checkpoint_armed = False
        self._batches = 0
        self._appended = 0
        self._unavailable = False  # the last commit failed on the disk (StoreUnavailable)
        if self._sequencer is not None:
            self._tick()
        self._arm_checkpoint()  # a tail the previous incarnation appended but did not sign

    def terminate(self, reason: str) -> None:
        """Answer the pending appends before this incarnation goes (the runtime runs this
        before the registry announces it gone, so no caller counts them as lost). With the
        leased sequencer, entries still queued are withdrawn and appended by this instance
        itself, and the lease is given back, so another instance takes it at once."""
        self._leaving = True
        if self._sequencer is not None:
            self._leave_queue(self._sequencer)
        self._answer_pending()
        if self._ledger.unsigned:
            self._sign_checkpoint()
        if self._sequencer is not None:
            try:
                self._sequencer.release()
            except LedgerError as exc:
                logs.event(log, "lease not released", logging.WARNING, event="ledger.lease_release_failed",
                           actor=self.name, code=exc.code, reason=exc.message)
        self._ledger.close()

    def _leave_queue(self, sequencer: Sequencer) -> None:
        """Withdraw this instance's queued entries: answered ones are answered, the others go
        back to the pending drafts (appended directly on the way out)."""
        try:
            answers = sequencer.withdraw_all()
        except LedgerError as exc:
            for items in self._queued.values():
                for request, _, _ in items:
                    request.fail(exc)
            self._queued = {}
            return
        for entry_id, answer in answers.items():
            items = self._queued.pop(entry_id)
            if isinstance(answer, LedgerError) and not isinstance(answer, DraftError):
                self._pending[:0] = items
            else:
                self._answer(items, answer)

    def _answer_pending(self) -> None:
        """Commit every pending draft; if a commit fails, its error answers all that remain."""
        try:
            self._flush_all()
        except Exception as exc:
            for request, _, _ in self._pending:
                request.fail(exc)
            self._pending = []
            log.error("pending appends failed on the way out", exc_info=exc,
                      extra={"fields": {"event": "ledger.pending_failed", "actor": self.name}})

    # -- appends (group commit) ---------------------------------------------------------------

    def call_append(self, payload: Any) -> Any:
        self._enqueue(_Request(self.reply, self.caller, 1, many=False), [(0, _draft(payload))])
        return NOREPLY

    def call_append_many(self, payload: Any) -> Any:
        items = _arg(payload, "drafts", list)
        if len(items) > MAX_MANY:
            raise LedgerRequestInvalid(f"append_many takes at most {MAX_MANY} drafts, got {len(items)}")
        if not items:
            return []
        request = _Request(self.reply, self.caller, len(items), many=True)
        drafts = []
        for index, item in enumerate(items):
            try:
                drafts.append((index, _draft(item)))
            except DraftError as exc:
                request.refuse(index, exc)
        self._enqueue(request, drafts)
        return NOREPLY

    def _enqueue(self, request: _Request, drafts: list[tuple[int, ReceiptDraft]]) -> None:
        self._pending.extend((request, index, draft) for index, draft in drafts)
        while len(self._pending) >= self._max_batch:
            self._flush()
        if self._pending and not self._batch_timer_armed:
            self._batch_timer_armed = True
            self.start_timer(self._batch_delay if self.requests_streaming(self._batch_delay) else 0, _FLUSH)

    def on_timer(self, payload: Any) -> None:
        if payload == _FLUSH:
            self._batch_timer_armed = False
            self._flush()
        elif payload == _TICK:
            self._tick()
        elif payload == _CHECKPOINT:
            self._checkpoint_armed = False
            if self._ledger.unsigned:
                self._sign_checkpoint()

    def _arm_checkpoint(self) -> None:
        """After a commit: sign the latest tree ``checkpoint_interval`` from now, unless that is
        armed already (so at most one checkpoint per interval while appends arrive)."""
        if self._ledger.unsigned and not self._checkpoint_armed and not self._leaving:
            self._checkpoint_armed = True
            self.start_timer(self._checkpoint_interval, _CHECKPOINT)

    def _sign_checkpoint(self) -> None:
        """Sign and store the latest tree's checkpoint. A store error is logged: the receipts are
        durable already, and the next commit (or a read, on demand) signs again."""
        try:
            self._ledger.sign_latest()
        except LedgerError as exc:
            logs.event(log, "checkpoint not stored", logging.WARNING, event="ledger.checkpoint_failed",
                       actor=self.name, code=exc.code, reason=exc.message, unsigned=self._ledger.unsigned)

    def _tick(self) -> None:
        """The leased sequencer's beat: keep or take the lease, integrate the other instances'
        entries (as holder), answer this instance's entries that were answered (or withdrawn at
        their deadline). A store error is logged and tried again at the next beat."""
        sequencer = self._sequencer
        assert sequencer is not None
        try:
            sequencer.tick()
            sequencer.integrate_pending()
            answers = sequencer.collect()
        except LedgerError as exc:
            logs.event(log, "sequencer beat failed", logging.WARNING, event="ledger.sequencer_failed",
                       actor=self.name, code=exc.code, reason=exc.message)
            answers = {}
        for entry_id, answer in answers.items():
            self._answer(self._queued.pop(entry_id), answer)
        self._arm_checkpoint()  # the other instances' drafts it integrated, as holder
        self.start_timer(sequencer.interval_s, _TICK)

    def call_rotate_epoch(self, payload: Any) -> dict[str, Any]:
        self._flush_all()  # drafts that came before the rotation are sealed in the old epoch
        receipt = self._ledger.rotate_epoch()
        self._arm_checkpoint()
        return receipt.to_dict()

    def _flush_all(self) -> None:
        while self._pending:
            self._flush()

    def _flush(self) -> None:
        batch, self._pending = self._pending[:self._max_batch], self._pending[self._max_batch:]
        if batch:
            try:
                self._commit(batch)
            finally:
                self._arm_checkpoint()

    def _commit(self, batch: list[_Item]) -> None:
        """Commit ``batch`` durably, then give each caller its receipt or the error."""
        if self._sequencer is not None:
            self._sequenced(self._sequencer, batch)
            return
        try:
            receipts = self._ledger.append_batch([draft for _, _, draft in batch])
        except Exception as exc:
            if isinstance(exc, DraftError) and len(batch) > 1:
                try:
                    for item in batch:  # isolate the draft the ledger refused: only its caller is refused
                        self._commit([item])
                except Exception as failure:  # a bug: those not committed yet must not wait for a reply
                    for request, _, _ in batch:
                        request.fail(failure)
                    raise
            elif isinstance(exc, DraftError):
                request, index, _ = batch[0]
                request.refuse(index, exc)
            else:
                for request, _, _ in batch:
                    request.fail(exc)
                if not isinstance(exc, TaiError):
                    raise  # a bug: let it crash; the next incarnation reopens the store
                if isinstance(exc, StoreUnavailable):
                    self._tell_unavailable(exc)
                logs.event(log, "append refused", logging.WARNING, event="ledger.append_refused", actor=self.name,
                           code=exc.code, reason=exc.message, receipts=len(batch))
            return
        self._batches += 1
        self._appended += len(receipts)
        self._unavailable = False
        for (request, index, _), receipt in zip(batch, receipts, strict=True):
            request.deliver(index, receipt.to_dict())

    def _sequenced(self, sequencer: Sequencer, batch: list[_Item]) -> None:
        """With the leased sequencer: the holder integrates ``batch`` at once; another instance
        queues it for the holder (answered at a later beat), except its eval drafts, which
        only its own session can seal: it appends those itself (the optimistic path), as it
        does everything on its way out."""
        if sequencer.holding and not self._leaving:
            try:
                self._answer(batch, sequencer.integrate([draft for _, _, draft in batch]))
                return
            except NotSequencer:
                pass  # taken over since the last beat: queue for the new holder
            except Exception as exc:
                self._failed(batch, exc)
                return
        direct: list[_Item] = []
        queued: list[_Item] = []
        for item in batch:
            (direct if self._leaving or item[2].mode == "eval" else queued).append(item)
        if direct:
            try:
                self._answer(direct, self._ledger.integrate([draft for _, _, draft in direct]))
            except Exception as exc:
                self._failed(direct, exc)
        if queued:
            try:
                self._queued[sequencer.enqueue([draft for _, _, draft in queued])] = queued
            except Exception as exc:
                self._failed(queued, exc)

    def _answer(self, items: list[_Item], answer: list[Outcome] | LedgerError) -> None:
        """Give each caller of ``items`` its outcome (receipt or refusal), or all of them the error."""
        if not isinstance(answer, list):
            for request, _, _ in items:
                request.fail(answer)
            return
        self._batches += 1
        for (request, index, _), outcome in zip(items, answer, strict=True):
            if isinstance(outcome, DraftError):
                request.refuse(index, outcome)
            else:
                self._appended += 1
                request.deliver(index, outcome.to_dict())

    def _failed(self, items: list[_Item], exc: Exception) -> None:
        """A commit failed for another reason than a draft: every caller gets the error."""
        for request, _, _ in items:
            request.fail(exc)
        if not isinstance(exc, TaiError):
            raise exc  # a bug: let it crash; the next incarnation reopens the store
        logs.event(log, "append refused", logging.WARNING, event="ledger.append_refused", actor=self.name,
                   code=exc.code, reason=exc.message, receipts=len(items))

    def _tell_unavailable(self, exc: StoreUnavailable) -> None:
        """Tell ProdMode, once per outage, that the store refuses writes: it moves ``prod`` to
        ``read_only`` and finds out itself, by recording that change, when the disk allows again."""
        if self._unavailable:
            return
        self._unavailable = True
        status_api.ledger_unavailable(self, exc.detail.get("reason", exc.code), then=self._told)

    def _told(self, _value: Any, error: TaiError | None) -> None:
        if error is not None:  # no ProdMode in this tree, or it is restarting: the next outage tells it
            logs.event(log, "ledger outage not reported", logging.WARNING, event="ledger.unavailable_unreported",
                       actor=self.name, code=error.code)

    # -- reads ----------------------------------------------------------------------------------

    def call_receipt(self, payload: Any) -> dict[str, Any]:
        return self._ledger.receipt(_arg(payload, "id", str)).to_dict()

    def call_receipts(self, payload: Any) -> list[dict[str, Any]]:
        receipts = self._ledger.receipts(_arg(payload, "chain", str), _arg(payload, "after", int, 0),
                                         _arg(payload, "limit", int, 100))
        return [receipt.to_dict() for receipt in receipts]

    def call_operation(self, payload: Any) -> dict[str, Any]:
        if isinstance(payload, dict) and "operation_id" in payload:
            record = self._ledger.operation(_arg(payload, "operation_id", str))
        else:
            record = self._ledger.claim(_arg(payload, "scope", str), _arg(payload, "key", str))
        if record is None:
            raise NotFoundError(f"no operation {payload.get('operation_id') or payload.get('key')!r}",
                                detail={k: v for k, v in payload.items() if k in ("operation_id", "scope", "key")})
        ids = [record.intent_id] + ([record.outcome_id] if record.outcome_id else [])
        return {"operation": record.to_json(), "receipts": [self._ledger.receipt(i).to_dict() for i in ids]}

    def call_open_operations(self, payload: Any) -> list[dict[str, Any]]:
        limit = _arg(payload, "limit", int, 1000)
        if not 1 <= limit <= 1000:
            raise LedgerRequestInvalid("'limit' must be 1..1000")
        return [record.to_json() for record in self._ledger.open_operations(_arg(payload, "scope", str), limit)]

    def call_usage(self, payload: Any) -> list[dict[str, Any]]:
        counters = self._ledger.usage(_arg(payload or {}, "chain", str, None))
        return [{**key._asdict(), **usage.to_json()} for key, usage in counters.items()]

    def call_price(self, payload: Any) -> dict[str, Any]:
        return {"value": self._ledger.price(_arg(payload, "chain", str), _arg(payload, "customer_id", str))}

    def call_latest(self, payload: Any) -> list[dict[str, Any]]:
        limit = _arg(payload or {}, "limit", int, 10)
        if not 1 <= limit <= 1000:
            raise LedgerRequestInvalid("'limit' must be 1..1000")
        size = self._ledger.size
        return [receipt.to_dict() for receipt in self._ledger.iter_receipts(max(0, size - limit), size)]

    def call_proof(self, payload: Any) -> dict[str, Any]:
        proof = self._ledger.inclusion_proof(_arg(payload, "id", str), _arg(payload, "tree_size", int, None))
        return proof.to_json()

    def call_checkpoint(self, payload: Any) -> dict[str, Any]:
        checkpoint = self._ledger.checkpoint()
        return {"note": checkpoint.note, "size": checkpoint.size, "root": base64.b64encode(checkpoint.root).decode()}

    def call_tile(self, payload: Any) -> dict[str, Any]:
        level, index, width = (_arg(payload, name, int) for name in ("level", "index", "width"))
        return {"data": base64.b64encode(self._ledger.tile(level, index, width)).decode()}

    def call_entries(self, payload: Any) -> dict[str, Any]:
        bundle = self._ledger.entry_bundle(_arg(payload, "index", int), _arg(payload, "width", int))
        return {"data": base64.b64encode(bundle).decode()}

    def call_consistency(self, payload: Any) -> dict[str, Any]:
        proof = self._ledger.consistency_proof(_arg(payload, "from", int), _arg(payload, "to", int, None))
        return proof.to_json()

    def call_verify(self, payload: Any) -> Any:
        """On a worker thread with its own reader of the store: a verify of a large ledger takes
        seconds to minutes, and appends go on meanwhile (it checks up to what is committed).
        Advisory receipts of this incarnation's eval session are MAC-checked too: only this process
        holds the session's secrets (docs/specification.md §4), so only it can
        (``session_macs_checked``); other sessions' advisory receipts are checked for form only."""
        caller, open_reader = self.caller, self._open_reader
        public, origin, session = self._ledger.public_key, self._ledger.origin, _SessionMacs(self._ledger)

        def verify() -> dict[str, Any]:
            store = open_reader()
            try:
                return verify_store(store, public, origin=origin, session=session).to_json()
            finally:
                store.close()

        self.run_blocking(verify, then=lambda report, error: self.reply(caller, report, error=error))
        return NOREPLY

    def call_status(self, payload: Any) -> dict[str, Any]:
        ledger = self._ledger
        return {"size": ledger.size, "origin": ledger.origin, "key_id": ledger.public_key.key_id,
                "session": ledger.session_id, "epoch": ledger.epoch, "batches": self._batches,
                "appended": self._appended, "pending": len(self._pending), "max_batch": self._max_batch,
                "unsigned": ledger.unsigned, "store_retries": getattr(self._store, "conflicts", 0),
                "sequencer": self._sequencer_status()}

    def _sequencer_status(self) -> dict[str, Any] | None:
        sequencer = self._sequencer
        if sequencer is None:
            return None
        lease = sequencer.lease
        return {"instance": sequencer.instance, "holding": sequencer.holding,
                "holder": lease.holder if lease else None, "term": lease.term if lease else None,
                "queued": sequencer.queued, "integrated": sequencer.integrated, "takeovers": sequencer.takeovers}

    def inspect_state(self) -> dict[str, Any]:
        return self.call_status(None)


class _Request:
    """One ``append`` or ``append_many`` call: answered once the outcome of each of its drafts is
    known (``append``: the receipt or the refusal; ``append_many``: the list of outcomes), or at
    once with the error when a commit fails for another reason than a bad draft."""

    __slots__ = ("reply", "caller", "results", "left", "many", "answered")

    def __init__(self, reply: Callable[..., None], caller: Caller, count: int, *, many: bool) -> None:
        self.reply, self.caller, self.many = reply, caller, many
        self.results: list[dict[str, Any] | None] = [None] * count
        self.left = count
        self.answered = False

    def deliver(self, index: int, receipt: dict[str, Any]) -> None:
        self._settle(index, {"receipt": receipt}, None)

    def refuse(self, index: int, exc: DraftError) -> None:
        self._settle(index, {"error": {"code": exc.code, "message": exc.message}}, exc)

    def fail(self, exc: Exception) -> None:
        if not self.answered:
            self.answered = True
            self.reply(self.caller, error=exc)

    def _settle(self, index: int, outcome: dict[str, Any], exc: DraftError | None) -> None:
        self.results[index] = outcome
        self.left -= 1
        if self.answered or self.left:
            return
        self.answered = True
        if self.many:
            self.reply(self.caller, self.results)
        elif exc is None:
            self.reply(self.caller, outcome["receipt"])
        else:
            self.reply(self.caller, error=exc)


_Item = tuple[_Request, int, ReceiptDraft]  # one draft of a request, and its place in it


def _draft(payload: Any) -> ReceiptDraft:
    """The draft an ``append`` payload describes (DraftError, refused to its caller, if it is bad)."""
    if not isinstance(payload, dict):
        raise DraftError("an append takes a JSON object {kind, mode, payload, chain?, operation_id?}")
    unknown = sorted(set(payload) - _DRAFT_MEMBERS)
    if unknown:
        raise DraftError(f"unknown draft member(s) {', '.join(map(repr, unknown))}")
    missing = [name for name in ("kind", "mode", "payload") if name not in payload]
    if missing:
        raise DraftError(f"a draft needs {', '.join(missing)}")
    return ReceiptDraft(payload["kind"], payload["mode"], payload["payload"], chain=payload.get("chain"),
                        operation_id=payload.get("operation_id"), effect=effect_from_json(payload.get("effect")))


_MISSING = object()


def _arg(payload: Any, name: str, kind: type, default: Any = _MISSING) -> Any:
    """Member ``name`` of a request object, of type ``kind`` (or ``default`` when absent)."""
    if not isinstance(payload, dict):
        raise LedgerRequestInvalid(f"the request must be a JSON object with {name!r}")
    value = payload.get(name, default)
    if value is _MISSING:
        raise LedgerRequestInvalid(f"the request needs {name!r}")
    if value is not default and (not isinstance(value, kind) or isinstance(value, bool)):
        raise LedgerRequestInvalid(f"{name!r} must be a {kind.__name__}")
    return value


class _SessionMacs:
    """This incarnation's eval session as :func:`verify_store` checks it, through the Ledger's public
    ``check_session_mac``, so the secrets stay inside the Ledger."""

    def __init__(self, ledger: Ledger) -> None:
        self.id = ledger.session_id
        self._ledger = ledger

    def check(self, receipt: Mapping[str, Any]) -> bool:
        return self._ledger.check_session_mac(Receipt.from_data(receipt["leaf_index"], canonical_json(dict(receipt))))
