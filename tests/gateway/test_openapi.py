"""The packaged OpenAPI document describes exactly the app: routes, methods, auth, inputs, errors."""

from __future__ import annotations

import json
from pathlib import Path

from openapi_spec_validator import validate
from starlette.routing import Route

from tai_autonomics.gateway import ROUTES, Gateway, create_app, openapi_document

DOC = json.loads(openapi_document())
ERROR_REF = {"$ref": "#/components/schemas/Error"}


def operations() -> dict[tuple[str, str], dict]:
    return {(path, method.upper()): op for path, item in DOC["paths"].items() for method, op in item.items()}


def test_the_document_is_valid_openapi_3_1() -> None:
    validate(DOC)
    assert DOC["openapi"].startswith("3.1")


def test_every_route_is_documented_and_nothing_else(gateway) -> None:
    declared = {(ep.path, ep.method) for ep in ROUTES}
    assert set(operations()) == declared
    app = create_app(Gateway(gateway.config, gateway.gateway.bridge)).app
    served = {(r.path.replace(":path}", "}"), m) for r in app.routes if isinstance(r, Route) for m in r.methods
              if m != "HEAD"}
    assert served == declared


def test_operations_match_the_route_table() -> None:
    ops = operations()
    for ep in ROUTES:
        op = ops[(ep.path, ep.method)]
        where = f"{ep.method} {ep.path}"
        assert op["operationId"] == ep.handler.__name__, where
        if ep.roles is None:
            assert op["security"] == [] and "x-roles" not in op, where
        else:
            assert op["security"] == [{"bearer": []}], where
            assert op["x-roles"] == sorted(ep.roles), where
            assert {"401", "403", "503"} <= set(op["responses"]), where
        # headers (Idempotency-Key) are documented for clients; the table checks what it parses
        params = {(p["in"], p["name"]): p["required"] for p in op.get("parameters", []) if p["in"] != "header"}
        expected = {("query", name): param.required for name, param in ep.query.items()}
        expected |= {("path", name): True for name in ep.path_params}
        assert params == expected, where
        if ep.query or ep.path_params:
            assert "400" in op["responses"], where
        assert ("requestBody" in op) == ep.body, where
        if ep.body:
            assert {"400", "413", "415"} <= set(op["responses"]), where


def test_every_error_response_is_the_error_body() -> None:
    components = DOC["components"]["responses"]
    for (path, method), op in operations().items():
        for status, response in op["responses"].items():
            if status.startswith(("4", "5")):
                name = response["$ref"].rsplit("/", 1)[1]
                assert components[name]["content"]["application/json"]["schema"] == ERROR_REF, (path, method, status)
    error = DOC["components"]["schemas"]["Error"]
    assert error["required"] == ["error", "request_id"]
    assert error["properties"]["error"]["required"] == ["code", "message", "detail"]


def test_the_route_table_in_docs_lists_every_route_with_its_roles() -> None:
    """docs/gateway.md is what an operator reads: a route added without its row fails here."""
    table = {}
    for line in (Path(__file__).resolve().parents[2] / "docs" / "gateway.md").read_text().splitlines():
        if line.startswith("| `") and line.count("|") == 3:
            route, roles = line.split("|")[1:3]
            method, path = route.strip().strip("`").split("`")[0].split()
            table[(method, path.split("?")[0])] = {r.strip() for r in roles.split(",")}
    expected = {(ep.method, ep.path): ({"none"} if ep.roles is None else {"any role"} if len(ep.roles) > 2
                                       else set(ep.roles)) for ep in ROUTES}
    assert table == expected
