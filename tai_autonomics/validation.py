"""Checking values that come from outside — config files, actor args and payloads, HTTP bodies,
shell lines — in one place, as OTP's ``supervisor`` checks a child spec with its ``valid_*``
functions: each helper returns the value when it is acceptable and raises otherwise.

Written once so the rules hold everywhere at once: a bool is never a number (``True`` is an
``int`` to Python, ``1`` to nobody who wrote it), a number is finite (NaN and infinity are refused,
including ``1e999``, which Python reads as infinity), and JSON from outside has no duplicate keys
(which one would win is the parser's choice, not the sender's) and no ``NaN``/``Infinity`` words
(not JSON, though Python's ``json`` reads them).

Each ``valid_*`` helper raises :class:`~tai_autonomics.errors.InvalidRequest` naming the field
(``detail["field"]``) unless the caller passes ``error``, a function of the field's name and what
it must be, for the error class of its own place (a config file's :class:`ConfigError`, a route's
HTTP 400). A leaf module: it imports nothing of ours but the errors.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Callable
from typing import Any, NoReturn, TypeGuard

from tai_autonomics.errors import InvalidRequest

#: makes the exception for a refused value from the field's name and what the value must be
Refuse = Callable[[str, str], Exception]


def invalid_request(name: str, expected: str) -> InvalidRequest:
    """The default refusal: the caller must change the request; nothing was done."""
    return InvalidRequest(f"{name!r} must be {expected}", detail={"field": name})


def is_number(value: object) -> TypeGuard[int | float]:
    """A finite int or float, and not a bool (an int beyond a float's range is not finite either)."""
    if is_int(value):
        return -sys.float_info.max <= value <= sys.float_info.max  # exact: Python compares int and float exactly
    return isinstance(value, float) and math.isfinite(value)


def is_int(value: object) -> TypeGuard[int]:
    """An int, and not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def _range(minimum: float | None, maximum: float | None, above: float | None) -> str:
    low = f"above {above:g}" if above is not None else f"at least {minimum:g}" if minimum is not None else ""
    high = f"at most {maximum:g}" if maximum is not None else ""
    return " and ".join(part for part in (low, high) if part)


def _in_range(value: float, minimum: float | None, maximum: float | None, above: float | None) -> bool:
    return ((minimum is None or value >= minimum) and (maximum is None or value <= maximum)
            and (above is None or value > above))


def valid_number(value: object, name: str, *, minimum: float | None = None, maximum: float | None = None,
                 above: float | None = None, error: Refuse = invalid_request) -> float:
    """``value`` as a float: a finite number (not a bool) in the range, else ``error``."""
    if not is_number(value) or not _in_range(value, minimum, maximum, above):  # the value itself: exact
        bounds = _range(minimum, maximum, above)
        raise error(name, "a number" + (f" {bounds}" if bounds else ""))
    return float(value)


def valid_int(value: object, name: str, *, minimum: int | None = None, maximum: int | None = None,
              error: Refuse = invalid_request) -> int:
    """``value``: an integer (not a bool) in the range, else ``error``."""
    if not is_int(value) or not _in_range(value, minimum, maximum, None):
        bounds = _range(minimum, maximum, None)
        raise error(name, "an integer" + (f" {bounds}" if bounds else ""))
    return value


def valid_seconds(value: object, name: str, *, maximum: float | None = None, positive: bool = False,
                  error: Refuse = invalid_request) -> float:
    """A duration in seconds: a number from 0 (above 0 if ``positive``) to ``maximum``."""
    if positive:
        return valid_number(value, name, above=0, maximum=maximum, error=error)
    return valid_number(value, name, minimum=0, maximum=maximum, error=error)


def valid_string(value: object, name: str, *, pattern: str | None = None, max_len: int | None = None,
                 error: Refuse = invalid_request) -> str:
    """``value``: a string of at most ``max_len`` characters matching ``pattern`` (whole), else ``error``."""
    if not isinstance(value, str) or (max_len is not None and len(value) > max_len) \
            or (pattern is not None and not re.fullmatch(pattern, value)):
        expected = "a string" + (f" of at most {max_len} characters" if max_len is not None else "")
        raise error(name, expected + (f" matching {pattern}" if pattern is not None else ""))
    return value


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError("duplicate keys in an object")
    return dict(pairs)


def _no_constant(word: str) -> NoReturn:
    raise ValueError(f"{word} is not JSON")


def _finite(word: str) -> float:
    value = float(word)
    if not math.isfinite(value):
        raise ValueError(f"{word[:32]} is too large for a number")
    return value


def loads_json(text: str | bytes | bytearray) -> Any:
    """JSON from outside, strictly: no duplicate keys, no NaN/Infinity, no number too large to be finite.

    Raises ``ValueError`` (a :class:`json.JSONDecodeError`, :class:`UnicodeDecodeError` or a plain
    one for the checks above) or ``RecursionError``; :func:`why_not_json` says which in a line."""
    return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant, parse_float=_finite)


def why_not_json(exc: BaseException) -> str:
    """One line on why :func:`loads_json` refused a text, for the error a client sees."""
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at line {exc.lineno} column {exc.colno}"
    if isinstance(exc, UnicodeDecodeError):
        return "not UTF-8"
    return str(exc)[:200]
