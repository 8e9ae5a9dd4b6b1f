"""The gateway's errors and the one place that decides which HTTP status an error class gets.

Every refusal leaves as docs/specification.md §7's body ``{"error": {"code", "message", "detail"}, "request_id"}``.
Runtime and actor errors arrive rebuilt as their :class:`~tai_autonomics.errors.TaiError` classes;
mapping the classes here (and nowhere else) keeps a new actor refusal from turning into a 500 by
accident: a class the table does not name (nor any of its bases) is a deliberate "no" from domain
logic, so it answers 422. The gateway's own refusals (authentication, parsing, routing) are
:class:`ApiError` s raised with their status.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from starlette.responses import Response

from tai_autonomics import logs
from tai_autonomics.actors.operation_api import (
    Draining,
    IdempotencyKeyReused,
    NotFound,
    OperationInterrupted,
    WorkConflict,
)
from tai_autonomics.errors import Conflict, HttpError, InvalidRequest, TaiError
from tai_autonomics.ledger.errors import ConflictError, LedgerBusy, NotFoundError, StoreError
from tai_autonomics.ledger.operations import CoverageExceeded
from tai_autonomics.operations.mode import InsuranceNotVerified, ModeNotReadOnly, ModeRefusal
from tai_autonomics.runtime.errors import CallError, UnknownMessage
from tai_autonomics.trust.errors import CertValidityTooShort
from tai_autonomics.trust.insurer_errors import RateLimitedError

log = logging.getLogger("tai_autonomics.gateway")

REFUSAL_STATUS = 422

#: "the actor could not answer now" (the runtime's call failures, and a ledger whose store failed):
#: 503, a retry may succeed. Their message or detail may carry internals (exception text, file
#: paths), so the client gets only the code, the actor and the message type; the rest goes to the log.
UNAVAILABLE: frozenset[type[TaiError]] = frozenset({CallError, StoreError, LedgerBusy})

#: error class → HTTP status. An error takes the entry of the first class of its MRO listed here
#: (so a subclass answers as its base unless listed itself); none listed: :data:`REFUSAL_STATUS`.
STATUS_BY_CLASS: dict[type[TaiError], int] = {
    InvalidRequest: 400,  # PricingError (invalid_metrics) too
    NotFound: 404,
    NotFoundError: 404,
    Conflict: 409,
    ConflictError: 409,
    CoverageExceeded: 409,
    IdempotencyKeyReused: 409,
    WorkConflict: 409,
    RateLimitedError: 429,
    ModeRefusal: 503,
    InsuranceNotVerified: 503,
    ModeNotReadOnly: REFUSAL_STATUS,  # the operator's resume when there is nothing to resume
    CertValidityTooShort: 503,  # the daemon's certificate, not the request: clears on renewal
    Draining: 503,
    OperationInterrupted: 503,  # resumable: the same key on any instance finishes it
    UnknownMessage: REFUSAL_STATUS,  # the caller's mistake, not the actor's state
    **{cls: 503 for cls in UNAVAILABLE},
}


def _entry(error: TaiError) -> type[TaiError] | None:
    """The class of ``error``'s MRO that decides its status (None: a refusal no entry covers)."""
    return next((cls for cls in type(error).__mro__ if cls in STATUS_BY_CLASS), None)


def status_of(error: TaiError) -> int:
    """The HTTP status an actor call's error answers with."""
    entry = _entry(error)
    return REFUSAL_STATUS if entry is None else STATUS_BY_CLASS[entry]


ApiError = HttpError  # refusals answered with the shared error body


def from_actor_error(error: TaiError, actor: str, msg_type: str) -> ApiError:
    """The HTTP answer for an actor call that did not produce a result.

    A runtime failure (crash, timeout, no such actor) answers 503 with its code but only names
    the actor and message type: the exception text stays in the daemon's log. An actor's own
    refusal is passed on as it is, since it was written for the caller.
    """
    if _entry(error) in UNAVAILABLE:
        logs.event(log, "actor call failed", logging.WARNING, event="actor_call_failed", code=error.code,
                   actor=actor, message_type=msg_type, reason=error.message)
        return ApiError(503, error.code, f"{actor} could not answer {msg_type!r} now ({error.code}); retry later",
                        {"actor": actor, "message_type": msg_type}, headers={"Retry-After": "1"})
    detail = {k: v for k, v in error.detail.items() if k != "exception"}  # the runtime adds the class name
    status = status_of(error)
    headers = {"Retry-After": "1"} if status == 503 else None  # the daemon's state: it may clear
    return ApiError(status, error.code, error.message, _json_safe(detail), headers=headers)


def error_response(error: ApiError, request_id: str) -> Response:
    body = {"error": {"code": error.code, "message": error.message, "detail": error.detail},
            "request_id": request_id}
    return json_response(body, error.status, headers=error.headers)


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """Compact JSON; the caller has made sure ``body`` is JSON (see :func:`encode_reply`)."""
    return Response(json.dumps(body, separators=(",", ":"), allow_nan=False).encode(), status,
                    headers=headers, media_type="application/json")


def encode_reply(value: Any, actor: str, msg_type: str) -> Response:
    """An actor's reply as a 200 JSON response; 502 if it is not JSON (never a repr of it)."""
    try:
        return json_response(value)
    except (TypeError, ValueError):
        raise ApiError(502, "invalid_actor_reply", f"{actor} answered {msg_type!r} with a value that is not JSON",
                       {"actor": actor, "message_type": msg_type}) from None


def _json_safe(detail: dict[str, Any]) -> dict[str, Any]:
    try:
        json.dumps(detail, allow_nan=False)
    except (TypeError, ValueError):
        return {}
    return detail
