"""Faults the sandbox injects on demand, per endpoint.

A :class:`Fault` names a ``kind``, the endpoints it applies to (an ``fnmatch`` pattern over
endpoint names such as ``insurer.policy_status``, ``insurer.*`` or ``*``), a ``probability``
(an error *rate*; draws come from one seeded RNG, so a run is reproducible) and optionally how
many ``times`` it fires before it expires. Faults come from the admin API (JSON, the shape of
:meth:`Fault.to_dict`) or from ``--fault`` flags (:func:`parse_fault_arg`).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import random
import threading
from dataclasses import dataclass
from typing import Any

from tai_autonomics.errors import TaiError
from tai_autonomics.validation import is_int, is_number, loads_json, why_not_json

#: classification → HTTP status the sandbox answers a ``reject`` fault with.
REJECTION_STATUS: dict[str, int] = {
    # customer deploy endpoint (docs/specification.md §6 Acquisition RCA classes an endpoint can report)
    "authentication_error": 401,
    "insufficient_permissions": 403,
    "resource_quota_exceeded": 409,
    "sku_not_supported": 422,
    # marketplace (docs/specification.md §6 Publisher RCA classes)
    "artifacts_validation_failed": 422,
    "storage_upload_failed": 500,
    "metadata_registration_failed": 500,
    "permission_denied": 403,
    "other": 500,
}

KINDS = (
    "latency",  # delay_s added before the request is handled
    "error",  # answer `status` (5xx) instead of handling; use probability as the error rate
    "outage",  # 503 (with Retry-After if retry_after_s), or mode "drop": connection closed mid-response
    "rate_limit",  # 429 with Retry-After: retry_after_s
    "timeout",  # hang for delay_s (or until the client gives up), then 504
    "expired_certificate",  # insurer issues a certificate whose validity already ended
    "revoked_certificate",  # insurer issues a certificate and revokes it at once
    "bad_signature",  # insurer response signature: mode corrupt | missing | unknown_key
    "reject",  # answer the error `classification` with its status (REJECTION_STATUS)
)

_MODES = {"outage": ("status", "drop"), "bad_signature": ("corrupt", "missing", "unknown_key")}
_DEFAULTS: dict[str, dict[str, Any]] = {
    "latency": {"delay_s": 0.1},
    "error": {"status": 500},
    "outage": {"mode": "status", "retry_after_s": None},
    "rate_limit": {"retry_after_s": 1.0},
    "timeout": {"delay_s": 60.0},
    "bad_signature": {"mode": "corrupt"},
    "reject": {"classification": "other"},
}
_MAX_DELAY_S = 3600.0


class FaultConfigError(TaiError):
    """A fault description is invalid (unknown kind, field, or value out of range)."""

    code = "sandbox_fault_invalid"


@dataclass(frozen=True)
class Fault:
    kind: str
    endpoint: str = "*"
    probability: float = 1.0
    times: int | None = None
    delay_s: float | None = None
    status: int | None = None
    retry_after_s: float | None = None
    mode: str | None = None
    classification: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.kind, str) or self.kind not in KINDS:
            raise FaultConfigError(f"unknown fault kind {self.kind!r}", detail={"kinds": list(KINDS)})
        for name, value in _DEFAULTS.get(self.kind, {}).items():
            if getattr(self, name) is None and value is not None:
                object.__setattr__(self, name, value)
        _check(isinstance(self.endpoint, str) and 0 < len(self.endpoint) <= 200, "endpoint", "a non-empty pattern")
        _check(is_number(self.probability) and 0.0 <= self.probability <= 1.0, "probability", "between 0 and 1")
        _check(
            self.times is None or (is_int(self.times) and self.times >= 1), "times", "an integer >= 1 or null"
        )
        for name in ("delay_s", "retry_after_s"):
            value = getattr(self, name)
            _check(value is None or (is_number(value) and 0.0 <= value <= _MAX_DELAY_S), name, "0..3600 seconds")
        if self.kind == "error":
            _check(is_int(self.status) and 500 <= self.status <= 599, "status", "an HTTP 5xx status")
        if self.kind in _MODES:
            modes = _MODES[self.kind]
            _check(isinstance(self.mode, str) and self.mode in modes, "mode", " or ".join(modes))
        if self.kind == "reject":
            _check(isinstance(self.classification, str) and self.classification in REJECTION_STATUS,
                   "classification", ", ".join(REJECTION_STATUS))
        allowed = {"kind", "endpoint", "probability", "times", *_DEFAULTS.get(self.kind, {})}
        for field in dataclasses.fields(self):
            if field.name not in allowed and getattr(self, field.name) is not None:
                raise FaultConfigError(
                    f"field {field.name!r} does not apply to fault kind {self.kind!r}",
                    detail={"field": field.name, "kind": self.kind},
                )

    @classmethod
    def from_dict(cls, data: Any) -> Fault:
        if not isinstance(data, dict):
            raise FaultConfigError("a fault must be a JSON object")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise FaultConfigError(f"unknown fault field(s): {', '.join(map(str, unknown))}",
                                   detail={"fields": unknown})
        if "kind" not in data:
            raise FaultConfigError("a fault needs a 'kind'", detail={"kinds": list(KINDS)})
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    def applies_to(self, endpoint: str) -> bool:
        return fnmatch.fnmatchcase(endpoint, self.endpoint)


def _check(ok: bool, field: str, expected: str) -> None:
    if not ok:
        raise FaultConfigError(f"fault field {field!r} must be {expected}", detail={"field": field})


def parse_fault_arg(text: str) -> Fault:
    """Parse a ``--fault`` flag: ``KIND[@ENDPOINT][:key=value,...]`` or a JSON object.

    Examples: ``latency@insurer.*:delay_s=0.5``, ``error@customer.deploy:probability=0.3,status=502``,
    ``rate_limit@insurer.policy_status:retry_after_s=2,times=3``.
    """
    text = text.strip()
    if text.startswith("{"):
        try:
            return Fault.from_dict(loads_json(text))
        except (ValueError, RecursionError) as exc:
            raise FaultConfigError(f"fault JSON is malformed: {why_not_json(exc)}") from None
    head, _, params = text.partition(":")
    kind, _, endpoint = head.partition("@")
    data: dict[str, Any] = {"kind": kind}
    if endpoint:
        data["endpoint"] = endpoint
    for item in filter(None, params.split(",")):
        key, sep, raw = item.partition("=")
        if not sep:
            raise FaultConfigError(f"fault parameter {item!r} is not key=value")
        data[key.strip()] = _parse_value(raw.strip())
    return Fault.from_dict(data)


def format_fault_arg(fault: Fault) -> str:
    """The ``--fault`` form of ``fault`` (inverse of :func:`parse_fault_arg`)."""
    params = {k: v for k, v in fault.to_dict().items() if k not in ("kind", "endpoint")}
    text = f"{fault.kind}@{fault.endpoint}"
    if params:
        text += ":" + ",".join(f"{k}={json.dumps(v)}" for k, v in params.items())
    return text


def _parse_value(raw: str) -> Any:
    try:
        return loads_json(raw)
    except (ValueError, RecursionError):
        return raw


class FaultInjector:
    """The active faults and the seeded RNG that decides whether a probabilistic one fires."""

    def __init__(self, faults: list[Fault] | tuple[Fault, ...] = (), seed: int = 0) -> None:
        self._lock = threading.Lock()
        self._next_id = 1
        self._faults: dict[str, tuple[Fault, int | None]] = {}
        self.seed = seed
        self._rng = random.Random(seed)
        for fault in faults:
            self.add(fault)

    def add(self, fault: Fault) -> str:
        with self._lock:
            fault_id = f"f{self._next_id}"
            self._next_id += 1
            self._faults[fault_id] = (fault, fault.times)
            return fault_id

    def remove(self, fault_id: str) -> bool:
        with self._lock:
            return self._faults.pop(fault_id, None) is not None

    def replace(self, faults: list[Fault], seed: int | None = None) -> list[str]:
        with self._lock:
            self._faults.clear()
            if seed is not None:
                self.seed = seed
            self._rng = random.Random(self.seed)
        return [self.add(fault) for fault in faults]

    def clear(self) -> None:
        self.replace([])

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "seed": self.seed,
                "faults": [
                    {"id": fault_id, "remaining": remaining, **fault.to_dict()}
                    for fault_id, (fault, remaining) in self._faults.items()
                ],
            }

    def draw(self, endpoint: str) -> list[Fault]:
        """The faults that fire for one request to ``endpoint``, in the order they were added."""
        fired: list[Fault] = []
        with self._lock:
            for fault_id, (fault, remaining) in list(self._faults.items()):
                if not fault.applies_to(endpoint):
                    continue
                if fault.probability < 1.0 and self._rng.random() >= fault.probability:
                    continue
                fired.append(fault)
                if remaining is not None:
                    if remaining <= 1:
                        del self._faults[fault_id]
                    else:
                        self._faults[fault_id] = (fault, remaining - 1)
        return fired
