"""What Acquisition and Publisher share: an insured operation from request to outcome receipt.

One operation runs as: validate (refused at once, nothing recorded) → the guard, run here on the
authority ProdMode pushes on every change (:mod:`tai_autonomics.operations.authority`: the
mode, the certificate re-checked against the clock, the policy's SKUs; no round trip) →
``<kind>.intent`` receipt (durable before anything goes out) → the outside party, one HTTP call
per :class:`Step`, each with up to ``attempts`` attempts on transient errors (each call runs on
a worker thread and the waits are timers, so the actor keeps answering) → ``<kind>.completed`` or
``<kind>.failed`` with a
root-cause record → every caller waiting on it is answered.

An outcome receipt the ledger does not take (it crashed or is restarting, did not answer in
time, its disk refused: :data:`LEDGER_TRANSIENT`) is offered again after a backoff, its callers
waiting while the operation's deadline lasts (then answered with the ledger's error; a repeat
joins it). The actor does not crash on it: a crash would answer every other operation in flight
``actor_crashed`` (issue 14). Only a refusal that asking again cannot change (a bad draft: a bug)
still crashes it, OTP-style; the next incarnation takes the open operation over from its intent.

Idempotency: an operation has a key (the deploy's ``Idempotency-Key``, the publish's
``work_id``). A request with a known key gets the first operation's result (waiting for it if it
is still running); the same key with a different request is refused. At start the actor rebuilds
its operations from the ledger's receipts on the policy chain (the intent payload carries the key
and the request), so this holds across restarts. An operation whose intent is recorded but whose
outcome is not (the actor died in between) is resumed: at once when the intent holds all the
request (deploy), else on the request's repeat (publish). Outside calls carry an
``Idempotency-Key`` derived from the operation id, so a resumed call is not done twice.

In ``eval`` mode ProdMode refuses writes; the refused request is then recorded as an advisory
``refusal`` receipt before the refusal is answered. Other guard refusals (read_only, SKU, coverage,
certificate pre-flight) are answered as they are; ProdMode records what it must (a certificate
this guard finds expired is reported to ProdMode, which records the move to ``read_only``).

Args (all optional): ``timeout_s`` (5, per HTTP call), ``attempts`` (3 per call),
``backoff_base_s`` (1), ``backoff_cap_s`` (8), ``deadline_s`` (25: the outside part of one
operation ends by then, retries included; it is also the duration ProdMode's certificate
pre-flight is asked to cover). With the ledger's appends a call can take longer than the default
call timeout: **callers must use** ``timeout=CALL_TIMEOUT_S``; a longer ``deadline_s`` fails the
start.

Context read (``args["context"]``): ``<party>.url`` (``customer`` for Acquisition,
``marketplace`` for Publisher), else ``sandbox.url`` + ``/<party>/v1``; nothing else.
"""

from __future__ import annotations

import logging
import time
import uuid
from abc import ABCMeta, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from functools import partial
from typing import Any

import httpx

from tai_autonomics import logs
from tai_autonomics.actors import ledger_api, status_api
from tai_autonomics.actors._party_http import PartyHttp
from tai_autonomics.actors.names import PROD_MODE, RECEIPT_LEDGER
from tai_autonomics.actors.operation_api import (
    CALL_TIMEOUT_S,
    Draining,
    NotFound,
    OperationConflict,
    OperationInterrupted,
)
from tai_autonomics.errors import InvalidRequest, TaiError
from tai_autonomics.ledger.errors import LedgerBusy, NotFoundError, StoreCorruptError, StoreUnavailable
from tai_autonomics.ledger.operations import (
    IN_PROGRESS,
    INTERRUPTED,
    OPEN,
    CoverageExceeded,
    OperationExists,
    OperationNotOpen,
)
from tai_autonomics.operations.authority import Authority
from tai_autonomics.operations.mode import ModeRefusal
from tai_autonomics.operations.rca import Answer, shutdown_record
from tai_autonomics.runtime import (
    DEFERRED,
    NOREPLY,
    ActorCrashed,
    ActorRestarting,
    Caller,
    CallTimeout,
    NoSuchActor,
    Server,
)
from tai_autonomics.validation import valid_int, valid_seconds

log = logging.getLogger(__name__)

LEDGER_MARGIN_S = 15.0  # guard + two appends, each answered well within the default call timeout
#: the ledger's refusals of an append that a later offer may not meet: it crashed or was restarting
#: (a new incarnation follows), did not answer in time, its disk refused, other instances won the race
LEDGER_TRANSIENT = (ActorCrashed, ActorRestarting, CallTimeout, NoSuchActor, StoreUnavailable, LedgerBusy)


@dataclass(frozen=True)
class Step:
    """One outside call: POST ``body`` to ``path`` (under the party's base URL)."""

    stage: str
    path: str
    body: dict[str, Any]


@dataclass(frozen=True)
class _Retry:
    operation_id: str


@dataclass(frozen=True)
class _Record:
    """Offer an outcome receipt the ledger did not take to it again."""

    operation_id: str


@dataclass(frozen=True)
class _Interrupt:
    """A drain's budget has run out."""


@dataclass(frozen=True)
class _TakeOver:
    """Look again at an open operation whose runner's lease has run out."""

    operation_id: str


class Phase(Enum):
    """Where an operation of this incarnation is. Its value is the outcome receipt's suffix
    (``<kind>.completed``) for the two outcomes."""

    GUARDING = "guarding"  # a new request: the guard and its intent receipt are on their way, nothing recorded
    WAITING = "waiting"  # intent recorded, nothing runs: taken over from the store, waiting for the request's repeat
    RUNNING = "running"  # intent recorded, the outside calls under way
    RECORDING = "recording"  # the party has answered: the outcome receipt is on its way (again, if refused)
    INTERRUPTING = "interrupting"  # a drain is recording its interruption: the party's late answer is ignored
    COMPLETED = "completed"
    FAILED = "failed"


@dataclass
class Operation:
    operation_id: str
    key: str
    fingerprint: str
    intent_payload: dict[str, Any]
    phase: Phase = Phase.GUARDING
    receipts: list[dict[str, Any]] = field(default_factory=list)
    rca: dict[str, Any] | None = None
    waiters: list[Caller] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)  # the outside calls, once running
    deadline: float = 0.0
    step: int = 0
    attempt: int = 0
    attempts: int = 0
    results: list[Any] = field(default_factory=list)
    chain: str = ""
    plan: Callable[[str], list[Step]] | None = None  # the request's outside calls (None: taken over from the store)
    unrecorded: int = 0  # how many times the ledger has not taken its outcome receipt
    unrecorded_error: TaiError | None = None  # the last of those refusals
    record: Callable[[], None] | None = None  # offers the outcome receipt again (while one is due)

    @property
    def status(self) -> str:
        """As the store writes it: ``in_progress`` until an outcome is recorded."""
        return self.phase.value if self.phase in (Phase.COMPLETED, Phase.FAILED) else IN_PROGRESS

    def view(self) -> dict[str, Any]:
        view: dict[str, Any] = {"operation_id": self.operation_id, "status": self.status,
                                "receipts": list(self.receipts)}
        if self.rca is not None:
            view["rca"] = self.rca
        return view


class OperationActor(Server, metaclass=ABCMeta):
    """Subclasses set :attr:`kind`, :attr:`party`, :attr:`conflict` and implement the hooks."""

    kind = ""  # receipt kinds are <kind>.intent / .completed / .failed
    party = ""  # "customer" or "marketplace": the context key of its base URL
    conflict: type[OperationConflict] = OperationConflict
    coalesce_s = 0.002  # under load, the guards and appends of many requests travel together

    def init(self, args: dict[str, Any]) -> Any:
        self.ops: dict[str, Operation] = {}  # running in this incarnation only: bounded by the work in flight
        self.by_key: dict[str, str] = {}
        self.timeout_s = valid_seconds(args.get("timeout_s", 5.0), "timeout_s", positive=True)
        self.attempts = valid_int(args.get("attempts", 3), "attempts", minimum=1)
        self.backoff_base_s = valid_seconds(args.get("backoff_base_s", 1.0), "backoff_base_s")
        self.backoff_cap_s = valid_seconds(args.get("backoff_cap_s", 8.0), "backoff_cap_s")
        most = CALL_TIMEOUT_S - LEDGER_MARGIN_S  # callers wait CALL_TIMEOUT_S and the ledger needs its margin
        self.deadline_s = valid_seconds(args.get("deadline_s", 25.0), "deadline_s", positive=True, maximum=most)
        context = args.get("context") or {}
        # on a shared store (Firestore) another live instance may be running an open operation
        self.shared_store = (context.get("ledger") or {}).get("store", "sqlite") != "sqlite"
        self.chain: str | None = None
        self.draining = False
        self.drain_callers: list[Caller] = []
        self.interrupted = 0
        self.base_url = party_url(context, self.party)
        self.http = PartyHttp(self.base_url, self.timeout_s)
        self.authority: Authority | None = None
        status_api.authority(self, self.name, then=self._started_mode)
        return DEFERRED

    def terminate(self, reason: str) -> None:
        for op in self.ops.values():
            self._answer(op, error=ActorCrashed(f"{self.name} stopped before {op.operation_id} finished ({reason}); "
                                                "repeat the request to get its result", detail={"actor": self.name}))
        self.http.close()

    # -- start: take over what an earlier incarnation left open ---------------------------------------

    def _started_mode(self, authority: Any, error: TaiError | None) -> None:
        if error is not None:
            self.fail_start(f"cannot ask ProdMode for the policy: {error.message}")
            return
        self.authority = authority
        if authority.chain is None:
            self.confirm_started()  # eval: nothing contractual to take over
        else:
            self.chain = authority.chain
            self.call_actor(RECEIPT_LEDGER, "open_operations", {"scope": self.kind}, then=self._found_open)

    def call_authority_changed(self, authority: Any) -> None:
        """ProdMode's push: guard the next requests with this."""
        if not isinstance(authority, Authority):
            raise InvalidRequest("authority_changed needs an Authority")
        self.authority = authority

    def on_down(self, name: str, incarnation: str) -> None:
        if name == PROD_MODE:  # a new ProdMode incarnation has no subscribers: subscribe again
            status_api.authority(self, self.name, then=self._resubscribed)

    def _resubscribed(self, authority: Any, error: TaiError | None) -> None:
        if error is not None:  # ProdMode not back within the call's wait: it is, or the tree gives up
            raise RuntimeError(f"cannot subscribe to ProdMode again: {error.message}")
        self.authority = authority

    def _found_open(self, records: Any, error: TaiError | None) -> None:
        """Start reading only the operations still open, not the ledger's history: the start
        time and memory of an incarnation do not grow with the operations done."""
        if isinstance(error, StoreCorruptError):
            # a record edited by hand into nonsense: restarting would meet it again (a crash loop);
            # serve new operations, and say which record needs fixing
            logs.event(log, f"open {self.kind} operations cannot be read; none is taken over: "
                            f"{error.message}", logging.ERROR, event="operations_unreadable",
                       actor=self.name, reason=error.message)
            records, error = [], None
        if error is not None:
            self.fail_start(f"cannot read open {self.kind} operations from the ledger: "
                            f"{error.message}")
            return
        self.confirm_started()
        for record in records:
            if record["chain"] == self.chain:
                self._take_over_when_free(record)

    def _lease_left(self, record: dict[str, Any]) -> float:
        """Seconds until an open operation may be taken over: at once on a store of this
        instance alone, or when its runner recorded its interruption; on a shared one, once the
        instance that started it would have finished."""
        if not self.shared_store or record["status"] == INTERRUPTED:
            return 0.0
        started = datetime.fromisoformat(record["started"]).timestamp()
        return started + self.deadline_s + LEDGER_MARGIN_S - time.time()

    def _take_over_when_free(self, record: dict[str, Any]) -> None:
        left = self._lease_left(record)
        if left > 0:
            self.start_timer(left, _TakeOver(record["operation_id"]))
        else:
            self._take_over(record["operation_id"])

    def _take_over(self, operation_id: str, plan: Callable[[str], list[Step]] | None = None,
                   caller: Caller | None = None) -> None:
        """Run an open operation this incarnation did not start (its runner died): with the
        repeat's ``plan``, else as far as its intent allows (:meth:`resume_steps`)."""
        def found(view: Any, error: TaiError | None) -> None:
            if error is not None:
                if caller is not None:
                    self.reply(caller, error=error)
                return
            record, intent = view["operation"], view["receipts"][0]
            if record["status"] not in OPEN or operation_id in self.ops:
                if caller is not None:
                    self._join_or_answer(operation_id, view, caller)
                return
            op = Operation(operation_id, record["key"], record["fingerprint"], intent.get("payload") or {},
                           phase=Phase.WAITING, receipts=[intent], chain=record["chain"])
            self._track(op)
            if caller is not None:
                op.waiters.append(caller)
            steps = plan(operation_id) if plan is not None else self.resume_steps(op.intent_payload, operation_id)
            if steps is not None:
                logs.event(log, f"taking over {operation_id}", event="operation_resumed", actor=self.name,
                           operation_id=operation_id)
                self._run(op, steps)

        self.call_actor(RECEIPT_LEDGER, "operation", {"operation_id": operation_id}, then=found)

    def _join_or_answer(self, operation_id: str, view: dict[str, Any], caller: Caller) -> None:
        """A repeat: join the run if this incarnation has it, else the stored answer (``replayed``
        when it has ended: the gateway says so in a header and counts it apart)."""
        running = self.ops.get(operation_id)
        if running is not None:
            running.waiters.append(caller)
            return
        answer = _stored_view(view)
        if answer["status"] not in OPEN:
            answer["replayed"] = True
        self.reply(caller, answer)

    # -- a request ---------------------------------------------------------------------------------

    def submit(self, key: str | None, fingerprint: str, intent: dict[str, Any],
               plan: Callable[[str], list[Step]]) -> Any:
        """Run (or join) the operation for a validated request; the handler returns this.

        ``intent`` is the intent receipt's payload (with ``sku_id`` and ``cost`` for the
        coverage reservation); ``plan(operation_id)`` gives the outside calls. A key this
        incarnation is running is joined here; one the store knows (any instance's, any
        time) is answered from the store; the store's claim, made with the intent, decides.
        """
        if self.draining:
            raise Draining(f"{self.name} is stopping: send the request again (another instance takes it)",
                           detail={"actor": self.name})
        caller = self.caller
        if key is not None and (known := self.ops.get(self.by_key.get(key, ""))) is not None:
            if known.fingerprint != fingerprint:
                raise self._conflict(key, known.operation_id)
            known.waiters.append(caller)
            if known.phase is Phase.WAITING:  # recorded, never run to the end: this repeat resumes it
                self._run(known, plan(known.operation_id))
            return NOREPLY
        if key is None:
            self._start(None, fingerprint, intent, plan, caller)
        else:
            self.call_actor(RECEIPT_LEDGER, "operation", {"scope": self.kind, "key": key},
                            then=lambda view, error: self._claimed(key, fingerprint, intent, plan, caller, view, error))
        return NOREPLY

    def _claimed(self, key: str, fingerprint: str, intent: dict[str, Any], plan: Callable[[str], list[Step]],
                 caller: Caller, view: Any, error: TaiError | None) -> None:
        if error is None:
            self._existing(view, fingerprint, plan, caller)
        elif isinstance(error, NotFoundError):
            self._start(key, fingerprint, intent, plan, caller)
        else:
            self.reply(caller, error=error)

    def _existing(self, view: dict[str, Any], fingerprint: str, plan: Callable[[str], list[Step]] | None,
                  caller: Caller) -> None:
        """A request whose key the store already holds: the first operation's answer (its result;
        ``in_progress`` while another instance runs it), or a take-over if its runner died (with
        ``plan``, else as far as its intent allows)."""
        record = view["operation"]
        if record["fingerprint"] != fingerprint:
            self.reply(caller, error=self._conflict(record["key"], record["operation_id"]))
        elif record["status"] in OPEN and record["operation_id"] not in self.ops and self._lease_left(record) <= 0:
            self._take_over(record["operation_id"], plan, caller)
        else:
            self._join_or_answer(record["operation_id"], view, caller)

    def _conflict(self, key: str, operation_id: str) -> OperationConflict:
        return self.conflict(f"{key!r} already names another {self.kind} request ({operation_id})",
                             detail={"operation_id": operation_id})

    def _start(self, key: str | None, fingerprint: str, intent: dict[str, Any], plan: Callable[[str], list[Step]],
               caller: Caller) -> None:
        if key is not None and (running := self.ops.get(self.by_key.get(key, ""))) is not None:
            # the same key arrived again while the store was asked
            if running.fingerprint != fingerprint:
                self.reply(caller, error=self._conflict(key, running.operation_id))
            else:
                running.waiters.append(caller)
            return
        op = Operation("op-" + uuid.uuid4().hex, key or "", fingerprint, {**intent, "key": key or "",
                                                                           "fingerprint": fingerprint}, plan=plan)
        op.waiters.append(caller)
        self._track(op)
        now, guard = time.time(), self.authority
        assert guard is not None  # ProdMode's, taken before the start is confirmed (so before any request)
        try:
            authority = guard.guard(intent["sku_id"], self.deadline_s, now)
        except TaiError as refusal:
            if guard.expired(now):
                status_api.certificate_expired(self, then=_ignored)
            self._guarded_op(op, None, refusal)
            return
        self._guarded_op(op, authority, None)

    def _track(self, op: Operation) -> None:
        self.ops[op.operation_id] = op
        if op.key:
            self.by_key[op.key] = op.operation_id

    def _forget(self, op: Operation) -> None:
        self.ops.pop(op.operation_id, None)
        if self.by_key.get(op.key) == op.operation_id:
            del self.by_key[op.key]
        if self.draining and not self.ops:
            self._drained()

    def _guarded_op(self, op: Operation, authority: Any, error: TaiError | None) -> None:
        if error is None and self.draining:  # nothing recorded yet: refuse, as a request arriving now is
            error = Draining(f"{self.name} is stopping: send the request again (another instance takes it)",
                             detail={"actor": self.name})
        if error is not None:
            self._forget(op)
            if isinstance(error, ModeRefusal) and error.detail.get("mode") == "eval":
                self._record_refusal(op, error)
            else:
                self._answer(op, error=error)
            return
        op.chain = authority["chain"]
        # what the intent reserves, and against which limit: the ledger reserves it in the intent's
        # transaction, and an auditor recounts it from the receipt
        op.intent_payload["coverage"] = {"sku_id": op.intent_payload["sku_id"], "cost": op.intent_payload["cost"],
                                         **authority["limit"]}
        effect = {"open": {"scope": self.kind, "key": op.key, "fingerprint": op.fingerprint}}
        plan = op.plan
        assert plan is not None  # a new request's operation carries its plan
        self._append(op, "intent", op.intent_payload, effect, then=lambda: self._run(op, plan(op.operation_id)))

    def _record_refusal(self, op: Operation, refusal: TaiError) -> None:
        draft: ledger_api.Draft = {
            "kind": "refusal", "mode": "eval", "chain": None, "operation_id": op.operation_id,
            "payload": {"operation": self.kind, "code": refusal.code, "reason": refusal.message,
                        "request": op.intent_payload}}
        ledger_api.append(self, draft, then=lambda _receipt, error: self._answer(op, error=error or refusal))

    def _append(self, op: Operation, outcome: str, payload: dict[str, Any], effect: dict[str, Any],
                then: Callable[[], None]) -> None:
        draft: ledger_api.Draft = {"kind": f"{self.kind}.{outcome}", "mode": "prod", "chain": op.chain,
                                   "payload": payload, "operation_id": op.operation_id, "effect": effect}

        def appended(receipt: Any, error: TaiError | None) -> None:
            if error is None:
                op.receipts.append(receipt)
                then()
            elif outcome == "intent":  # nothing went out: the operation never happened
                self._forget(op)
                self._intent_refused(op, error)
            elif outcome == "interrupted":  # stopping anyway: the open operation is taken over later
                self._answer(op, error=error)
                self._forget(op)
            elif isinstance(error, OperationNotOpen):  # recorded by another instance, or by an earlier offer
                self._forget(op)  # of ours that the ledger stored but died before answering
                waiters, op.waiters = op.waiters, []
                for caller in waiters:
                    self.call_actor(RECEIPT_LEDGER, "operation", {"operation_id": op.operation_id},
                                    then=partial(self._reply_stored, caller))
            elif isinstance(error, LEDGER_TRANSIENT):
                self._record_later(op, outcome, error, partial(ledger_api.append, self, draft, appended))
            else:  # a refusal asking again cannot change (a bad draft: a bug): let it crash; the next
                # incarnation takes the open operation over from its intent
                self._answer(op, error=error)
                raise RuntimeError(f"the {self.kind}.{outcome} receipt of {op.operation_id} was not recorded: "
                                   f"{error.message}")

        ledger_api.append(self, draft, then=appended)

    def _record_later(self, op: Operation, outcome: str, error: TaiError, record: Callable[[], None]) -> None:
        """The ledger did not take an outcome receipt (it crashed or was restarting, did not answer
        in time, or its disk refused): the party has answered, so the outcome is kept and offered
        again after a backoff, never a crash (which would end every other operation of this actor
        with ``actor_crashed``). Its callers wait while the operation's time lasts; past its
        deadline they are answered with the ledger's error (a repeat of the request joins the
        operation, still offered). A drain gives it up: the next start takes it over."""
        op.unrecorded, op.unrecorded_error, op.record = op.unrecorded + 1, error, record
        logs.event(log, f"the {self.kind}.{outcome} receipt of {op.operation_id} was not recorded "
                        f"({error.message}); offering it again", logging.WARNING, event="outcome_unrecorded",
                   actor=self.name, operation_id=op.operation_id, times=op.unrecorded, reason=error.message)
        if time.monotonic() >= op.deadline:
            self._answer(op, error=error)
        if self.draining:
            self._give_up_recording(op)
            return
        self.start_timer(self._wait(op.unrecorded), _Record(op.operation_id))

    def _give_up_recording(self, op: Operation) -> None:
        """Stopping with an outcome the ledger has not taken: its callers get the ledger's error and
        the open operation is left to the next start (its outside call is repeated under the same
        ``Idempotency-Key``, so it is not done twice)."""
        self._answer(op, error=op.unrecorded_error)
        self._forget(op)

    def _intent_refused(self, op: Operation, error: TaiError) -> None:
        """The store refused the intent: coverage did not fit (recorded as ``coverage.exceeded``),
        or another instance claimed the key first (answered as that operation)."""
        detail = error.detail
        if isinstance(error, CoverageExceeded):
            draft: ledger_api.Draft = {"kind": "coverage.exceeded", "mode": "prod", "chain": op.chain,
                                       "operation_id": op.operation_id,
                                       "payload": {**{k: v for k, v in detail.items() if k != "exception"},
                                                   "operation_id": op.operation_id}}
            ledger_api.append(self, draft, then=lambda _receipt, failure: self._answer(op, error=failure or error))
        elif isinstance(error, OperationExists) and isinstance(detail.get("operation"), dict):
            waiters, op.waiters = op.waiters, []
            first = detail["operation"]["operation_id"]
            for caller in waiters:
                self.call_actor(RECEIPT_LEDGER, "operation", {"operation_id": first},
                                then=partial(self._found_first, op, caller))
        else:
            self._answer(op, error=error)

    def _reply_stored(self, caller: Caller, view: Any, error: TaiError | None) -> None:
        self.reply(caller, None if error is not None else _stored_view(view), error)

    def _found_first(self, op: Operation, caller: Caller, view: Any, error: TaiError | None) -> None:
        """The operation that claimed ``op``'s key first, for one of ``op``'s callers."""
        if error is not None:
            self.reply(caller, error=error)
        else:
            self._existing(view, op.fingerprint, op.plan, caller)

    # -- the outside party ---------------------------------------------------------------------------

    def _run(self, op: Operation, steps: list[Step]) -> None:
        op.phase, op.steps, op.step, op.attempt, op.results = Phase.RUNNING, steps, 0, 0, []
        op.deadline = time.monotonic() + self.deadline_s
        self._attempt(op)

    def _attempt(self, op: Operation) -> None:
        """The next attempt at the current step, or the outcome once every step is done. The
        HTTP call runs off the actor's thread (:meth:`run_blocking`): a slow party holds up
        only its own operation."""
        if op.step == len(op.steps):
            self._finish(op, Phase.COMPLETED, self.completed_payload(op.results))
            return
        step = op.steps[op.step]
        left = op.deadline - time.monotonic()
        if left <= 0:
            self._answered(op, Answer(failure="timeout"), None)
            return
        op.attempt += 1
        op.attempts += 1
        key, timeout_s = f"{op.operation_id}-{op.step}", min(self.timeout_s, left)

        def answered(result: tuple[Answer, Any] | None, error: BaseException | None) -> None:
            if error is not None:
                raise error  # a bug in the call itself: crash, as it would have inline
            if result is not None and op.phase is Phase.RUNNING:
                self._answered(op, *result)

        self.run_blocking(lambda: self._post(step, key, timeout_s), then=answered)

    def _answered(self, op: Operation, answer: Answer, body: Any) -> None:
        step = op.steps[op.step]
        if answer.ok:
            op.results.append(body)
            op.step, op.attempt = op.step + 1, 0
            self._attempt(op)
            return
        wait = self._backoff(op.attempt, answer)
        retry = answer.transient(self.final_codes()) and op.attempt < self.attempts
        if retry and wait < op.deadline - time.monotonic():
            self.start_timer(wait, _Retry(op.operation_id))
            return
        context = {"stage": step.stage, "url": self.base_url + step.path, "status": answer.status,
                   "error_code": answer.code or None, "attempts": op.attempt}
        self._finish(op, Phase.FAILED, {"rca": self.rca(step.stage, answer, context)})

    def _backoff(self, attempt: int, answer: Answer) -> float:
        wait = self._wait(attempt)
        if answer.retry_after_s is not None:
            wait = max(wait, min(answer.retry_after_s, self.backoff_cap_s))
        return wait

    def _wait(self, attempt: int) -> float:
        """The exponential backoff before attempt ``attempt + 1``."""
        return min(self.backoff_cap_s, self.backoff_base_s * 2 ** (attempt - 1))

    def _post(self, step: Step, idempotency_key: str, timeout_s: float) -> tuple[Answer, Any]:
        try:
            response = self.http.post(step.path, step.body, {"Idempotency-Key": idempotency_key}, timeout_s)
        except httpx.TimeoutException:
            return Answer(failure="timeout"), None
        except httpx.ConnectError:
            return Answer(failure="connect"), None
        except httpx.TransportError:  # reset or closed mid-answer
            return Answer(failure="dropped"), None
        try:
            body = response.json()
        except ValueError:
            body = None
        if 200 <= response.status_code < 300:
            if not isinstance(body, dict):
                return Answer(response.status_code, "invalid_response", "the answer is not a JSON object",
                              failure="dropped"), None
            return Answer(response.status_code), body
        error = body.get("error", {}) if isinstance(body, dict) else {}
        return Answer(response.status_code, str(error.get("code", "")), str(error.get("message", "")),
                      retry_after_s=_seconds(response.headers.get("retry-after"))), None

    def _finish(self, op: Operation, outcome: Phase, payload: dict[str, Any]) -> None:
        payload = {"key": op.key, "attempts": op.attempts, **payload}
        op.phase = Phase.RECORDING

        def recorded() -> None:
            op.phase, op.rca = outcome, payload.get("rca")
            self._forget(op)  # the store answers from now on
            self._answer(op, value=op.view())

        self._append(op, outcome.value, payload, {"close": {"status": outcome.value}}, then=recorded)

    def _answer(self, op: Operation, value: Any = None, error: TaiError | None = None) -> None:
        waiters, op.waiters = op.waiters, []
        for caller in waiters:
            self.reply(caller, value, error)

    # -- draining (SIGTERM, docs/specification.md §11) ---------------------------------------------

    def call_drain(self, payload: Any) -> Any:
        """Refuse new operations; give those running ``budget_s`` to end, then record each one
        still waiting on the outside party as interrupted (``*.interrupted``, RCA ``shutdown``),
        answer its callers ``operation_interrupted``, and answer this call ``{"interrupted": n}``."""
        budget = payload.get("budget_s") if isinstance(payload, dict) else None
        budget = valid_seconds(budget, "budget_s", maximum=60)
        self.draining = True
        self.drain_callers.append(self.caller)
        if not self.ops:
            self._drained()
        else:
            self.start_timer(budget, _Interrupt())
        return NOREPLY

    def _interrupt_running(self) -> None:
        for op in list(self.ops.values()):
            if op.phase is Phase.GUARDING:
                continue  # its intent is on its way: it ends by itself (refused, as the guard answers)
            if op.phase is Phase.WAITING:  # taken over, waiting for its repeat: nothing runs
                self._forget(op)
                continue
            if op.phase is Phase.RECORDING and op.unrecorded:  # the ledger refused its outcome: no waiting on it
                self._give_up_recording(op)
                continue
            if op.phase is not Phase.RUNNING:
                continue  # its outcome receipt is on its way, or an earlier drain is recording its interruption
            op.phase = Phase.INTERRUPTING
            step = op.steps[op.step] if op.step < len(op.steps) else op.steps[-1]
            context = {"stage": step.stage, "url": self.base_url + step.path, "attempts": op.attempts}
            payload = {"key": op.key, "attempts": op.attempts, "rca": shutdown_record(self.party, context)}
            self._append(op, INTERRUPTED, payload, {"close": {"status": INTERRUPTED}},
                         then=partial(self._interrupted, op))
        if not self.ops:
            self._drained()

    def _interrupted(self, op: Operation) -> None:
        self.interrupted += 1
        self._answer(op, error=OperationInterrupted(
            f"{op.operation_id} was interrupted: this instance stopped while the {self.party} had not answered; "
            "repeat the request with the same key to finish it", detail={"operation_id": op.operation_id,
                                                                          "key": op.key}))
        self._forget(op)

    def _drained(self) -> None:
        callers, self.drain_callers = self.drain_callers, []
        for caller in callers:
            self.reply(caller, {"interrupted": self.interrupted})

    # -- reads -----------------------------------------------------------------------------------------

    def lookup(self, operation_id: str | None = None, key: str | None = None) -> Any:
        """An operation as the store holds it (any instance's); answered when the ledger replies."""
        caller = self.caller
        query = {"operation_id": operation_id} if key is None else {"scope": self.kind, "key": key}

        def found(view: Any, error: TaiError | None) -> None:
            if isinstance(error, NotFoundError):
                error = NotFound(f"no {self.kind} operation {operation_id or key!r}",
                                 detail={"operation_id": operation_id} if key is None else {"key": key})
            self.reply(caller, None if error is not None else _stored_view(view), error)

        self.call_actor(RECEIPT_LEDGER, "operation", query, then=found)
        return NOREPLY

    def on_timer(self, payload: Any) -> None:
        if isinstance(payload, _Retry) and payload.operation_id in self.ops \
                and self.ops[payload.operation_id].phase is Phase.RUNNING:
            self._attempt(self.ops[payload.operation_id])
        elif isinstance(payload, _TakeOver) and payload.operation_id not in self.ops and not self.draining:
            self._take_over(payload.operation_id)
        elif isinstance(payload, _Record) and (op := self.ops.get(payload.operation_id)) is not None \
                and op.phase is Phase.RECORDING and op.record is not None:
            record, op.record = op.record, None
            record()
        elif isinstance(payload, _Interrupt):
            self._interrupt_running()

    def call_status(self, _payload: Any) -> dict[str, Any]:
        running = sum(1 for op in self.ops.values() if op.status == IN_PROGRESS)
        unrecorded = sum(1 for op in self.ops.values() if op.unrecorded)  # outcomes being offered again
        return {"actor": self.name, "url": self.base_url, "operations": len(self.ops), "in_progress": running,
                "unrecorded": unrecorded, "call_timeout_s": CALL_TIMEOUT_S, "deadline_s": self.deadline_s}

    def inspect_state(self) -> dict[str, Any]:
        return self.call_status(None)

    # -- the subclass's part ---------------------------------------------------------------------------

    @abstractmethod
    def final_codes(self) -> tuple[str, ...]:
        """The party's error codes that name a root-cause class (never retried)."""

    @abstractmethod
    def rca(self, stage: str, answer: Answer, context: dict[str, Any]) -> dict[str, Any]:
        """The root-cause record of a failed outside call."""

    @abstractmethod
    def completed_payload(self, results: list[Any]) -> dict[str, Any]:
        """The outcome receipt's payload from the outside party's answers."""

    @abstractmethod
    def resume_steps(self, intent: dict[str, Any], operation_id: str) -> list[Step] | None:
        """The steps to finish an operation recorded before a restart, or None to wait for its repeat."""


def _ignored(_reply: Any, _error: TaiError | None) -> None:
    """ProdMode's answer to a report it acts on by itself (its periodic check is the safety net)."""


def _stored_view(view: dict[str, Any]) -> dict[str, Any]:
    """The answer for an operation as the store holds it: the shape a running one answers."""
    record, receipts = view["operation"], view["receipts"]
    answer = {"operation_id": record["operation_id"], "status": record["status"], "receipts": receipts}
    rca = (receipts[1].get("payload") or {}).get("rca") if len(receipts) > 1 else None
    if rca is not None:
        answer["rca"] = rca
    return answer


def party_url(context: dict[str, Any], party: str) -> str:
    """An outside party's base URL: ``context[party]["url"]``, else the sandbox's
    ``context["sandbox"]["url"]`` + ``/<party>/v1``."""
    own = (context.get(party) or {}).get("url")
    if own:
        return str(own).rstrip("/")
    sandbox = (context.get("sandbox") or {}).get("url")
    if sandbox:
        return f"{str(sandbox).rstrip('/')}/{party}/v1"
    raise ValueError(f"no URL for the {party}: set context.{party}.url (or context.sandbox.url)")


def _seconds(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None
