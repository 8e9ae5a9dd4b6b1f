"""Coverage (docs/specification.md §6): per SKU per calendar month (UTC), how many operations and how much cost
the policy insures.

What the policy allows is decided here (:func:`limit_for`); whether one more operation fits is
decided by the ledger, in the transaction that records the operation's intent, against usage
counted over every instance (:mod:`tai_autonomics.ledger.operations`), so that two instances can
never together pass a limit.
"""

from __future__ import annotations

from datetime import datetime, timezone

from tai_autonomics.errors import TaiError
from tai_autonomics.ledger.operations import Limit
from tai_autonomics.trust import Policy


class SkuNotAuthorized(TaiError):
    """The policy insures no coverage for this SKU: the operation is refused before anything is recorded."""

    code = "sku_not_authorized"


def period_of(moment: datetime) -> str:
    """The coverage period a moment falls in: its calendar month in UTC, e.g. ``2026-11``."""
    utc = moment.astimezone(timezone.utc)
    return f"{utc.year:04d}-{utc.month:02d}"  # strftime's %Y does not pad years before 1000


def limit_for(policy: Policy, sku: str) -> Limit:
    """The monthly limit the policy sets for ``sku``; SkuNotAuthorized if it does not cover it."""
    if not policy.covers(sku):
        raise SkuNotAuthorized(f"SKU {sku!r} is not authorised by policy {policy.policy_id}",
                               detail={"sku": sku, "policy_id": policy.policy_id})
    limit = policy.coverage_limits[sku]
    return Limit(limit.limit_count, limit.limit_cost)
