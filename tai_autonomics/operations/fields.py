"""Field checks shared by the operations' request validators: each failure names its field."""

from __future__ import annotations

import re
from typing import Any

from tai_autonomics.errors import InvalidRequest

IDENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")
"""Identifiers (SKU, account, region, work id): what the customer endpoint and marketplace accept."""


def fail(field: str, reason: str) -> InvalidRequest:
    return InvalidRequest(f"field {field!r} {reason}", detail={"field": field})


def an_object(value: Any, field: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise fail(field, "must be a JSON object")
    return value


def only_fields(body: dict[str, Any], required: tuple[str, ...], optional: tuple[str, ...] = (),
                where: str = "") -> None:
    """Refuse unknown fields and missing required ones (unknown first: a typo is the likelier cause)."""
    for name in body:
        if name not in required and name not in optional:
            raise fail(where + str(name), "is not a known field (expected " + ", ".join(required + optional) + ")")
    for name in required:
        if name not in body:
            raise fail(where + name, "is required")


def ident(body: dict[str, Any], name: str, where: str = "") -> str:
    value = body[name]
    if not isinstance(value, str) or not IDENT.fullmatch(value):
        raise fail(where + name, "must be 1-128 of A-Z a-z 0-9 _ . : - starting with a letter or digit")
    return value
