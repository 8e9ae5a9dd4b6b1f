"""One multiprocess node, tree and gateway for the gateway tests (started once: actors are processes).

Tree: root → [ReceiptLedger (a fake with the ledger's calls), echo, ops → [worker]] (tests/gateway/support.py).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import httpx
import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from tai_autonomics.gateway import GatewayServer, openapi_document
from tai_autonomics.gateway.shell_client import ShellClient
from tai_autonomics.runtime import Node, NodeConfig, parse_tree
from tests.gateway.support import TOKENS, TREE, serving
from tests.helpers import free_port, wait_until, zombie


@pytest.fixture(scope="session")
def node() -> Iterator[Node]:
    with Node(NodeConfig(base="multiprocTCPBase", admin_port=free_port())) as n:
        n.start_tree(parse_tree(TREE))
        yield n
        pids = [n.call(name, "$info")["pid"] for name in ("root", "ReceiptLedger", "echo", "ops", "worker")]
    wait_until(lambda: all(not os.path.exists(f"/proc/{p}") or zombie(p) for p in pids), what="actor processes gone")


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
