"""Root-cause records (docs/specification.md §6): what an outside party's answer means for a failed operation.

An outside call ends in an :class:`Answer`: an HTTP status with the party's error code and
message, or no (whole) answer at all (``timeout``, ``connect``, ``dropped``). Acquisition and
Publisher each map an answer to one of their docs/specification.md §6 classifications
(:mod:`~tai_autonomics.operations.deploy`, :mod:`~tai_autonomics.operations.publish`); the
record built here is what the ``*.failed`` receipt carries, so a customer or an insurer reads
why it failed, where, what to do about it, and whether it is a claim under the policy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

NO_ANSWER = ("timeout", "connect", "dropped")
"""Ways a call can end without a whole HTTP answer."""

TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})
SEVERITIES = ("low", "medium", "high")


@dataclass(frozen=True)
class Answer:
    """How one outside call ended: ``status`` (None without an answer), the party's error
    ``code`` and ``message``, or ``failure`` (one of :data:`NO_ANSWER`)."""

    status: int | None = None
    code: str = ""
    message: str = ""
    failure: str = ""
    retry_after_s: float | None = None

    @property
    def ok(self) -> bool:
        return not self.failure and self.status is not None and 200 <= self.status < 300

    def transient(self, final_codes: frozenset[str] | tuple[str, ...]) -> bool:
        """Worth another attempt: no answer, or a status that says "later" — unless the party
        named a root-cause class (a deliberate refusal, which another attempt would repeat)."""
        if self.failure:
            return True
        return self.status in TRANSIENT_STATUSES and self.code not in final_codes

    def describe(self) -> str:
        if self.failure == "timeout":
            return "no answer within the call timeout"
        if self.failure == "connect":
            return "could not connect (refused, unreachable or reset)"
        if self.failure == "dropped":
            return "the connection closed before the whole answer arrived"
        said = f": {self.message}" if self.message else ""
        return f"HTTP {self.status}" + (f" {self.code}" if self.code else "") + said


@dataclass(frozen=True)
class ClassInfo:
    """What a root-cause class means for whoever reads the receipt."""

    severity: str
    insurance_claim_eligible: bool
    mitigation: str

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {', '.join(SEVERITIES)}, not {self.severity!r}")


def record(classification: str, info: ClassInfo, answer: Answer, context: dict[str, Any]) -> dict[str, Any]:
    """The root-cause record of a failed operation (the ``rca`` of its ``*.failed`` receipt)."""
    return {"classification": classification, "root_cause": answer.describe(), "context": dict(context),
            "mitigation": info.mitigation, "severity": info.severity,
            "insurance_claim_eligible": info.insurance_claim_eligible}


SHUTDOWN = ClassInfo("low", False, "repeat the request with the same key (Idempotency-Key or work_id): any instance "
                                   "takes the operation over and the outside party sees the same Idempotency-Key")


def shutdown_record(party: str, context: dict[str, Any]) -> dict[str, Any]:
    """The root-cause record of an operation interrupted by the daemon's stop (SIGTERM, docs/specification.md §11):
    not a failure of the outside party, and not final (the ``*.interrupted`` receipt leaves the
    operation open for whoever repeats it)."""
    return {"classification": "shutdown",
            "root_cause": f"the instance was stopped (SIGTERM) while waiting on the {party}",
            "context": dict(context), "mitigation": SHUTDOWN.mitigation, "severity": SHUTDOWN.severity,
            "insurance_claim_eligible": SHUTDOWN.insurance_claim_eligible}
