"""The gateway's quick body check (fastjsonschema) agrees with jsonschema on every request schema of the OpenAPI
document: for valid bodies and for bodies changed one field at a time toward the edges of each
keyword (types, bool vs number, bounds, patterns, enums, required, unknown fields, oneOf)."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from tai_autonomics.gateway._fastcheck import compile_check
from tai_autonomics.gateway.context import openapi_document

DOC = json.loads(openapi_document())
VALID = {
    "ActorMessage": {"type": "status", "payload": {"any": ["json", 1, None]}},
    "DeploySpec": {"sku_id": "sku-001", "target_cloud": "gcp", "customer_ref": "acme", "customer_account": "acct-1",
                   "region": "europe-west1", "artifacts": {"image": "registry.example/app:1.0"}, "cost": 250},
    "PublishRequest": {"work_id": "w-1", "sku_id": "sku-001",
                       "artifacts": {"code": "c", "tests": "t", "docs": "d", "metadata": "m"}},
    "QuoteRequest": {"customer_id": "acme", "metrics": {"users": 120, "gb": 2.5}},
    "ContractEvent": {"event": "msa_signed", "date": "2026-01-31", "monthly_fee": "100.50", "month": "2026-01",
                      "amount": 3, "availability_pct": "99.95"},
}
EDGES = st.one_of(
    st.sampled_from([None, True, False, 0, -1, 1, 1.0, 2.5, -0.5, 100, 100.5, 1e9, 1e9 + 1, 1e12, 1e12 + 1, 10**13,
                     "", "x", "sku-001", "-bad", "a" * 129, "gcp", "GCP", "onprem", "1", "1.5", "1.123", "12.345",
                     "1234567890123", "12345678901234", "2026-01", "2026-01-31", "2026-1-31", "status", "msa_signed",
                     [], ["a"], {}, {"k": 1}, {"users": -1}, {"users": True}, {"users": "1"}]),
    st.integers(min_value=-10, max_value=10**13),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.dictionaries(st.text(max_size=8), st.integers() | st.text(max_size=8) | st.booleans(), max_size=3),
    st.lists(st.integers() | st.text(max_size=4), max_size=3),
)


def _schemas() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path, operations in DOC["paths"].items():
        for method, operation in operations.items():
            schema = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
            if schema is not None:
                found.append((f"{method.upper()} {path}", {**schema, "components": DOC["components"]}))
    return found


SCHEMAS = _schemas()


def _name(schema: dict[str, Any]) -> str:
    return schema["$ref"].rsplit("/", 1)[1]


@pytest.mark.parametrize("operation,schema", SCHEMAS, ids=[op for op, _ in SCHEMAS])
def test_every_request_schema_gets_a_quick_check_that_admits_its_valid_body(operation: str, schema: dict) -> None:
    quick = compile_check(schema)
    assert quick is not None, f"{operation}: the quick check no longer covers this schema"
    body = VALID[_name(schema)]
    assert Draft202012Validator(schema).is_valid(body) and quick(body)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_the_quick_check_agrees_with_jsonschema_on_changed_bodies(data: st.DataObject) -> None:
    operation, schema = data.draw(st.sampled_from(SCHEMAS))
    body = copy.deepcopy(VALID[_name(schema)])
    for _ in range(data.draw(st.integers(min_value=1, max_value=3))):
        target = body
        nested = [k for k, v in body.items() if isinstance(v, dict)]
        if nested and data.draw(st.booleans()):
            target = body[data.draw(st.sampled_from(sorted(nested)))]
        action = data.draw(st.sampled_from(["set", "delete", "add"]))
        if action == "delete" and target:
            del target[data.draw(st.sampled_from(sorted(target)))]
        elif action == "add":
            target[data.draw(st.sampled_from(["extra", "users", "payload", "cost", "month"]))] = data.draw(EDGES)
        elif target:
            target[data.draw(st.sampled_from(sorted(target)))] = data.draw(EDGES)
    if data.draw(st.integers(min_value=0, max_value=9)) == 0:
        body = data.draw(EDGES)  # not even an object
    expected = Draft202012Validator(schema).is_valid(body)
    assert compile_check(schema)(body) is expected, (operation, body)


def test_a_bool_is_not_a_number_and_an_integral_float_is_an_integer() -> None:
    number = compile_check({"type": "number"})
    integer = compile_check({"type": "integer"})
    assert number is not None and integer is not None
    assert [number(v) for v in (True, 1, 1.5)] == [False, True, True]
    assert [integer(v) for v in (False, 2, 2.0, 2.5)] == [False, True, True, False]


@pytest.mark.parametrize("schema", [
    {"type": "object", "dependentRequired": {"a": ["b"]}},  # Draft 2020-12 only: Draft 7 would ignore it
    {"prefixItems": [{"type": "string"}]},
    {"$ref": "#/components/schemas/n", "maxLength": 3, "components": {"schemas": {"n": {"type": "string"}}}},
    {"enum": [1, "one"]},  # Draft 7's code compares with ==, where True == 1
    {"items": [{"type": "string"}]},  # Draft 7's tuple form
    {"$ref": "#/components/schemas/n", "components": {"schemas": {"n": {"enum": [0, 5]}}}},  # False == 0
    {"$ref": "#/components/schemas/missing", "components": {"schemas": {}}},
    {"$ref": "https://example.invalid/schema.json"},
    {"properties": {"a": {"type": "object", "unevaluatedProperties": False}}},
    {"$ref": "#/components/schemas/n", "components": {"schemas": {"n": {"contains": {"type": "string"}}}}},
])
def test_a_schema_fastjsonschema_may_read_otherwise_gets_no_quick_check(schema: dict) -> None:
    assert compile_check(schema) is None


@pytest.mark.parametrize("name,change", [
    ("DeploySpec", {"cost": 0}), ("DeploySpec", {"cost": 1e12}), ("DeploySpec", {"cost": -0.01}),
    ("DeploySpec", {"cost": 1e12 + 1}), ("QuoteRequest", {"metrics": {"users": 0, "gb": 1e9}}),
    ("QuoteRequest", {"metrics": {"users": 1e9 + 1}}), ("ContractEvent", {"availability_pct": 0}),
    ("ContractEvent", {"availability_pct": 100}), ("ContractEvent", {"availability_pct": 100.001}),
])
def test_bounds_agree_with_jsonschema_at_the_edges(name: str, change: dict) -> None:
    schema = next(schema for _, schema in SCHEMAS if _name(schema) == name)
    body = {**VALID[name], **change}
    assert compile_check(schema)(body) is Draft202012Validator(schema).is_valid(body)
