"""The gateway tests' tree, tokens and configuration, a gateway that checks it leaves nothing behind,
and the check of our error bodies."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from tai_autonomics.gateway import DEFAULT_ALLOWED, GatewayConfig, GatewayServer
from tai_autonomics.runtime import Node

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
