"""ProdMode's authority as data: what a write needs to be guarded where it runs.

ProdMode pushes an :class:`Authority` to the operation actors (Acquisition, Publisher) whenever
the mode, the certificate or the policy changes; each guards its own requests with
:meth:`Authority.guard`, so a deploy costs no round trip to ProdMode (one call from the gateway,
then the two ledger appends). The guard re-checks the certificate's validity against the clock
at call time (docs/specification.md §2): timers freeze between requests on Cloud Run, so a
pushed ``prod`` whose certificate has expired since is refused as ``read_only`` at once, and the
actor tells ProdMode, which records the transition. ProdMode's own ``guard`` call uses the same
method, so the rule lives once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tai_autonomics.operations.coverage import limit_for
from tai_autonomics.operations.mode import PROD, READ_ONLY, WRITE, check_mode
from tai_autonomics.trust import Policy
from tai_autonomics.trust.errors import CertValidityTooShort

CERTIFICATE_EXPIRED = "certificate expired"


@dataclass(frozen=True)
class Authority:
    mode: str
    reason: str
    policy: Policy | None
    not_after: float
    """The certificate's expiry (seconds since the epoch; 0 when none is held)."""
    buffer_s: float
    """How much validity beyond an operation's deadline a write needs (pre-flight)."""

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        """Pickled with the policy as its JSON document (a Policy holds a mappingproxy, which
        pickle refuses): the multiprocess bases pickle every message."""
        return _unpickle, (self.mode, self.reason, None if self.policy is None else self.policy.to_dict(),
                           self.not_after, self.buffer_s)

    @property
    def chain(self) -> str | None:
        return self.policy.policy_id if self.policy is not None else None

    def expired(self, now: float) -> bool:
        """Whether the certificate of a ``prod`` authority has expired by ``now``."""
        return self.mode == PROD and now >= self.not_after

    def guard(self, sku: str, timeout_s: float, now: float) -> dict[str, Any]:
        """May a write for ``sku`` that may take ``timeout_s`` run at ``now``, and against which
        coverage limit? Raises the refusal (``mode_refused``, ``cert_validity_too_short``,
        ``sku_not_authorized``) otherwise."""
        mode, reason = (READ_ONLY, CERTIFICATE_EXPIRED) if self.expired(now) else (self.mode, self.reason)
        check_mode(mode, reason, WRITE)
        left, needed = self.not_after - now, timeout_s + self.buffer_s
        if left < needed or self.policy is None:
            raise CertValidityTooShort(
                f"the insurance certificate expires in {max(0, int(left))} s, before this operation could "
                f"finish (needs {int(needed)} s)",
                detail={"seconds_left": max(0, int(left)), "needed_s": int(needed)})
        return {"mode": mode, "chain": self.policy.policy_id, "authority": "contractual",
                "limit": limit_for(self.policy, sku).to_json()}


def _unpickle(mode: str, reason: str, policy: dict[str, Any] | None, not_after: float, buffer_s: float) -> Authority:
    return Authority(mode, reason, None if policy is None else Policy.from_dict(policy), not_after, buffer_s)
