"""What an operation's receipts do to shared state, decided in the append's own transaction.

Several daemon instances share one store (Cloud Run on Firestore), so two promises cannot be
kept in any one process's memory (docs/specification.md §10):

* **coverage**: an intent receipt that reserves coverage is stored only if the reservation fits
  the SKU's limits for the month, counted over every instance; the counter (:class:`Usage`) is
  written in the same transaction as the receipt, so the intent exists if and only if it fitted;
* **idempotency**: an intent claims its key (``Idempotency-Key``, ``work_id``) in that same
  transaction; a second intent with a claimed key is refused with the first operation's record,
  and an outcome receipt closes its operation's record exactly once.

The draft says what it does (:class:`OpenOperation` on an intent, :class:`CloseOperation` on an
outcome); the store reads the counters and records the batch touches inside its transaction,
the ledger decides (:func:`apply_effects`) while it seals, and the store writes the new values
with the receipts. A refused draft aborts its batch with a :class:`~.errors.DraftError`
subclass, so only its caller is refused.

Usage is a pure function of the receipts (:func:`usage_of`): every contractual ``*.intent``
receipt whose payload has a ``coverage`` member (``{sku_id, cost, limit_count, limit_cost}``:
what it reserved, and against which limit) counts one operation and its ``cost`` in the
calendar month (UTC) of its ``time``. Reservation uses the same function on the draft (and the
ledger refuses such an intent unless it opens its operation), so ``ledger verify`` can recount
the stored counters from the receipts and name any that differ, and an auditor sees in each
intent the limit it was checked against. A failed operation keeps its reservation (the plan
counts insured operations attempted); a refused one never made one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, NamedTuple

from tai_autonomics.ledger.errors import DraftError, StoreCorruptError

IN_PROGRESS = "in_progress"
INTERRUPTED = "interrupted"  # still open: its runner stopped (SIGTERM); anyone may take it over at once
OPEN = frozenset({IN_PROGRESS, INTERRUPTED})
OUTCOMES = frozenset({"completed", "failed"})
_MAX_COST = Decimal("1e15")


class UsageKey(NamedTuple):
    """A coverage counter: one SKU of one policy chain in one month (``YYYY-MM``)."""

    chain: str
    period: str
    sku: str


class ClaimKey(NamedTuple):
    """An idempotency claim: ``key`` within ``scope`` (the operation kind, ``deploy``/``publish``)."""

    scope: str
    key: str


@dataclass(frozen=True, slots=True)
class Usage:
    """Operations counted and their summed cost (USD) for one :class:`UsageKey`."""

    count: int = 0
    cost: Decimal = Decimal(0)

    def plus(self, cost: Decimal) -> Usage:
        return Usage(self.count + 1, self.cost + cost)

    def to_json(self) -> dict[str, Any]:
        return {"count": self.count, "cost": str(self.cost)}

    @classmethod
    def from_stored(cls, count: Any, cost: Any, *, where: str) -> Usage:
        """A counter as stored; StoreCorruptError naming ``where`` unless it is one (a hand edit)."""
        try:
            amount = Decimal(cost) if isinstance(cost, str) else None
        except InvalidOperation:
            amount = None
        if (amount is None or not amount.is_finite() or amount < 0 or isinstance(count, bool)
                or not isinstance(count, int) or count < 0):
            raise StoreCorruptError(f"{where}: count {count!r} and cost {cost!r} are not a usage counter")
        return cls(count, amount)


@dataclass(frozen=True, slots=True)
class Limit:
    """The most a SKU's usage may reach in a month (the policy's coverage limit)."""

    count: int
    cost: Decimal

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> Limit:
        count, cost = value.get("limit_count"), _decimal(value.get("limit_cost"), "coverage.limit_cost")
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise DraftError("coverage.limit_count must be an integer >= 0")
        return cls(count, cost)

    def to_json(self) -> dict[str, Any]:
        return {"limit_count": self.count, "limit_cost": str(self.cost)}


@dataclass(frozen=True, slots=True)
class OpenOperation:
    """An intent receipt's effect: open operation ``operation_id`` (the draft's), claim its key
    (if any) and reserve the coverage its payload names (if it does)."""

    scope: str
    key: str
    fingerprint: str


@dataclass(frozen=True, slots=True)
class CloseOperation:
    """An outcome receipt's effect: close the draft's operation as ``status`` (completed/failed),
    or with ``interrupted`` mark it open and free to take over (its runner is stopping)."""

    status: str


Effect = OpenOperation | CloseOperation


@dataclass(frozen=True, slots=True)
class OperationRecord:
    """The stored state of one operation: which receipts hold it and whether it has ended.

    ``started`` is the intent's time (RFC 3339); an instance that finds an operation still open
    long after it started may take it over (the running instance died)."""

    operation_id: str
    scope: str
    key: str
    fingerprint: str
    chain: str
    status: str
    intent_id: str
    started: str
    outcome_id: str = ""

    @property
    def claim(self) -> ClaimKey | None:
        """The idempotency claim the operation holds: its key within its scope, if it has a key
        (the one rule for the append, the store's claim documents and ``ledger verify``)."""
        return ClaimKey(self.scope, self.key) if self.key else None

    def to_json(self) -> dict[str, Any]:
        return {"operation_id": self.operation_id, "scope": self.scope, "key": self.key,
                "fingerprint": self.fingerprint, "chain": self.chain, "status": self.status,
                "intent_id": self.intent_id, "outcome_id": self.outcome_id, "started": self.started}

    @classmethod
    def from_json(cls, doc: Mapping[str, Any], where: str) -> OperationRecord:
        """A record read from the store; :class:`~.errors.StoreCorruptError` naming ``where`` if it
        is not one (a hand edit must be named, never crash a caller)."""
        try:
            record = cls(**{name: doc[name] for name in RECORD_FIELDS})
        except (KeyError, TypeError) as exc:
            raise StoreCorruptError(f"{where}: not an operation record ({type(exc).__name__}: {exc})") from None
        if not all(isinstance(getattr(record, name), str) for name in RECORD_FIELDS):
            raise StoreCorruptError(f"{where}: every member of an operation record must be a string")
        if record.status not in OPEN and record.status not in OUTCOMES:
            raise StoreCorruptError(f"{where}: unknown operation status {record.status!r}")
        try:
            datetime.fromisoformat(record.started)
        except ValueError:
            raise StoreCorruptError(f"{where}: started {record.started!r} is not an RFC 3339 time") from None
        return record


RECORD_FIELDS = ("operation_id", "scope", "key", "fingerprint", "chain", "status", "intent_id", "started",
                  "outcome_id")


class OperationExists(DraftError):
    """The intent's key is already claimed; ``detail["operation"]`` is the first operation's record."""

    code = "operation_exists"


class OperationNotOpen(DraftError):
    """An outcome for an operation that is unknown or already closed (``detail["operation"]``)."""

    code = "operation_not_open"


class CoverageExceeded(DraftError):
    """The reservation does not fit; ``detail`` has the limit, the usage and the request."""

    code = "coverage_limit_exceeded"


def effect_from_json(value: Any) -> Effect | None:
    """The effect an ``append`` names: ``{"open": {scope, key, fingerprint, reserve?}}`` or
    ``{"close": {status}}`` (DraftError if malformed)."""
    if value is None:
        return None
    if not isinstance(value, Mapping) or len(value) != 1:
        raise DraftError("effect must be {\"open\": {...}} or {\"close\": {...}}")
    (name, body), = value.items()
    if not isinstance(body, Mapping):
        raise DraftError(f"effect.{name} must be an object")
    if name == "open":
        scope, key, fingerprint = (body.get(member) for member in ("scope", "key", "fingerprint"))
        if not (isinstance(scope, str) and isinstance(key, str) and isinstance(fingerprint, str)) or not scope:
            raise DraftError("effect.open needs scope (non-empty), key and fingerprint strings")
        return OpenOperation(scope, key, fingerprint)
    if name == "close":
        if body.get("status") not in OUTCOMES | {INTERRUPTED}:
            raise DraftError(f"effect.close.status must be one of {sorted(OUTCOMES | {INTERRUPTED})}")
        return CloseOperation(body["status"])
    raise DraftError(f"unknown effect {name!r}")


def check_shown(kind: str, authority: str, operation_id: str | None, payload: Mapping[str, Any],
                effect: Effect | None) -> None:
    """Refuse (DraftError) a draft whose effect its receipt would not show. The stored records are
    recounted from the receipts alone (:class:`Recount`: a restore, ``ledger verify``), so a
    contractual ``<scope>.intent`` opens its operation if and only if its payload names the
    ``fingerprint`` (and ``key``) its :class:`OpenOperation` claims with, and a
    :class:`CloseOperation` is on the ``<scope>.<status>`` receipt of its status."""
    scope, _, outcome = kind.rpartition(".")
    fingerprint, shown = payload.get("fingerprint"), None
    if authority == "contractual" and outcome == "intent" and operation_id is not None and isinstance(fingerprint, str):
        shown = OpenOperation(scope, payload.get("key", ""), fingerprint)
    if isinstance(effect, OpenOperation) and effect != shown:
        raise DraftError(f"effect.open must be on a contractual {effect.scope}.intent whose payload names its "
                         f"key {effect.key!r} and fingerprint {effect.fingerprint!r}, as its receipt shows it")
    if shown is not None and not isinstance(effect, OpenOperation):
        raise DraftError("a contractual intent whose payload names a fingerprint opens its operation: it needs "
                         "effect.open with that key and fingerprint")
    if isinstance(effect, CloseOperation) and (authority != "contractual" or outcome != effect.status):
        raise DraftError(f"effect.close {effect.status!r} must be on a contractual <scope>.{effect.status} receipt, "
                         "as its receipt shows it")


class Counted(NamedTuple):
    """What one intent reserves: one operation and ``cost`` on ``key``, within ``limit``."""

    key: UsageKey
    cost: Decimal
    limit: Limit


def usage_of(kind: str, chain: str | None, authority: str, time: str, payload: Mapping[str, Any]) -> Counted | None:
    """What a receipt reserves, or None: the one rule that both reservation and recount use. A
    contractual ``*.intent`` whose payload has ``coverage`` counts (DraftError if it is malformed)."""
    coverage = payload.get("coverage")
    if authority != "contractual" or not kind.endswith(".intent") or not chain or coverage is None:
        return None
    if not isinstance(coverage, Mapping):
        raise DraftError("payload.coverage must be {sku_id, cost, limit_count, limit_cost}")
    sku = coverage.get("sku_id")
    if not isinstance(sku, str) or not sku:
        raise DraftError("payload.coverage.sku_id must be a non-empty string")
    return Counted(UsageKey(chain, time[:7], sku), _decimal(coverage.get("cost"), "coverage.cost"),
                   Limit.from_json(coverage))


def rebuild(receipts: Iterable[Mapping[str, Any]]) -> tuple[dict[UsageKey, Usage], list[OperationRecord]]:
    """The counters and operation records the receipts give, in leaf order: what ``ledger
    verify`` compares the stored ones with, and how a ledger older than them gets them."""
    recount = Recount()
    for receipt in receipts:
        recount.add(receipt)
    return recount.usage, list(recount.records.values())


class Recount:
    """The counters and operation records of receipts added in leaf order, and which of them
    the receipts since the last :meth:`take_changed` changed: one rule for :func:`rebuild` and
    for a restore, which writes them batch by batch. An intent that opens its operation carries
    its claim in its payload (``key``, ``fingerprint``: :class:`OpenOperation`'s, which is
    how an intent shows it opened one; one without a ``fingerprint`` opened none); its kind
    names the scope."""

    def __init__(self) -> None:
        self.usage: dict[UsageKey, Usage] = {}
        self.records: dict[str, OperationRecord] = {}
        self._closed: set[str] = set()  # operations whose records take_changed handed out closed
        self._changed_usage: set[UsageKey] = set()
        self._changed_records: set[str] = set()

    def add(self, receipt: Mapping[str, Any]) -> None:
        """Count one receipt (a malformed one counts nothing: ``ledger verify`` names it)."""
        payload, time, kind = receipt.get("payload"), receipt.get("time"), str(receipt.get("kind", ""))
        if not isinstance(payload, Mapping) or not isinstance(time, str):
            return
        try:
            found = usage_of(kind, receipt.get("chain"), str(receipt.get("authority", "")), time, payload)
        except DraftError:
            found = None  # a cost that is not a number never reserved anything
        if found is not None:
            self.usage[found.key] = self.usage.get(found.key, Usage()).plus(found.cost)
            self._changed_usage.add(found.key)
        operation_id, scope, _, outcome = receipt.get("operation_id"), *kind.rpartition(".")
        if not isinstance(operation_id, str) or receipt.get("authority") != "contractual":
            return
        records, fingerprint = self.records, payload.get("fingerprint")
        if outcome == "intent" and isinstance(fingerprint, str) and operation_id not in records \
                and operation_id not in self._closed:
            records[operation_id] = OperationRecord(
                operation_id, scope, str(payload.get("key", "")), fingerprint,
                str(receipt.get("chain")), IN_PROGRESS, str(receipt.get("id")), time)
        elif outcome == INTERRUPTED and _is_open(records.get(operation_id)):
            records[operation_id] = replace(records[operation_id], status=INTERRUPTED)
        elif outcome in OUTCOMES and _is_open(records.get(operation_id)):
            records[operation_id] = replace(records[operation_id], status=outcome, outcome_id=str(receipt.get("id")))
        else:
            return
        self._changed_records.add(operation_id)

    def take_changed(self) -> tuple[dict[UsageKey, Usage], list[OperationRecord]]:
        """The counters and records changed since the last call, as they stand now. A closed
        record handed out is forgotten (no receipt changes it again; only its id is kept), so a
        restore of millions of operations holds the open ones only."""
        usage = {key: self.usage[key] for key in sorted(self._changed_usage)}
        records = [self.records[op] for op in sorted(self._changed_records)]
        for record in records:
            if record.status in OUTCOMES:
                del self.records[record.operation_id]
                self._closed.add(record.operation_id)
        self._changed_usage.clear()
        self._changed_records.clear()
        return usage, records


@dataclass
class EffectState:
    """The counters and records a batch touches: as read in the transaction, then as the batch
    leaves them (what the store writes)."""

    usage: dict[UsageKey, Usage]
    claims: dict[ClaimKey, OperationRecord]
    operations: dict[str, OperationRecord]
    changed_usage: dict[UsageKey, Usage]
    changed_operations: dict[str, OperationRecord]

    @classmethod
    def read(cls, usage: Mapping[UsageKey, Usage], claims: Mapping[ClaimKey, OperationRecord],
             operations: Mapping[str, OperationRecord]) -> EffectState:
        return cls(dict(usage), dict(claims), dict(operations), {}, {})

    def apply(self, effect: Effect, *, operation_id: str | None, receipt_id: str, chain: str, time: str,
              counted: Counted | None) -> None:
        """Apply one sealed draft's effect, or raise the refusal that aborts its batch."""
        if operation_id is None:
            raise DraftError("a draft with an effect needs its operation_id")
        if isinstance(effect, CloseOperation):
            self._close(effect, operation_id, receipt_id)
            return
        claim = ClaimKey(effect.scope, effect.key)
        if effect.key and claim in self.claims:
            raise OperationExists(f"{effect.scope} key {effect.key!r} already names operation "
                                  f"{self.claims[claim].operation_id}",
                                  detail={"operation": self.claims[claim].to_json()})
        if operation_id in self.operations:
            raise OperationExists(f"operation {operation_id} exists already",
                                  detail={"operation": self.operations[operation_id].to_json()})
        if counted is not None:
            self._reserve(*counted)
        record = OperationRecord(operation_id, effect.scope, effect.key, effect.fingerprint, chain, IN_PROGRESS,
                                 receipt_id, time)
        self.operations[operation_id] = self.changed_operations[operation_id] = record
        if record.claim is not None:
            self.claims[record.claim] = record

    def _reserve(self, key: UsageKey, cost: Decimal, limit: Limit) -> None:
        usage = self.usage.get(key, Usage())
        after = usage.plus(cost)
        if after.count > limit.count or after.cost > limit.cost:
            raise CoverageExceeded(
                f"coverage for {key.sku} in {key.period} would be exceeded",
                detail={"sku": key.sku, "period": key.period, "limit_count": limit.count,
                        "limit_cost": str(limit.cost), "current_count": usage.count,
                        "current_cost": str(usage.cost), "requested_cost": str(cost),
                        "remaining_count": max(0, limit.count - usage.count),
                        "remaining_cost": str(max(Decimal(0), limit.cost - usage.cost))})
        self.usage[key] = self.changed_usage[key] = after

    def _close(self, effect: CloseOperation, operation_id: str, receipt_id: str) -> None:
        record = self.operations.get(operation_id)
        if record is None or record.status not in OPEN:
            raise OperationNotOpen(
                f"operation {operation_id} is {'unknown' if record is None else 'already ' + record.status}",
                detail={"operation": None if record is None else record.to_json()})
        closed = replace(record, status=effect.status,
                         outcome_id="" if effect.status == INTERRUPTED else receipt_id)
        self.operations[operation_id] = self.changed_operations[operation_id] = closed
        if closed.claim is not None:
            self.claims[closed.claim] = closed


def _is_open(record: OperationRecord | None) -> bool:
    return record is not None and record.status in OPEN


def _decimal(value: Any, where: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise DraftError(f"{where} must be a decimal string or an integer")
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise DraftError(f"{where} must be a decimal number") from None
    if not number.is_finite() or not 0 <= number <= _MAX_COST:
        raise DraftError(f"{where} must be between 0 and {_MAX_COST:f}")
    return number
