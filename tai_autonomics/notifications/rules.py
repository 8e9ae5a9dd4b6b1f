"""Which receipts become notifications (docs/specification.md §12), and how often.

Pure, fed the receipts of the policy's chain in order by the Notifier actor, so notifications
follow from what the ledger recorded (nothing is notified that did not happen) and a restarted
Notifier reads on from where its own receipts say it stopped.

=====================================  ======================================================
receipt                                notice kind
=====================================  ======================================================
``insurance.expiry_warning`` (N days)  ``certificate.expires_in_30d`` / ``_7d`` / ``_1d``
``mode.changed`` → ``read_only``       ``mode.read_only`` (and ``certificate.expired`` when the
                                       reason is an expired certificate)
``mode.changed`` ``read_only`` → prod  ``mode.restored``
``deploy.failed`` / ``publish.failed`` ``deploy.failed`` / ``publish.failed``
``coverage.exceeded``                  ``coverage.exceeded``
``contract.insurance_lapsed``          ``contract.cure_notice`` (to the contract, docs/revenue.md)
an intent taking a SKU's month to      ``coverage.warning`` (count or cost ≥ 80 % of the limit)
≥ 80 % of its limit
=====================================  ======================================================

The customer of a notice is the deploy's ``customer_account`` (remembered from its intent) for
an operation's failure, else the policy's customer. :class:`Throttle` lets one notice per
(customer, kind) through per hour.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

WARN_AT = Decimal("0.8")
REMEMBERED_OPERATIONS = 10_000


@dataclass(frozen=True)
class Notice:
    kind: str
    customer: str
    detail: dict[str, Any]
    source: dict[str, Any]  # the receipt it follows from: id, kind, seq


class Watch:
    """Turns receipts into notices; keeps each SKU's month usage (from ``usage``, then from the
    intents it reads) to see when it crosses 80 %."""

    def __init__(self, customer: str, usage: list[dict[str, Any]] | None = None, counted_through: int = 0) -> None:
        """``usage``: the ledger's counters when reading began, which already count the intents up to
        seq ``counted_through`` (so those are not counted twice)."""
        self.customer = customer
        self.counted_through = counted_through
        self._usage: dict[tuple[str, str], tuple[int, Decimal]] = {
            (row["sku"], row["period"]): (int(row["count"]), Decimal(str(row["cost"]))) for row in usage or []}
        self._customers: OrderedDict[str, str] = OrderedDict()

    def notices(self, receipt: dict[str, Any]) -> list[Notice]:
        kind, payload = receipt.get("kind"), receipt.get("payload")
        if not isinstance(payload, dict):
            return []
        source = {"id": receipt.get("id"), "kind": kind, "seq": receipt.get("seq")}
        found: list[tuple[str, str, dict[str, Any]]] = []
        if kind == "insurance.expiry_warning":
            found.append((f"certificate.expires_in_{payload.get('threshold_days')}d", self.customer,
                          {"not_after": payload.get("not_after"), "seconds_left": payload.get("seconds_left")}))
        elif kind == "mode.changed":
            found += self._mode(payload)
        elif kind in ("deploy.failed", "publish.failed"):
            customer = self._customers.get(str(receipt.get("operation_id")), self.customer)
            found.append((kind, customer, {"operation_id": receipt.get("operation_id"),
                                           "rca": payload.get("rca")}))
        elif kind == "coverage.exceeded":
            found.append(("coverage.exceeded", self.customer, {k: payload.get(k) for k in (
                "sku", "period", "limit_count", "limit_cost", "current_count", "current_cost")}))
        elif kind in ("deploy.intent", "publish.intent"):
            found += self._intent(receipt, payload)
        elif kind == "contract.insurance_lapsed":
            found.append(("contract.cure_notice", str(payload.get("contract_id")), {"lapsed_on": payload.get("date")}))
        return [Notice(k, c, d, source) for k, c, d in found]

    def _mode(self, payload: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
        detail = {"from": payload.get("from"), "to": payload.get("to"), "reason": payload.get("reason")}
        if payload.get("to") == "read_only":
            expired = "expired" in str(payload.get("reason", ""))
            return [("mode.read_only", self.customer, detail)] + (
                [("certificate.expired", self.customer, detail)] if expired else [])
        if payload.get("from") == "read_only" and payload.get("to") == "prod":
            return [("mode.restored", self.customer, detail)]
        return []

    def _intent(self, receipt: dict[str, Any], payload: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
        if isinstance(payload.get("customer_account"), str):
            self._customers[str(receipt.get("operation_id"))] = payload["customer_account"]
            while len(self._customers) > REMEMBERED_OPERATIONS:
                self._customers.popitem(last=False)
        coverage = payload.get("coverage")
        if not isinstance(coverage, dict) or int(receipt.get("seq") or 0) <= self.counted_through:
            return []
        try:
            sku, cost = str(coverage["sku_id"]), Decimal(str(coverage["cost"]))
            limit_count, limit_cost = int(coverage["limit_count"]), Decimal(str(coverage["limit_cost"]))
        except (KeyError, TypeError, ValueError, InvalidOperation):
            return []
        key = (sku, str(receipt.get("time", ""))[:7])
        before = self._usage.get(key, (0, Decimal(0)))
        after = (before[0] + 1, before[1] + cost)
        self._usage[key] = after
        if not (_crossed(before[0], after[0], limit_count) or _crossed(before[1], after[1], limit_cost)):
            return []
        return [("coverage.warning", self.customer, {"sku": sku, "period": key[1], "count": after[0],
                                                     "cost": str(after[1]), "limit_count": limit_count,
                                                     "limit_cost": str(limit_cost)})]


def _crossed(before: Decimal | int, after: Decimal | int, limit: Decimal | int) -> bool:
    """Whether usage went from under 80 % of ``limit`` to at least 80 % (and the limit is not zero)."""
    return limit > 0 and before < WARN_AT * limit <= after


class Throttle:
    """At most one notice per (customer, kind) per ``window_s``; remembers when each was let through.

    Only the pairs let through within the window matter (an older one lets the next notice
    through, as an unknown pair does), so the older ones are swept out whenever the memory has
    doubled since the last sweep: it is bounded by the notices of one window, not by every
    customer that ever had a failed deploy (amortised O(1) a notice).
    """

    _SWEEP_MIN = 64

    def __init__(self, window_s: float = 3600.0) -> None:
        if not window_s > 0:
            raise ValueError(f"window_s must be > 0, not {window_s!r}")
        self.window_s = window_s
        self._last: dict[tuple[str, str], float] = {}
        self._sweep_at = self._SWEEP_MIN

    def __len__(self) -> int:
        """The (customer, kind) pairs remembered: at most about twice those let through in one window."""
        return len(self._last)

    def allow(self, customer: str, kind: str, now: float) -> bool:
        last = self._last.get((customer, kind))
        if last is not None and now - last < self.window_s:
            return False
        self._last[(customer, kind)] = now
        if len(self._last) > self._sweep_at:
            self._last = {pair: at for pair, at in self._last.items() if now - at < self.window_s}
            self._sweep_at = max(self._SWEEP_MIN, 2 * len(self._last))
        return True

    def remember(self, customer: str, kind: str, at: float) -> None:
        """A notice sent before (read back from its receipt after a restart)."""
        self._last[(customer, kind)] = max(at, self._last.get((customer, kind), at))
