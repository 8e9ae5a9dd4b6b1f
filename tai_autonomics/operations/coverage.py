"""Coverage (SPEC 6): per SKU per calendar month (UTC), how many operations and how much cost
the policy insures, against usage derived from the ledger's receipts (so every instance and
every restart sees the same numbers)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal

from tai_autonomics.errors import TaiError
from tai_autonomics.trust import CoverageLimit, Policy


class CoverageExceeded(TaiError):
    """The operation would pass the SKU's monthly limit; ``detail`` has the numbers."""

    code = "coverage_limit_exceeded"


class SkuNotAuthorized(TaiError):
    code = "sku_not_authorized"


@dataclass(frozen=True)
class Usage:
    count: int = 0
    cost: Decimal = Decimal(0)

    def plus(self, cost: Decimal) -> Usage:
        return Usage(self.count + 1, self.cost + cost)


def period_of(moment: datetime) -> str:
    """The coverage period a moment falls in: its calendar month in UTC, e.g. ``2026-11``."""
    utc = moment.astimezone(timezone.utc)
    return f"{utc.year:04d}-{utc.month:02d}"  # strftime's %Y does not pad years before 1000


def check_coverage(policy: Policy, sku: str, usage: Usage, cost: Decimal) -> None:
    """Raise unless one more operation of ``cost`` on ``sku`` stays within the policy."""
    if not policy.covers(sku):
        raise SkuNotAuthorized(f"SKU {sku!r} is not authorised by policy {policy.policy_id}",
                               detail={"sku": sku, "policy_id": policy.policy_id})
    limit: CoverageLimit = policy.coverage_limits[sku]
    after = usage.plus(cost)
    if after.count > limit.limit_count or after.cost > limit.limit_cost:
        raise CoverageExceeded(
            f"coverage for {sku} this month would be exceeded",
            detail={"sku": sku, "limit_count": limit.limit_count, "limit_cost": str(limit.limit_cost),
                    "current_count": usage.count, "current_cost": str(usage.cost), "requested_cost": str(cost),
                    "remaining_count": max(0, limit.limit_count - usage.count),
                    "remaining_cost": str(max(Decimal(0), limit.limit_cost - usage.cost))})
