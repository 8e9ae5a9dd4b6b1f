"""HTTP plumbing shared by the sandbox's parties: JSON errors, body and field checks, routes.

Every error leaves as docs/specification.md §7's shape ``{"error": {"code", "message", "detail"}, "request_id"}``
with a 4xx/5xx status; nothing raised while handling bad input reaches a client as a traceback.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal, TypeVar, overload

from starlette.requests import Request

from tai_autonomics.errors import HttpError
from tai_autonomics.sandbox.faults import REJECTION_STATUS
from tai_autonomics.validation import loads_json, why_not_json

MAX_BODY_BYTES = 16 * 1024 * 1024
KEPT_RECORDS = 20_000
"""How many records of each kind (deployments, works, artifacts, webhooks, idempotent replies) a
sandbox keeps, the oldest forgotten first. The dev daemon runs the sandbox for as long as it runs:
kept without bound, they grew its memory by about 300 MB an hour at 50 deploys/s (the issue-14
soak). An older deployment then answers 404, and an Idempotency-Key older than the window is a new
request, as with a real party's expiring keys."""

K = TypeVar("K")
V = TypeVar("V")


ApiError = HttpError  # refusals answered with the shared error body


def keep(records: dict[K, V], key: K, value: V, limit: int) -> None:
    """``records[key] = value``, then forget the oldest records beyond ``limit``."""
    records[key] = value
    while len(records) > limit:
        del records[next(iter(records))]


@dataclass
class Reply:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    #: send the status line and headers, then close the connection before the body is complete
    dropped: bool = False


@dataclass(frozen=True)
class Route:
    """One endpoint of an outside party: its path, method and the name faults address it by."""

    path: str
    method: str
    name: str
    handler: Callable[[Request, list], Awaitable[Reply]]
    #: fault kinds the handler applies itself (``reject`` otherwise answers before the handler runs)
    consumes: frozenset[str] = frozenset()


def rejection(classification: str) -> ApiError:
    """The error a ``reject`` fault answers with: the classification is the error code."""
    return ApiError(REJECTION_STATUS[classification], classification,
                    f"sandbox fault: the request is rejected as {classification}",
                    {"classification": classification})


def error_body(code: str, message: str, detail: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "detail": dict(detail or {})},
            "request_id": uuid.uuid4().hex}


def error_reply(err: ApiError) -> Reply:
    return Reply(err.status, error_body(err.code, err.message, err.detail), err.headers)


def encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":"), sort_keys=True).encode()


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


async def json_object(request: Request) -> dict[str, Any]:
    """The request body as a JSON object, or a 4xx ApiError saying what is wrong with it."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "application/json":
        raise ApiError(415, "unsupported_media_type", "the request body must be application/json",
                       {"content_type": media})
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise ApiError(413, "body_too_large", f"the request body exceeds {MAX_BODY_BYTES} bytes")
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        raise ApiError(413, "body_too_large", f"the request body exceeds {MAX_BODY_BYTES} bytes")
    try:
        data = loads_json(raw)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ApiError(400, "malformed_json", f"the request body is not valid JSON: {why_not_json(exc)}") from None
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_request", "the request body must be a JSON object")
    return data


def _invalid(name: str, expected: str) -> ApiError:
    return ApiError(400, "invalid_request", f"field {name!r} must be {expected}", {"field": name})


@overload
def text_field(body: dict[str, Any], name: str, *, pattern: str | None = None, max_len: int = 256,
               required: Literal[True] = True) -> str: ...
@overload
def text_field(body: dict[str, Any], name: str, *, pattern: str | None = None, max_len: int = 256,
               required: bool) -> str | None: ...
def text_field(body: dict[str, Any], name: str, *, pattern: str | None = None, max_len: int = 256,
               required: bool = True) -> str | None:
    """The string field ``name``; a missing one is None when not ``required`` (an error if it is)."""
    if name not in body and not required:
        return None
    value = body.get(name)
    if not isinstance(value, str) or not 0 < len(value) <= max_len:
        raise _invalid(name, f"a non-empty string of at most {max_len} characters")
    if pattern is not None and not re.fullmatch(pattern, value):
        raise _invalid(name, f"a string matching {pattern}")
    return value


def choice_field(body: dict[str, Any], name: str, choices: tuple[str, ...]) -> str:
    value = body.get(name)
    if value not in choices:
        raise _invalid(name, "one of " + ", ".join(choices))
    return value


def object_field(body: dict[str, Any], name: str) -> dict[str, Any]:
    value = body.get(name)
    if not isinstance(value, dict):
        raise _invalid(name, "a JSON object")
    return value


def no_other_fields(body: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise ApiError(400, "invalid_request", f"unknown field(s): {', '.join(unknown)}", {"fields": unknown})


def path_param(request: Request, name: str, pattern: str) -> str:
    value = request.path_params[name]
    if not re.fullmatch(pattern, value):
        raise ApiError(400, "invalid_request", f"path parameter {name!r} must match {pattern}", {"field": name})
    return value
