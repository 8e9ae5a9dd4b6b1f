"""The gateway's errors and the one place that decides which HTTP status a code gets.

Every refusal leaves as docs/specification.md §7's body ``{"error": {"code", "message", "detail"}, "request_id"}``.
Runtime and actor errors arrive as :class:`~tai_autonomics.errors.TaiError` codes; mapping them
here (and nowhere else) keeps a new actor refusal from turning into a 500 by accident: an
unknown refusal code is a deliberate "no" from domain logic, so it answers 422.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from starlette.responses import Response

from tai_autonomics import logs
from tai_autonomics.errors import HttpError, TaiError

log = logging.getLogger("tai_autonomics.gateway")

#: "the actor could not answer now" (the runtime's codes, and a ledger whose store failed): 503, a
#: retry may succeed. Their message or detail may carry internals (exception text, file paths), so
#: the client gets only the code, the actor and the message type; the rest goes to the log.
UNAVAILABLE_CODES = frozenset({"no_such_actor", "call_timeout", "actor_crashed", "actor_restarting", "call_failed",
                               "ledger_store_error", "ledger_store_corrupt", "ledger_busy",
                               "ledger_unavailable"})

#: actor refusal and runtime codes → HTTP status (anything else an actor refuses with: 422)
STATUS_BY_CODE: dict[str, int] = {
    "invalid_request": 400,
    "bad_request": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "ledger_not_found": 404,
    "conflict": 409,
    "ledger_conflict": 409,
    "already_exists": 409,
    "coverage_limit_exceeded": 409,
    "idempotency_key_reused": 409,
    "work_conflict": 409,
    "invalid_metrics": 400,
    "mode_refused": 503,
    "insurance_not_verified": 503,
    "cert_validity_too_short": 503,  # the daemon's certificate, not the request: clears on renewal
    "rate_limited": 429,
    "read_only": 503,
    "draining": 503,
    "operation_interrupted": 503,  # resumable: the same key on any instance finishes it
    **{code: 503 for code in UNAVAILABLE_CODES},
}
REFUSAL_STATUS = 422


ApiError = HttpError  # refusals answered with the shared error body


def from_actor_error(error: TaiError, actor: str, msg_type: str) -> ApiError:
    """The HTTP answer for an actor call that did not produce a result.

    A runtime failure (crash, timeout, no such actor) answers 503 with its code but only names
    the actor and message type: the exception text stays in the daemon's log. An actor's own
    refusal is passed on as it is, since it was written for the caller.
    """
    if error.code in UNAVAILABLE_CODES:
        logs.event(log, "actor call failed", logging.WARNING, event="actor_call_failed", code=error.code,
                   actor=actor, message_type=msg_type, reason=error.message)
        return ApiError(503, error.code, f"{actor} could not answer {msg_type!r} now ({error.code}); retry later",
                        {"actor": actor, "message_type": msg_type}, headers={"Retry-After": "1"})
    detail = {k: v for k, v in error.detail.items() if k != "exception"}  # the runtime adds the class name
    status = STATUS_BY_CODE.get(error.code, REFUSAL_STATUS)
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
