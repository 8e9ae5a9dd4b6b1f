"""A quick yes for request bodies the OpenAPI schemas admit, before jsonschema is asked why not.

jsonschema's validator walks a body by building a validator object per sub-schema and resolving
``$ref`` through its registry on every call: about 140 µs of the gateway's ~225 µs of Python per
deploy here (docs/performance.md, "What a deploy costs"). :func:`compile_check` turns a schema
into plain closures (about 10 µs for a deploy body) for the keywords our request schemas use. It
only ever answers "valid" for a body jsonschema (Draft 2020-12, no format assertion) also
finds valid; whenever it answers "not valid" the caller asks jsonschema, whose first error is
the one reported, so refusals and their messages are jsonschema's. Each keyword's check is
exact (the same answer as jsonschema's for that keyword), so ``oneOf`` counts exactly too. A schema with any keyword
outside the subset gets no quick check (``None``) and is validated by jsonschema alone.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from numbers import Number
from typing import Any

Check = Callable[[Any], bool]

#: keywords that only annotate (Draft 2020-12 asserts none of them without a format checker)
_ANNOTATIONS = frozenset({"description", "title", "examples", "default", "deprecated", "readOnly", "writeOnly",
                          "format", "contentEncoding", "contentMediaType", "$comment"})
_TYPES: dict[str, Check] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "number": lambda v: isinstance(v, Number) and not isinstance(v, bool),
    "integer": lambda v: (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, float) and v.is_integer()),
}


class _Unsupported(Exception):
    """The schema uses something the quick check does not implement."""


def compile_check(schema: Any, root: dict[str, Any]) -> Check | None:
    """A function true only for instances ``schema`` admits (``$ref`` resolved in ``root``), or
    None if the schema uses a keyword this module does not implement."""
    try:
        return _compile(schema, root, set())
    except _Unsupported:
        return None


def _compile(schema: Any, root: dict[str, Any], resolving: set[str]) -> Check:
    if schema is True or schema == {}:
        return lambda _v: True
    if schema is False:
        return lambda _v: False
    if not isinstance(schema, dict):
        raise _Unsupported(schema)
    checks: list[Check] = []
    for keyword, value in schema.items():
        if keyword in _ANNOTATIONS or (keyword == "components" and schema is root):
            continue
        make = _KEYWORDS.get(keyword)
        if make is None:
            raise _Unsupported(keyword)
        checks.append(make(value, schema, root, resolving))
    if len(checks) == 1:
        return checks[0]
    return lambda v: all(check(v) for check in checks)


def _ref(value: Any, _schema: dict, root: dict[str, Any], resolving: set[str]) -> Check:
    if not isinstance(value, str) or not value.startswith("#/") or value in resolving:
        raise _Unsupported(value)  # only local, non-recursive references
    target: Any = root
    for part in value[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(target, dict) or part not in target:
            raise _Unsupported(value)
        target = target[part]
    return _compile(target, root, resolving | {value})


def _type(value: Any, *_: Any) -> Check:
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not all(name in _TYPES for name in names):
        raise _Unsupported(value)
    tests = [_TYPES[name] for name in names]
    return tests[0] if len(tests) == 1 else (lambda v: any(test(v) for test in tests))


def _enum(value: Any, *_: Any) -> Check:
    if not isinstance(value, list) or not all(isinstance(each, str) for each in value):
        raise _Unsupported(value)  # strings compare as jsonschema compares them; other values may not
    choices = frozenset(value)
    return lambda v: isinstance(v, str) and v in choices


def _pattern(value: Any, *_: Any) -> Check:
    search = re.compile(value).search
    return lambda v: not isinstance(v, str) or search(v) is not None


def _minimum(value: Any, *_: Any) -> Check:
    number = _TYPES["number"]
    return lambda v: not number(v) or not v < value


def _maximum(value: Any, *_: Any) -> Check:
    number = _TYPES["number"]
    return lambda v: not number(v) or not v > value


def _required(value: Any, *_: Any) -> Check:
    names = tuple(value)
    return lambda v: not isinstance(v, dict) or all(name in v for name in names)


def _max_properties(value: Any, *_: Any) -> Check:
    return lambda v: not isinstance(v, dict) or len(v) <= value


def _properties(value: Any, _schema: dict, root: dict[str, Any], resolving: set[str]) -> Check:
    checks = {name: _compile(sub, root, resolving) for name, sub in value.items()}
    return lambda v: not isinstance(v, dict) or all(check(v[name]) for name, check in checks.items() if name in v)


def _additional(value: Any, schema: dict, root: dict[str, Any], resolving: set[str]) -> Check:
    if "patternProperties" in schema:
        raise _Unsupported("patternProperties")
    known = frozenset(schema.get("properties", {}))
    if value is False:
        return lambda v: not isinstance(v, dict) or known.issuperset(v)
    check = _compile(value, root, resolving)
    return lambda v: not isinstance(v, dict) or all(check(item) for name, item in v.items() if name not in known)


def _items(value: Any, schema: dict, root: dict[str, Any], resolving: set[str]) -> Check:
    if "prefixItems" in schema:
        raise _Unsupported("prefixItems")
    check = _compile(value, root, resolving)
    return lambda v: not isinstance(v, list) or all(check(item) for item in v)


def _one_of(value: Any, _schema: dict, root: dict[str, Any], resolving: set[str]) -> Check:
    checks = [_compile(sub, root, resolving) for sub in value]
    return lambda v: sum(1 for check in checks if check(v)) == 1


_KEYWORDS: dict[str, Callable[[Any, dict, dict[str, Any], set[str]], Check]] = {
    "$ref": _ref, "type": _type, "enum": _enum, "pattern": _pattern, "minimum": _minimum, "maximum": _maximum,
    "required": _required, "maxProperties": _max_properties, "properties": _properties,
    "additionalProperties": _additional, "items": _items, "oneOf": _one_of,
}
