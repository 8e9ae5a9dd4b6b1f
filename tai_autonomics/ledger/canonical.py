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
from collections.abc import Iterable, Mapping
from typing import Any

import rfc8785

from tai_autonomics.ledger.errors import CanonicalJSONError

_SAFE_INT = 2**53 - 1


def canonical_json(value: Any) -> bytes:
    """The RFC 8785 canonical UTF-8 bytes of ``value`` (dicts, lists, str, int, float, bool, None)."""
    try:
        return rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, RecursionError) as exc:
        raise CanonicalJSONError(f"value has no canonical JSON form: {exc}") from None


def parse_json(text: str | bytes) -> Any:
    """Parse one JSON text strictly (I-JSON): UTF-8, no duplicate keys, no NaN/Infinity."""
    try:
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        return json.loads(
            text,
            object_pairs_hook=_unique_keys,
            parse_int=_parse_int,
            parse_constant=_reject_constant,
        )
    except CanonicalJSONError:
        raise
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise CanonicalJSONError(f"not valid JSON: {exc}") from None


def _parse_int(literal: str) -> int | float:
    number = int(literal)
    return number if -_SAFE_INT <= number <= _SAFE_INT else float(literal)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise CanonicalJSONError(f"not valid JSON: duplicate object key {dup!r}")
    return obj


def _reject_constant(name: str) -> Any:
    raise CanonicalJSONError(f"not valid JSON: {name} is not a JSON number")


def canonical_members(obj: Mapping[str, Any]) -> dict[str, bytes]:
    """The canonical ``"key":value`` bytes of each member of a JSON object.

    With :func:`join_members` this canonicalises an object's members once and assembles several
    objects from them — a receipt's hashed body and the whole receipt share all but four members,
    so sealing and verifying pay for one canonicalisation instead of two.
    """
    return {key: canonical_json(key) + b":" + canonical_json(value) for key, value in obj.items()}


def join_members(members: Mapping[str, bytes], keys: Iterable[str]) -> bytes:
    """The canonical object holding ``members[key]`` for ``keys``, sorted as RFC 8785 3.2.3 says
    (by the UTF-16 code units of the keys)."""
    return b"{" + b",".join(members[key] for key in sorted(keys, key=_utf16_order)) + b"}"


def _utf16_order(key: str) -> bytes:
    return key.encode("utf-16-be", "surrogatepass")
