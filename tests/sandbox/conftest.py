"""Fixtures: one sandbox per module on 127.0.0.1 (reset before each test) and the OpenAPI contracts."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from importlib import resources
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from tai_autonomics.sandbox import SandboxServer

BASE = "https://contracts.tai.invalid/openapi/"
DOC_NAMES = ("insurer", "marketplace", "customer", "admin")


def load_docs() -> dict[str, dict[str, Any]]:
    folder = resources.files("tai_autonomics.sandbox") / "openapi"
    return {name: json.loads((folder / f"{name}.json").read_text()) for name in DOC_NAMES}


class Contract:
    """Validates requests and responses against the OpenAPI documents (JSON Schema 2020-12, OpenAPI 3.1)."""

    def __init__(self) -> None:
        self.docs = load_docs()
        self.registry = Registry().with_resources(
            (BASE + f"{name}.json", Resource.from_contents(doc, default_specification=DRAFT202012))
            for name, doc in self.docs.items()
        )

    def doc_for(self, template: str) -> str:
        for name, doc in self.docs.items():
            if template in doc["paths"]:
                return name
        raise AssertionError(f"{template} is in no OpenAPI document")

    def _validator(self, pointer: list[str]) -> Draft202012Validator:
        ref = "/".join(p.replace("~", "~0").replace("/", "~1") for p in pointer[1:])
        return Draft202012Validator({"$ref": f"{BASE}{pointer[0]}.json#/{ref}"}, registry=self.registry)

    def request_errors(self, method: str, template: str, body: Any) -> list[str]:
        name = self.doc_for(template)
        pointer = [name, "paths", template, method.lower(), "requestBody", "content", "application/json", "schema"]
        return [e.message for e in self._validator(pointer).iter_errors(body)]

    def check_response(self, method: str, template: str, response: httpx.Response) -> None:
        name = self.doc_for(template)
        operation = self.docs[name]["paths"][template][method.lower()]
        status = str(response.status_code)
        key = status if status in operation["responses"] else f"{status[0]}XX"
        assert key in operation["responses"], f"{method} {template} answered undocumented {status}: {response.text}"
        documented = operation["responses"][key]
        if "content" not in documented:
            assert response.content == b""
            return
        assert response.headers["content-type"].startswith("application/json")
        pointer = [name, "paths", template, method.lower(), "responses", key, "content", "application/json", "schema"]
        errors = [e.message for e in self._validator(pointer).iter_errors(response.json())]
        assert not errors, f"{method} {template} {status} does not match the contract: {errors}: {response.text}"
        for header in documented.get("headers", {}):
            if header.startswith("X-Insurer"):
                assert header in response.headers, f"{header} missing on {method} {template} {status}"


@pytest.fixture(scope="session", autouse=True)
def no_sandbox_left_behind() -> Iterator[None]:
    yield
    assert not [t.name for t in threading.enumerate() if t.name.startswith("sandbox-")], "a sandbox thread is left"


@pytest.fixture(scope="session")
def contract() -> Contract:
    return Contract()


@pytest.fixture
def http(sandbox: SandboxServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sandbox.url, timeout=10) as client:
        yield client
