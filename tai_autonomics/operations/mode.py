"""The mode state machine of docs/specification.md §2: ``eval``, ``prod``, ``read_only``, ``draining``.

Pure: the ProdMode actor feeds it what CertManager and InsuranceClient report and records each
returned :class:`Transition` as a ``mode.changed`` receipt. Keeping the rules here means one
place answers "may this operation run now?" and a property test checks every path.

```
eval ──(configured)                      prod ⇄ read_only   (insurance lost / confirmed,
prod ──insurance lost──▶ read_only              or manual resume when manual_resume = true)
prod ──ledger unavailable──▶ read_only   (the disk refuses writes; back once it takes them again)
any  ──drain──▶ draining (final)
```

``read_only`` has two independent causes, insurance and the ledger's disk; it is left only
when neither holds any more. A production start without verified insurance is refused before
the machine starts (ProdMode fails its start), so :meth:`ModeMachine.start` only decides.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from tai_autonomics.errors import TaiError
from tai_autonomics.ledger.errors import StoreUnavailable

Mode = Literal["eval", "prod", "read_only", "draining"]
Configured = Literal["eval", "prod"]
EVAL: Final = "eval"
PROD: Final = "prod"
READ_ONLY: Final = "read_only"
DRAINING: Final = "draining"
MODES: tuple[Mode, ...] = (EVAL, PROD, READ_ONLY, DRAINING)

OperationClass = Literal["write", "read", "pricing"]
"""Operation classes: deploy/publish are writes; receipts and proofs are reads."""
WRITE: Final = "write"
READ: Final = "read"
PRICING: Final = "pricing"


class ModeRefusal(TaiError):
    """The operation is not allowed in the current mode (HTTP 503 for writes, with the reason)."""

    code = "mode_refused"


class InsuranceNotVerified(ModeRefusal):
    """Production start (or an operator's resume) without verified insurance: refused, one clear
    line saying why."""

    code = "insurance_not_verified"


class ModeNotReadOnly(ModeRefusal):
    """``mode resume`` when the mode is not ``read_only``: there is nothing to resume."""

    code = "mode_not_read_only"


@dataclass(frozen=True)
class Transition:
    previous: Mode | Literal[""]  # "": the first mode, decided at the start
    mode: Mode
    reason: str

    def to_payload(self) -> dict[str, str]:
        return {"from": self.previous, "to": self.mode, "reason": self.reason}


class ModeMachine:
    def __init__(self, configured: str, *, manual_resume: bool = False) -> None:
        if configured not in (EVAL, PROD):
            raise ValueError(f"configured mode must be eval or prod, not {configured!r}")
        self.configured: Configured = PROD if configured == PROD else EVAL
        self.manual_resume = manual_resume
        self.mode: Mode | Literal[""] = ""  # "": not started
        self.reason = "starting"
        self.insurance_ok = True  # as last reported; read_only lasts while it is False...
        self.ledger_down: str | None = None  # ...or while the ledger's store refuses writes (why)

    def start(self, reason: str) -> Transition:
        """The first mode, the configured one (prod once its certificate and policy are verified)."""
        return self._to(self.configured, reason)

    def insurance_lost(self, reason: str) -> Transition | None:
        self.insurance_ok = False
        return self._to(READ_ONLY, reason) if self.mode == PROD else None

    def insurance_confirmed(self) -> Transition | None:
        self.insurance_ok = True
        if self.mode == READ_ONLY and not self.manual_resume and self.ledger_down is None:
            return self._to(PROD, "insurance verified again")
        return None

    def ledger_lost(self, reason: str) -> Transition | None:
        """The ledger cannot store receipts (disk full, read-only): no write may run, since none
        could be recorded."""
        self.ledger_down = reason
        return self._to(READ_ONLY, reason) if self.mode == PROD else None

    def ledger_back(self) -> Transition | None:
        """The ledger stored a receipt again: back to prod if insurance holds (and, as for
        insurance, only by an operator when manual_resume is set)."""
        if self.ledger_down is None:
            return None
        self.ledger_down = None
        if self.mode == READ_ONLY and self.insurance_ok and not self.manual_resume:
            return self._to(PROD, "the ledger stores receipts again")
        return None

    def resume(self, insurance_ok: bool) -> Transition:
        """An operator's ``mode resume``: only from read_only, only with insurance verified (a
        :class:`ModeRefusal`), only once the ledger stores again (:class:`StoreUnavailable`)."""
        if self.mode != READ_ONLY:
            raise ModeNotReadOnly(f"nothing to resume: mode is {self.mode}")
        if not insurance_ok:
            raise InsuranceNotVerified("cannot resume: insurance is still not verified")
        if self.ledger_down is not None:
            raise StoreUnavailable(f"cannot resume: the ledger cannot store receipts ({self.ledger_down})")
        self.insurance_ok = True
        return self._to(PROD, "resumed by operator")

    def drain(self) -> Transition | None:
        return self._to(DRAINING, "stopping") if self.mode != DRAINING else None

    def check(self, operation: OperationClass) -> None:
        """Raise :class:`ModeRefusal` unless ``operation`` (write/read/pricing) may run now."""
        check_mode(self.mode, self.reason, operation)

    def _to(self, mode: Mode, reason: str) -> Transition:
        transition = Transition(self.mode, mode, reason)
        self.mode, self.reason = mode, reason
        return transition


_ALLOWED: dict[str, frozenset[OperationClass]] = {
    EVAL: frozenset({READ, PRICING}), PROD: frozenset({READ, PRICING, WRITE}), READ_ONLY: frozenset({READ}),
    DRAINING: frozenset()}


def check_mode(mode: str, reason: str, operation: OperationClass) -> None:
    """Raise :class:`ModeRefusal` unless ``operation`` (write/read/pricing) may run in ``mode``
    (also where a pushed authority is checked, away from the machine: ``operations.authority``)."""
    if operation not in _ALLOWED.get(mode, frozenset()):
        raise ModeRefusal(f"{operation} refused in {mode or 'starting'} mode: {reason}",
                          detail={"mode": mode, "reason": reason, "operation": operation})
