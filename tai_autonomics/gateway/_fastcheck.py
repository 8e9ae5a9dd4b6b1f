"""A quick yes for request bodies the OpenAPI schemas admit, before jsonschema is asked why not.

jsonschema's validator walks a body by building a validator object per sub-schema and resolving
``$ref`` through its registry on every call: about 140 µs of the gateway's ~225 µs of Python per
deploy here (docs/performance.md, "What a deploy costs"). fastjsonschema compiles a schema into
Python code once; a deploy body then takes about 5 µs. It implements Draft 7, not the Draft 2020-12
of our OpenAPI 3.1 document, so it is trusted only with schemas whose every keyword means the same
in both (:data:`SHARED_KEYWORDS`; ``enum`` of strings only, since Draft 7's code compares with
Python's ``==``, where ``True == 1``; ``items`` as one schema, not Draft 7's list; no ``$ref``
beside other assertions, which Draft 7 ignores),
and only to say yes: a body it refuses goes to jsonschema, whose first error is the one reported,
so refusals and their messages are jsonschema's. Where fastjsonschema is stricter (it asserts
``format`` and ``contentEncoding``, which Draft 2020-12 only annotates), the cost is a jsonschema
call, not a wrong answer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import fastjsonschema

Check = Callable[[Any], bool]

#: keywords with the same meaning in Draft 7 and Draft 2020-12 (annotations included)
SHARED_KEYWORDS = frozenset({
    "$ref", "type", "enum", "pattern", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
    "minLength", "maxLength", "required", "minProperties", "maxProperties", "properties",
    "additionalProperties", "items", "minItems", "maxItems", "oneOf", "anyOf", "allOf", "not",
    "description", "title", "examples", "default", "deprecated", "readOnly", "writeOnly", "format",
    "contentEncoding", "contentMediaType", "$comment",
})
_ANNOTATIONS = frozenset({"description", "title", "examples", "default", "deprecated", "readOnly", "writeOnly",
                          "format", "contentEncoding", "contentMediaType", "$comment"})


def compile_check(schema: dict[str, Any]) -> Check | None:
    """A function true only for instances ``schema`` admits (``$ref`` resolved within it, under
    ``components``), or None if the schema uses what fastjsonschema may read otherwise."""
    if not all(_shared(node) for node in _subschemas(schema)):
        return None
    validate = fastjsonschema.compile(schema)

    def check(body: Any) -> bool:
        try:
            validate(body)
        except fastjsonschema.JsonSchemaValueException:
            return False
        return True

    return check


def _shared(node: Any) -> bool:
    if isinstance(node, bool):
        return True
    if not isinstance(node, dict):
        return False
    keywords = set(node) - {"components"}
    if not keywords <= SHARED_KEYWORDS:
        return False
    if "$ref" in node and keywords - _ANNOTATIONS != {"$ref"}:
        return False
    if isinstance(node.get("items", {}), list):
        return False
    enum = node.get("enum", [])
    return isinstance(enum, list) and all(isinstance(each, str) for each in enum)


def _subschemas(node: Any, root: dict[str, Any] | None = None, seen: frozenset[str] = frozenset()) -> Iterator[Any]:
    """``node`` and every schema it reaches, through local ``$ref`` too (a cycle is not followed twice)."""
    root = node if root is None else root
    yield node
    if not isinstance(node, dict):
        return
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/") and ref not in seen:
        target: Any = root
        for part in ref[2:].split("/"):
            target = target.get(part.replace("~1", "/").replace("~0", "~")) if isinstance(target, dict) else None
        yield from _subschemas(target, root, seen | {ref})
    elif ref is not None and ref not in seen:
        yield None  # a reference outside the document: not for the quick check
    for name in ("additionalProperties", "items", "not"):
        if name in node:
            yield from _subschemas(node[name], root, seen)
    for name in ("oneOf", "anyOf", "allOf"):
        for each in node.get(name, []):
            yield from _subschemas(each, root, seen)
    for each in node.get("properties", {}).values():
        yield from _subschemas(each, root, seen)
