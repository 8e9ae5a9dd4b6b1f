"""One builder per operation of the gateway's ``/openapi.json``, named by its ``operationId``.

A builder turns typed arguments into a :class:`Call` (method, path, query, body, headers): no
I/O, so the synchronous and the asynchronous client send the very same calls, and the test that
holds the client to the served document compares :data:`OPERATIONS` with its operation ids.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from urllib.parse import quote

from tai_autonomics.client.models import (
    Accepted,
    ActorMessage,
    Checkpoint,
    ConsistencyProof,
    ContractEvent,
    DeploySpec,
    InclusionProof,
    Insurance,
    Mode,
    OperationResult,
    PublishRequest,
    Quote,
    QuoteRequest,
    Receipt,
    Revenue,
    Status,
    SupervisionNode,
)

T = TypeVar("T")

JSON, TEXT, BYTES, SHELL = "json", "text", "bytes", "shell"


@dataclass(frozen=True)
class Call(Generic[T]):
    """A request to send, and how to read its answer: ``JSON``, ``TEXT``, ``BYTES`` or ``SHELL`` (a WebSocket
    session, opened by the client rather than sent). ``T`` is the answer's model."""

    method: str
    path: str
    params: dict[str, Any] = field(default_factory=dict)
    json: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    answer: str = JSON


OPERATIONS: dict[str, Callable[..., Call[Any]]] = {}


def _operation(build: Callable[..., Call[T]]) -> Callable[..., Call[T]]:
    OPERATIONS[build.__name__] = build
    return build


def _segment(value: str) -> str:
    """A path parameter, percent-encoded so that a ``/`` in it cannot reach another route."""
    return quote(value, safe="")


@_operation
def healthz() -> Call[Status]:
    return Call("GET", "/healthz")


@_operation
def readyz() -> Call[Status]:
    return Call("GET", "/readyz")


@_operation
def prod_health() -> Call[Status]:
    return Call("GET", "/prod-health")


@_operation
def metrics() -> Call[str]:
    return Call("GET", "/metrics", answer=TEXT)


@_operation
def openapi() -> Call[dict[str, Any]]:
    return Call("GET", "/openapi.json")


@_operation
def get_supervision() -> Call[SupervisionNode]:
    return Call("GET", "/v1/supervision")


@_operation
def open_shell() -> Call[Any]:
    """The remote shell's WebSocket: the client answers a connected ``ShellClient``."""
    return Call("GET", "/v1/shell", answer=SHELL)


@_operation
def call_actor(name: str, message: ActorMessage) -> Call[Any]:
    return Call("POST", f"/v1/actors/{_segment(name)}/call", json=message)


@_operation
def cast_actor(name: str, message: ActorMessage) -> Call[Accepted]:
    return Call("POST", f"/v1/actors/{_segment(name)}/cast", json=message)


@_operation
def get_receipt(receipt_id: str) -> Call[Receipt]:
    return Call("GET", f"/v1/receipts/{_segment(receipt_id)}")


@_operation
def get_receipt_proof(receipt_id: str, tree_size: int | None = None) -> Call[InclusionProof]:
    params = {} if tree_size is None else {"tree_size": tree_size}
    return Call("GET", f"/v1/receipts/{_segment(receipt_id)}/proof", params=params)


@_operation
def get_checkpoint() -> Call[Checkpoint]:
    return Call("GET", "/v1/ledger/checkpoint")


@_operation
def get_consistency(first: int, second: int) -> Call[ConsistencyProof]:
    return Call("GET", "/v1/ledger/consistency", params={"from": first, "to": second})


@_operation
def list_receipts(chain: str, after: int = 0, limit: int = 100) -> Call[list[Receipt]]:
    return Call("GET", "/v1/ledger/receipts", params={"chain": chain, "after": after, "limit": limit})


@_operation
def create_deployment(spec: DeploySpec, idempotency_key: str | None = None) -> Call[OperationResult]:
    """A deploy; without a key one is made here, so the client's retries of this call are one deploy."""
    return Call("POST", "/v1/deployments", json=spec,
                headers={"Idempotency-Key": idempotency_key or f"client-{uuid.uuid4().hex}"})


@_operation
def get_deployment(operation_id: str) -> Call[OperationResult]:
    return Call("GET", f"/v1/deployments/{_segment(operation_id)}")


@_operation
def create_publication(request: PublishRequest) -> Call[OperationResult]:
    """A publish: its ``work_id`` is its idempotency key (published once, a repeat answers the first)."""
    return Call("POST", "/v1/publications", json=request)


@_operation
def get_publication(work_id: str) -> Call[OperationResult]:
    return Call("GET", f"/v1/publications/{_segment(work_id)}")


@_operation
def create_quote(request: QuoteRequest) -> Call[Quote]:
    return Call("POST", "/v1/pricing/quotes", json=request)


@_operation
def get_mode() -> Call[Mode]:
    return Call("GET", "/v1/mode")


@_operation
def get_insurance() -> Call[Insurance]:
    return Call("GET", "/v1/insurance")


@_operation
def create_contract_event(contract_id: str, event: ContractEvent) -> Call[Receipt]:
    return Call("POST", f"/v1/contracts/{_segment(contract_id)}/events", json=event)


@_operation
def get_revenue(month: str) -> Call[Revenue]:
    return Call("GET", "/v1/revenue", params={"month": month})


@_operation
def tlog_checkpoint() -> Call[str]:
    """The log's signed checkpoint (a signed note), as C2SP tlog-tiles clients read it."""
    return Call("GET", "/tlog/checkpoint", answer=TEXT)


@_operation
def tlog_tile(path: str) -> Call[bytes]:
    """A hash tile or entry bundle by its tlog-tiles path (``0/x001/234``, ``entries/000.p/5``)."""
    return Call("GET", f"/tlog/tile/{quote(path, safe='/.')}", answer=BYTES)
