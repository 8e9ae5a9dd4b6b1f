"""RFC 8785 (JSON Canonicalization Scheme) encoding and strict JSON parsing.

Receipt hashes and Merkle leaves are defined over the canonical form, so every byte we hash
comes from here. Encoding is delegated to the ``rfc8785`` package; this module adds what the
package leaves to its caller:

* JSON numbers are IEEE-754 doubles (RFC 8785 3.2.2.3, I-JSON). Python's ``json`` parses an
  integer literal beyond 2**53 into an exact ``int``, which ``rfc8785`` refuses; a JSON parser
  in JavaScript would read it as the nearest double. :func:`parse_json` does the same, so a
  text from another implementation canonicalises as that implementation would.
* Duplicate object keys, ``NaN`` and ``Infinity`` are rejected when parsing (I-JSON, RFC 7493),
  so two parties can never read one text as two different objects.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any

import orjson
import rfc8785

from tai_autonomics.ledger.errors import CanonicalJSONError

SAFE_INT = _SAFE_INT = 2**53 - 1  # the I-JSON integer range


def canonical_json(value: Any) -> bytes:
    """The RFC 8785 canonical UTF-8 bytes of ``value`` (dicts, lists, str, int, float, bool, None).

    ``rfc8785`` is the reference and handles every value; it is pure Python and took most of
    the time of sealing and verifying a receipt. Most values (receipts are strings, small
    integers and everyday floats) are serialised by the C ``json`` encoder exactly as RFC 8785
    says once integral floats are written as integers: :func:`_plain` makes that copy, or
    declines and the value goes to ``rfc8785``. A property test holds the two paths equal.
    """
    try:
        plain = _plain(value)
    except _NotPlain:
        return _reference(value)
    try:
        return _encode(plain).encode("utf-8")
    except UnicodeEncodeError:
        raise CanonicalJSONError("value has no canonical JSON form: a string holds a lone surrogate") from None


# One encoder object for every call (json.dumps builds one per call when given options)
_encode = json.JSONEncoder(ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode


def _reference(value: Any) -> bytes:
    try:
        return rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, RecursionError) as exc:
        raise CanonicalJSONError(f"value has no canonical JSON form: {exc}") from None


class _NotPlain(Exception):
    """The value needs the reference encoder."""


def _plain(value: Any) -> Any:
    """A copy of ``value`` that ``json.dumps(sort_keys=True)`` writes exactly as RFC 8785 does.

    Where the two agree: strings (same escapes; lone surrogates fail either way), ``int`` within
    the I-JSON range, floats that are integral and at most 2**53 in magnitude (RFC 8785 writes
    them as integers, so they become ``int``), non-integral floats with 1e-4 <= |x| < 1e16
    (Python's ``repr`` and ECMAScript both print the shortest round-trip digits in plain
    notation there), and objects whose keys are all in the Basic Multilingual Plane (sorting by
    code point is then sorting by UTF-16 code unit). Anything else raises :class:`_NotPlain`.
    """
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return value
    if kind is int:
        if -_SAFE_INT <= value <= _SAFE_INT:
            return value
        raise _NotPlain
    if kind is float:
        if value.is_integer():
            if abs(value) <= _SAFE_INT + 1:
                return int(value)
            raise _NotPlain
        if 1e-4 <= abs(value) < 1e16:
            return value
        raise _NotPlain
    if kind is dict:
        out = {}
        for key, item in value.items():
            if type(key) is not str or not (key.isascii() or max(key) <= "\uffff"):
                raise _NotPlain
            out[key] = _plain(item)
        return out
    if kind is list or kind is tuple:
        return [_plain(item) for item in value]
    raise _NotPlain


def parse_json(text: str | bytes) -> Any:
    """Parse one JSON text strictly (I-JSON): UTF-8, no duplicate keys, no NaN/Infinity."""
    try:
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        return _DECODER.decode(text)
    except CanonicalJSONError:
        raise
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise CanonicalJSONError(f"not valid JSON: {exc}") from None


def parse_json_plain(text: bytes | str) -> tuple[Any, bool]:
    """:func:`parse_json`, and whether the value is *plain*: every number in ``text`` is a safe
    integer or a non-integral float written as RFC 8785 writes it (``repr`` in 1e-4 <= |x| < 1e16)
    and no string or key lies outside the Basic Multilingual Plane (no UTF-8 lead byte of one, no
    ``\\ud...`` escape: checked conservatively), where code point order and RFC 8785's UTF-16
    order of keys can differ. Then :func:`dumps_plain` of the value, or of any part of it, is its
    RFC 8785 form: what verifying a stored receipt's hash needs, fast. Anything else (and any
    ``str``) is parsed by :func:`parse_json` and said not plain, so this raises exactly what
    :func:`parse_json` raises.

    A stored receipt is canonical text, and for that the compiled parser answers: when orjson
    writes back exactly the bytes it read, the text has no duplicate key, no whitespace and no
    escape RFC 8785 would not write, and its numbers are orjson's spelling, which is RFC 8785's
    but for integers beyond 2**53 (refused by ``OPT_STRICT_INTEGER``) and the floats
    :func:`_spelled_like_rfc8785` looks for.
    """
    if not isinstance(text, bytes):
        return parse_json(text), False
    if text.isascii() or not _ASTRAL.search(text):
        if _spelled_like_rfc8785(text):
            try:
                value = orjson.loads(text)
                if orjson.dumps(value, option=_ORJSON_CANONICAL) == text:
                    return value, True
            except (orjson.JSONDecodeError, orjson.JSONEncodeError):
                pass
        if not (b"\\u" in text and _SURROGATE_ESCAPE.search(text)):
            try:
                return _PLAIN_DECODER.decode(text.decode("utf-8")), True
            except _NotPlain:
                pass
            except Exception:  # noqa: BLE001 - parse_json below raises it in its own words
                pass
    return parse_json(text), False


def _spelled_like_rfc8785(text: bytes) -> bool:
    """False if ``text`` may hold a float that orjson and RFC 8785 spell differently: an integral
    one ("1.0", "-0.0", and "1e+16" to "9e+20", which RFC 8785 writes in full digits) or one
    below 1e-5 written "…e-6" (RFC 8785 writes those in decimals). Conservative: the same
    letters inside a string only cost the fast path. A property test holds orjson and
    ``rfc8785`` equal on every float this lets through."""
    if b".0" in text and (b".0," in text or b".0]" in text or b".0}" in text or text.endswith(b".0")):
        return False
    return not (b"e+" in text and (b"e+1" in text or b"e+20" in text)) and b"e-6" not in text


def dumps_plain(value: Any) -> bytes:
    """The RFC 8785 form of a value from :func:`parse_json_plain` that said it is plain (orjson
    writes such values exactly as RFC 8785 does; a property test holds it)."""
    try:
        return orjson.dumps(value, option=_ORJSON_CANONICAL)
    except orjson.JSONEncodeError as exc:
        raise CanonicalJSONError(f"value has no canonical JSON form: {exc}") from None


def _plain_int(literal: str) -> int:
    number = int(literal)
    if -_SAFE_INT <= number <= _SAFE_INT:
        return number
    raise _NotPlain


def _plain_float(literal: str) -> float:
    number = float(literal)
    if 1e-4 <= abs(number) < 1e16 and not number.is_integer() and repr(number) == literal:
        return number
    raise _NotPlain


def _parse_int(literal: str) -> int | float:
    number = int(literal)
    return number if -_SAFE_INT <= number <= _SAFE_INT else float(literal)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        counts = Counter(k for k, _ in pairs)
        dup = next(k for k, _ in pairs if counts[k] > 1)
        raise CanonicalJSONError(f"not valid JSON: duplicate object key {dup!r}")
    return obj


def _reject_constant(name: str) -> Any:
    raise CanonicalJSONError(f"not valid JSON: {name} is not a JSON number")


_DECODER = json.JSONDecoder(object_pairs_hook=_unique_keys, parse_int=_parse_int, parse_constant=_reject_constant)
_ASTRAL = re.compile(rb"[\xf0-\xff]")  # UTF-8 lead bytes of characters beyond the BMP (and invalid ones)
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")  # conservative: also after an escaped backslash
_ORJSON_CANONICAL = orjson.OPT_SORT_KEYS | orjson.OPT_STRICT_INTEGER
_PLAIN_DECODER = json.JSONDecoder(
    object_pairs_hook=_unique_keys, parse_int=_plain_int, parse_float=_plain_float, parse_constant=_reject_constant
)

