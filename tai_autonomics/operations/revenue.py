"""Revenue recognition (ASC 606) from contract receipts only (docs/specification.md §12).

Contract events are receipts (``contract.<event>``), recorded through the gateway; a month's
figures are computed here from those receipts and nothing else, so the daemon (``GET
/v1/revenue``) and anyone holding an export (``tai-autonomics revenue --export``) get the same
numbers. Pure and exact: amounts are :class:`~fractions.Fraction` until each figure is rounded
half-up to the cent, so 5,000 × 15/28 is 2,678.57 and not an artefact of binary floats.

The rules, day by day (an event dated ``d`` holds from day ``d`` on; events of one day apply in
ledger order):

- A contract is **in force** on a day when an MSA is signed (``msa_signed``, with its
  ``monthly_fee``; a later one amends the fee from its date) and the latest insurance event is
  ``insurance_verified`` (not ``insurance_lapsed``). Only then is revenue recognised: each day in
  force recognises ``fee / days in the month``, so a mid-month start is pro-rata.
- A **lapse** (``insurance_lapsed`` on a contract that was in force) pauses recognition until the
  next ``insurance_verified``; each lapsed day is refunded: ``refund = prepaid × lapsed days /
  days in the month`` (5,000 × 15/28 = 2,678.57), and the month lists the lapse's cure notice.
- **Variable fees** (``usage_reported`` for a month) are recognised up to 125 % of the base
  recognised that month; the excess is not revenue.
- **SLA credits** (``sla_reported``: the month's availability, the latest report counts) reduce
  the month's base: 99.0 to 99.5 % → 5 %, 98 to 99 % → 15 %, below 98 % → 30 % (99.5 % and above:
  none; each lower bound belongs to the better tier).
- **Escalation**: an MSA with no ``insurance_verified`` dated within 30 days of its signing is
  escalated on the 30th day, shown in that day's month.
- ``eval_start``, ``insurance_requested``, ``insurance_received`` and ``production_go_live`` are
  recorded for the audit trail and move no money.

Recognised revenue = base − SLA credit + variable.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from fractions import Fraction
from typing import Any

from tai_autonomics.errors import InvalidRequest

KIND_PREFIX = "contract."
MONEY_EVENTS = ("msa_signed", "insurance_verified", "insurance_lapsed", "usage_reported", "sla_reported")
TRAIL_EVENTS = ("eval_start", "insurance_requested", "insurance_received", "production_go_live")
EVENTS = (*TRAIL_EVENTS, *MONEY_EVENTS)
CONTRACT_KINDS = tuple(KIND_PREFIX + event for event in EVENTS)
VARIABLE_CAP = Fraction(125, 100)
ESCALATION_DAYS = 30
SLA_TIERS = ((Fraction(995, 10), Fraction(0)), (Fraction(99), Fraction(5, 100)), (Fraction(98), Fraction(15, 100)))
SLA_FLOOR_CREDIT = Fraction(30, 100)
MAX_AMOUNT = Decimal(10) ** 12

_CONTRACT_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_MONTH = re.compile(r"\d{4}-\d{2}")
_FIELDS = {"msa_signed": {"monthly_fee"}, "usage_reported": {"month", "amount"},
           "sla_reported": {"month", "availability_pct"}}


# -- input: a contract event, checked before it becomes a receipt ---------------------------------

def contract_event(contract_id: str, body: Any) -> tuple[str, dict[str, Any]]:
    """The receipt ``(kind, payload)`` for a POSTed event, or :class:`InvalidRequest` naming the field.

    ``body`` is ``{"event", "date": "YYYY-MM-DD"}`` plus, for ``msa_signed``, ``monthly_fee``; for
    ``usage_reported``, ``month`` and ``amount``; for ``sla_reported``, ``month`` and
    ``availability_pct``. Amounts are numbers or decimal strings with at most two decimals, stored
    as strings so the receipt holds the exact value.
    """
    if not isinstance(contract_id, str) or not _CONTRACT_ID.fullmatch(contract_id):
        raise InvalidRequest("a contract id is 1-128 of A-Z a-z 0-9 . _ : -", detail={"field": "id"})
    if not isinstance(body, dict):
        raise InvalidRequest("a contract event is a JSON object", detail={"field": "body"})
    event = body.get("event")
    if event not in EVENTS:
        raise InvalidRequest(f"event must be one of {', '.join(EVENTS)}", detail={"field": "event"})
    expected = {"event", "date"} | _FIELDS.get(event, set())
    unknown, missing = sorted(set(body) - expected), sorted(expected - set(body))
    if unknown or missing:
        raise InvalidRequest(f"{event} takes exactly {', '.join(sorted(expected))}",
                           detail={"field": (unknown or missing)[0], "unknown": unknown, "missing": missing})
    payload: dict[str, Any] = {"contract_id": contract_id, "event": event, "date": parse_date(body["date"]).isoformat()}
    if event == "msa_signed":
        payload["monthly_fee"] = str(_money(body["monthly_fee"], "monthly_fee"))
    elif event == "usage_reported":
        payload.update(month=parse_month(body["month"], "month"), amount=str(_money(body["amount"], "amount")))
    elif event == "sla_reported":
        payload.update(month=parse_month(body["month"], "month"),
                       availability_pct=str(_number(body["availability_pct"], "availability_pct", Decimal(100), 3)))
    return KIND_PREFIX + event, payload


def parse_date(text: Any, name: str = "date") -> date:
    if not isinstance(text, str) or not _DATE.fullmatch(text):
        raise InvalidRequest(f"{name} must be a date YYYY-MM-DD", detail={"field": name})
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise InvalidRequest(f"{name} {text!r} is not a calendar date", detail={"field": name}) from None


def parse_month(text: Any, name: str = "month") -> str:
    """``YYYY-MM`` with a month 01-12, as given (the one spelling a month has in receipts)."""
    if not isinstance(text, str) or not _MONTH.fullmatch(text) or not 1 <= int(text[5:]) <= 12 or text < "0001":
        raise InvalidRequest(f"{name} must be a month YYYY-MM", detail={"field": name})
    return text


def _money(value: Any, name: str) -> Decimal:
    return _number(value, name, MAX_AMOUNT, 2)


def _number(value: Any, name: str, maximum: Decimal, places: int) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise InvalidRequest(f"{name} must be a number or a decimal string", detail={"field": name})
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise InvalidRequest(f"{name} must be a number or a decimal string", detail={"field": name}) from None
    if not number.is_finite() or not 0 <= number <= maximum or -number.as_tuple().exponent > places:  # type: ignore[operator]
        raise InvalidRequest(f"{name} must be 0 to {maximum} with at most {places} decimals", detail={"field": name})
    return number


# -- output: a month's figures ---------------------------------------------------------------------

@dataclass
class _Contract:
    """One contract's events, in ledger order (the receipts' order on their chain)."""

    fees: list[tuple[date, Fraction]] = field(default_factory=list)
    insurance: list[tuple[date, bool]] = field(default_factory=list)  # (date, verified?)
    usage: dict[str, Fraction] = field(default_factory=dict)
    availability: dict[str, Fraction] = field(default_factory=dict)

    def fee_on(self, day: date) -> Fraction | None:
        """The fee of the latest MSA dated on or before ``day`` (ledger order breaks a tie)."""
        signed = [fee for when, fee in sorted(self.fees, key=lambda e: e[0]) if when <= day]
        return signed[-1] if signed else None

    def verified_on(self, day: date) -> bool | None:
        states = [verified for when, verified in sorted(self.insurance, key=lambda e: e[0]) if when <= day]
        return states[-1] if states else None

    def escalated_on(self) -> date | None:
        if not self.fees:
            return None
        signed = min(when for when, _ in self.fees)
        deadline = signed + timedelta(days=ESCALATION_DAYS)
        verified = any(ok and when <= deadline for when, ok in self.insurance)
        return None if verified else deadline


def recognise(receipts: Iterable[dict[str, Any]], month: str) -> dict[str, Any]:
    """The month's revenue from ``receipts`` (any receipts: only contractual ``contract.*`` ones count),
    per contract and in total; amounts are decimal strings rounded half-up to the cent."""
    parse_month(month)
    year, number = int(month[:4]), int(month[5:])
    days = calendar.monthrange(year, number)[1]
    first = date(year, number, 1)
    contracts: dict[str, _Contract] = {}
    counted = 0
    for receipt in receipts:
        if not str(receipt.get("kind", "")).startswith(KIND_PREFIX) or receipt.get("authority") != "contractual":
            continue
        counted += 1
        _take(contracts.setdefault(receipt["payload"]["contract_id"], _Contract()), receipt["payload"])
    rows = [_month_of(contract_id, contract, first, days, month) for contract_id, contract in sorted(contracts.items())]
    totals = {name: _cents(sum((row.pop(f"_{name}") for row in rows), Fraction(0)))
              for name in ("recognised", "base", "refunds", "variable", "sla_credits")}
    return {"month": month, "days": days, "contract_receipts": counted, "contracts": rows, "totals": totals}


def _take(contract: _Contract, payload: dict[str, Any]) -> None:
    event, day = payload["event"], date.fromisoformat(payload["date"])
    if event == "msa_signed":
        contract.fees.append((day, Fraction(payload["monthly_fee"])))
    elif event in ("insurance_verified", "insurance_lapsed"):
        contract.insurance.append((day, event == "insurance_verified"))
    elif event == "usage_reported":
        month = payload["month"]
        contract.usage[month] = contract.usage.get(month, Fraction(0)) + Fraction(payload["amount"])
    elif event == "sla_reported":
        contract.availability[payload["month"]] = Fraction(payload["availability_pct"])


def _month_of(contract_id: str, contract: _Contract, first: date, days: int, month: str) -> dict[str, Any]:
    base = refund = Fraction(0)
    in_force = lapsed = 0
    started = _started_before(contract, first)
    for offset in range(days):
        day = first + timedelta(days=offset)
        fee, verified = contract.fee_on(day), contract.verified_on(day)
        if fee is not None and verified:
            base, in_force, started = base + fee / days, in_force + 1, True
        elif fee is not None and verified is False and started:
            refund, lapsed = refund + fee / days, lapsed + 1
    reported = contract.usage.get(month, Fraction(0))
    variable = min(reported, VARIABLE_CAP * base)
    availability = contract.availability.get(month)
    credit_rate = _sla_credit_rate(availability)
    credit = credit_rate * base
    recognised = base - credit + variable
    escalated = contract.escalated_on()
    lapses = sorted(when.isoformat() for when, ok in contract.insurance
                    if not ok and when.isoformat()[:7] == month)
    return {
        "contract_id": contract_id, "days_in_force": in_force, "days_lapsed": lapsed,
        "base": _cents(base), "refund": _cents(refund), "variable_reported": _cents(reported),
        "variable_cap": _cents(VARIABLE_CAP * base), "variable": _cents(variable),
        "availability_pct": None if availability is None else str(Decimal(availability.numerator) /
                                                                  Decimal(availability.denominator)),
        "sla_credit_pct": int(credit_rate * 100), "sla_credit": _cents(credit), "recognised": _cents(recognised),
        "paused": lapsed > 0, "cure_notices": lapses,
        "escalated_on": escalated.isoformat() if escalated and escalated.isoformat()[:7] == month else None,
        "_recognised": recognised, "_base": base, "_refunds": refund, "_variable": variable, "_sla_credits": credit,
    }


def _started_before(contract: _Contract, first: date) -> bool:
    """Whether the contract was in force on a day before ``first``: its state changes only on the
    dates of its events, so those days are enough to look at."""
    changes = {when for when, _ in contract.fees} | {when for when, _ in contract.insurance}
    return any(day < first and contract.fee_on(day) is not None and contract.verified_on(day) for day in changes)


def _sla_credit_rate(availability: Fraction | None) -> Fraction:
    if availability is None:
        return Fraction(0)
    for floor, rate in SLA_TIERS:
        if availability >= floor:
            return rate
    return SLA_FLOOR_CREDIT


def _cents(amount: Fraction) -> str:
    exact = Decimal(amount.numerator) / Decimal(amount.denominator)
    return str(exact.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))
