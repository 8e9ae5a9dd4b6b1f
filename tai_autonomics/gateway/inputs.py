"""Reading what a client sent — query, path and JSON body — strictly, into 4xx errors.

Everything a route reads goes through here, so "bad input gets a clear, specific error and
changes nothing" (docs/specification.md §8) holds for every route at once: unknown or repeated query parameters,
a non-JSON content type (415), an oversized body (413, counted while it streams, not after),
malformed JSON, duplicate keys, NaN, and anything but an object (400).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from starlette.requests import ClientDisconnect, Request

from tai_autonomics.gateway.errors import ApiError
from tai_autonomics.validation import is_int, loads_json, why_not_json

MAX_INT = 2**63 - 1


@dataclass(frozen=True)
class Param:
    """A query or path parameter: an integer in [minimum, maximum], or a string matching ``pattern``."""

    kind: type = str
    required: bool = False
    minimum: int = 0
    maximum: int = MAX_INT
    pattern: str = r"[A-Za-z0-9._:-]{1,128}"
    default: Any = None
    segments: bool = False  # a path parameter that spans segments (slashes), e.g. a tile path

    def parse(self, name: str, raw: str) -> Any:
        if self.kind is int:
            if not re.fullmatch(r"[0-9]{1,19}", raw) or not self.minimum <= int(raw) <= self.maximum:
                raise _invalid(name, f"an integer from {self.minimum} to {self.maximum}")
            return int(raw)
        if not re.fullmatch(self.pattern, raw):
            raise _invalid(name, f"a string matching {self.pattern}")
        return raw


def _invalid(name: str, expected: str) -> ApiError:
    return ApiError(400, "invalid_request", f"{name!r} must be {expected}", {"field": name})


def query(request: Request, params: Mapping[str, Param]) -> dict[str, Any]:
    """The query parameters ``params`` declares (defaults filled in); anything else is a 400."""
    items = request.query_params.multi_items()
    names = [name for name, _ in items]
    unknown = sorted(set(names) - set(params))
    if unknown:
        raise ApiError(400, "invalid_request", f"unknown query parameter(s): {', '.join(unknown)}",
                       {"fields": unknown})
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ApiError(400, "invalid_request", f"query parameter(s) given more than once: {', '.join(repeated)}",
                       {"fields": repeated})
    given = dict(items)
    values = {}
    for name, param in params.items():
        if name in given:
            values[name] = param.parse(name, given[name])
        elif param.required:
            raise ApiError(400, "invalid_request", f"query parameter {name!r} is required", {"field": name})
        else:
            values[name] = param.default
    return values


def path(request: Request, params: Mapping[str, Param]) -> dict[str, Any]:
    return {name: param.parse(name, request.path_params[name]) for name, param in params.items()}


async def json_object(request: Request, max_bytes: int) -> dict[str, Any]:
    """The body as a JSON object, read at most ``max_bytes`` far."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "application/json":
        raise ApiError(415, "unsupported_media_type", "the request body must be application/json",
                       {"content_type": media[:100]})
    too_large = ApiError(413, "body_too_large", f"the request body exceeds {max_bytes} bytes",
                         {"max_bytes": max_bytes})
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise too_large
    raw = bytearray()
    try:
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > max_bytes:
                raise too_large
    except ClientDisconnect:
        raise ApiError(400, "invalid_request", "the client went away before sending the whole body") from None
    try:
        data = loads_json(raw.decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ApiError(400, "malformed_json", f"the request body is not valid JSON: {why_not_json(exc)}") from None
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_request", "the request body must be a JSON object")
    return data


def fields(body: Mapping[str, Any], required: Mapping[str, type], optional: Mapping[str, type] | None = None) -> None:
    """Check a body's members: each required one present with its type, nothing unknown."""
    optional = optional or {}
    unknown = sorted(set(body) - set(required) - set(optional))
    if unknown:
        raise ApiError(400, "invalid_request", f"unknown field(s): {', '.join(unknown)}", {"fields": unknown})
    for name, kind in {**required, **optional}.items():
        if name in required and name not in body:
            raise ApiError(400, "invalid_request", f"field {name!r} is required", {"field": name})
        if name in body and kind is not object and not _of_type(body[name], kind):
            raise _invalid(name, f"of JSON type {_JSON_TYPES.get(kind, kind.__name__)}")


_JSON_TYPES = {str: "string", int: "integer", dict: "object", list: "array", bool: "boolean"}


def _of_type(value: Any, kind: type) -> bool:
    """``isinstance``, except that a bool is not an integer (JSON's ``true`` is not ``1``)."""
    return is_int(value) if kind is int else isinstance(value, kind)
