"""One multiprocess node, tree and gateway for the gateway tests (started once: actors are processes).

Tree: root → [ReceiptLedger (a fake with the ledger's calls), echo, ops → [worker]].
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from tai_autonomics.gateway import DEFAULT_ALLOWED, GatewayConfig, GatewayServer, openapi_document
from tai_autonomics.gateway.shell_client import ShellClient
from tai_autonomics.runtime import Node, NodeConfig, parse_tree
from tests.conftest import free_port
from tests.runtime.test_supervision import _zombie, wait_until

ECHO = "tests.runtime.actors:Echo"
OPERATION_ACTORS = ("ProdMode", "CertManager", "InsuranceClient", "Acquisition", "Publisher", "Pricing")
TOKENS = {"service": "service-token-0123456789", "auditor": "auditor-token-0123456789",
          "admin": "admin-token-0123456789"}
ALLOWED = {**DEFAULT_ALLOWED, "ReceiptLedger": (*DEFAULT_ALLOWED["ReceiptLedger"], "opaque", "overloaded",
                                                "conflicting", "refused", "broken_store"),
           "echo": ("echo", "crash", "refuse"), "worker": ("sleep", "echo")}
TREE = {"root": "root",
        "supervisors": {"root": {"intensity": 50, "period": 10, "children": ["ReceiptLedger", "echo", "ops"]},
                        "ops": {"intensity": 50, "period": 10, "children": ["worker", *OPERATION_ACTORS]}},
        "workers": {"ReceiptLedger": {"actor": "tests.gateway.actors:FakeLedger"},
                    "echo": {"actor": ECHO}, "worker": {"actor": "tests.gateway.actors:Worker"},
                    **{name: {"actor": "tests.gateway.actors:FakeOperations"} for name in OPERATION_ACTORS}}}


def config(**overrides) -> GatewayConfig:
    return GatewayConfig(**{"port": 0, "tokens": TOKENS, "allowed": ALLOWED, "call_timeout_s": 2.0,
                            "max_body_bytes": 8192, **overrides})


@pytest.fixture(scope="session")
def node() -> Iterator[Node]:
    with Node(NodeConfig(base="multiprocTCPBase", admin_port=free_port())) as n:
        n.start_tree(parse_tree(TREE))
        yield n
        pids = [n.call(name, "$info")["pid"] for name in ("root", "ReceiptLedger", "echo", "ops", "worker")]
    wait_until(lambda: all(not os.path.exists(f"/proc/{p}") or _zombie(p) for p in pids), what="actor processes gone")


@contextmanager
def serving(node: Node, **overrides: Any) -> Iterator[GatewayServer]:
    """A gateway on the shared node; on leaving, no thread of it is left and its port is closed."""
    threads = set(threading.enumerate())
    with GatewayServer(node, config(**overrides)) as server:
        yield server
    left = [t.name for t in set(threading.enumerate()) - threads if t.is_alive()]
    assert left == [], f"threads left behind by the gateway: {left}"
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.url}/healthz")


@pytest.fixture(scope="session")
def gateway(node: Node) -> Iterator[GatewayServer]:
    with serving(node) as server:
        yield server


@pytest.fixture(scope="session")
def http(gateway: GatewayServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway.url, timeout=10) as client:
        yield client


@pytest.fixture
def admin(gateway: GatewayServer) -> Iterator[ShellClient]:
    """A remote shell session as the admin."""
    with ShellClient(gateway.url, TOKENS["admin"]) as client:
        yield client


def recorded(node: Node) -> list[dict]:
    """What the fake ProdMode has recorded (each shell command's receipt)."""
    return node.call("ProdMode", "recorded")


def auth(role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[role]}"}


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> dict:
    """Our error body, with the status and (if given) the code; never a traceback."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error", "request_id"} and set(body["error"]) == {"code", "message", "detail"}, body
    assert body["request_id"] == response.headers["x-request-id"]
    assert "Traceback" not in response.text
    if code is not None:
        assert body["error"]["code"] == code, body
    return body


_DOC = "urn:tai-autonomics:gateway-openapi"


class Contract:
    """Checks live responses against the packaged OpenAPI document (JSON Schema 2020-12)."""

    def __init__(self) -> None:
        self.doc = json.loads(openapi_document())
        resource = Resource.from_contents(self.doc, default_specification=DRAFT202012)
        self.registry = Registry().with_resource(_DOC, resource)

    def check(self, template: str, method: str, response: httpx.Response) -> None:
        """The status is documented for the route, and the body matches its schema."""
        status = str(response.status_code)
        responses = self.doc["paths"][template][method.lower()]["responses"]
        assert status in responses, (template, method, response.status_code, response.text)
        where = ["paths", template, method.lower(), "responses", status]
        if "$ref" in responses[status]:
            where = ["components", "responses", responses[status]["$ref"].rsplit("/", 1)[1]]
        media = response.headers["content-type"].split(";")[0]
        pointer = "/".join(part.replace("~", "~0").replace("/", "~1") for part in [*where, "content", media, "schema"])
        schema = {"$ref": f"{_DOC}#/{pointer}"}
        value = response.json() if media == "application/json" else response.text
        Draft202012Validator(schema, registry=self.registry).validate(value)


@pytest.fixture(scope="session")
def contract() -> Contract:
    return Contract()
