"""One multiprocess node, tree and gateway for the gateway tests (started once: actors are processes).

Tree: root → [ReceiptLedger (a fake with the ledger's calls), echo, ops → [worker]].
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import httpx
import pytest

from tai_autonomics.gateway import DEFAULT_ALLOWED, GatewayConfig, GatewayServer
from tai_autonomics.runtime import Node, NodeConfig, parse_tree
from tests.conftest import free_port

ECHO = "tests.runtime.actors:Echo"
TOKENS = {"service": "service-token-0123456789", "auditor": "auditor-token-0123456789",
          "admin": "admin-token-0123456789"}
ALLOWED = {**DEFAULT_ALLOWED, "ReceiptLedger": (*DEFAULT_ALLOWED["ReceiptLedger"], "opaque", "overloaded",
                                                "conflicting", "refused", "crash"),
           "echo": ("echo", "sleep", "crash", "refuse"), "ops": ("which_children",)}
TREE = {"root": "root",
        "supervisors": {"root": {"intensity": 50, "period": 10, "children": ["ReceiptLedger", "echo", "ops"]},
                        "ops": {"intensity": 50, "period": 10, "children": ["worker"]}},
        "workers": {"ReceiptLedger": {"actor": "tests.gateway.actors:FakeLedger"},
                    "echo": {"actor": ECHO}, "worker": {"actor": ECHO}}}


def config(**overrides) -> GatewayConfig:
    return GatewayConfig(**{"port": 0, "tokens": TOKENS, "allowed": ALLOWED, "call_timeout_s": 2.0,
                            "max_body_bytes": 4096, **overrides})


@pytest.fixture(scope="session")
def node() -> Iterator[Node]:
    with Node(NodeConfig(base="multiprocTCPBase", admin_port=free_port())) as n:
        n.start_tree(parse_tree(TREE))
        yield n


@pytest.fixture(scope="session")
def gateway(node: Node) -> Iterator[GatewayServer]:
    threads = set(threading.enumerate())
    with GatewayServer(node, config()) as server:
        yield server
    left = [t.name for t in set(threading.enumerate()) - threads if t.is_alive()]
    assert left == [], f"threads left behind by the gateway: {left}"


@pytest.fixture(scope="session")
def http(gateway: GatewayServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway.url, timeout=10) as client:
        yield client


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
