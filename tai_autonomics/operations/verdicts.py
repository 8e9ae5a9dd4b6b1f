"""When the insurer's verdict on the policy becomes a receipt (docs/specification.md §4).

ProdMode asks the insurer to verify the policy at start, at every periodic check and on an
operator's resume. Recording every answer would put a receipt on the chain each minute; recording
none leaves an auditor unable to show that insurance was checked. So a verdict is recorded
(``insurance.verified`` or ``insurance.verification_failed``) when it differs from the last one
recorded, and again at most once per ``repeat_s`` (an hour) while it holds, so the chain proves
the policy was confirmed at least hourly. Pure: the clock is passed in, so a test drives the hour.

The last verdict lives in memory: a restarted ProdMode records its first verdict again, which
costs one receipt per restart and never hides a change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

VERIFIED, FAILED = "insurance.verified", "insurance.verification_failed"
REPEAT_S = 3600.0


@dataclass(frozen=True)
class Verdict:
    """One answer of the insurer: ``error`` is ``None`` when the policy was verified."""

    policy_id: str
    error_code: str | None = None
    reason: str = ""

    @property
    def kind(self) -> str:
        return VERIFIED if self.error_code is None else FAILED

    def payload(self, repeat: bool) -> dict[str, Any]:
        """The receipt's payload; ``repeat`` says it restates a verdict already recorded (the hourly one)."""
        body: dict[str, Any] = {"policy_id": self.policy_id, "repeat": repeat}
        if self.error_code is not None:
            body.update(code=self.error_code, reason=self.reason)
        return body


class VerdictLog:
    """Decides which verdicts become receipts: each change, and hourly while one holds."""

    def __init__(self, repeat_s: float = REPEAT_S) -> None:
        if not repeat_s > 0:
            raise ValueError(f"repeat_s must be > 0, not {repeat_s!r}")
        self.repeat_s = repeat_s
        self._last_kind: str | None = None
        self._last_at = 0.0

    def observe(self, verdict: Verdict, now: float) -> tuple[str, dict[str, Any]] | None:
        """The ``(kind, payload)`` to record for ``verdict`` seen at ``now`` (epoch seconds), or ``None``."""
        changed = verdict.kind != self._last_kind
        if not changed and now - self._last_at < self.repeat_s:
            return None
        self._last_kind, self._last_at = verdict.kind, now
        return verdict.kind, verdict.payload(repeat=not changed)
