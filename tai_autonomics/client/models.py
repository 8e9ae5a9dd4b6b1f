"""The gateway's request and answer shapes, as ``TypedDict`` models of ``/openapi.json``'s schemas.

TypedDicts, not classes with parsing: an answer is the gateway's JSON as it arrived (the receipts
in it must stay byte-for-byte what the ledger signed, so a caller can verify them offline), and a
type checker still knows every field. ``tests/client`` fails when a schema of the served document
gains or loses a property these models do not have. (No ``from __future__ import annotations``
here: ``NotRequired`` must be evaluated for a model's ``__required_keys__`` to be right.)
"""

from typing import Any, Literal, NotRequired, TypedDict


class ErrorDetail(TypedDict):
    code: str
    message: str
    detail: dict[str, Any]


class Error(TypedDict):
    error: ErrorDetail
    request_id: str


class ActorMessage(TypedDict):
    type: str
    payload: NotRequired[Any]


class Receipt(TypedDict):
    id: str
    kind: str
    chain: str
    seq: int
    prev: str
    time: str
    hash: str
    mode: NotRequired[str]
    authority: NotRequired[str]
    payload: NotRequired[Any]
    operation_id: NotRequired[str]
    signature: NotRequired[str]
    key_id: NotRequired[str]
    session_mac: NotRequired[str]


class InclusionProof(TypedDict):
    leaf_index: int
    tree_size: int
    hashes: list[str]


ConsistencyProof = TypedDict("ConsistencyProof", {"from": int, "to": int, "hashes": list[str]})


class Checkpoint(TypedDict):
    note: str
    size: int
    root: str


class ActorStats(TypedDict):
    pid: int
    rss_bytes: int | None
    cpu_seconds: float | None
    messages: int
    messages_per_s: float
    pending_outbound: int | None


class ActorCrash(TypedDict):
    reason: str
    exception: str | None
    message_type: str | None
    time: float


class SupervisionNode(TypedDict):
    name: str
    type: Literal["supervisor", "worker"]
    restart: NotRequired[str]
    state: NotRequired[str]
    incarnation: NotRequired[str | None]
    pid: NotRequired[int | None]
    restarts: NotRequired[int]
    last_crash: NotRequired[ActorCrash | None]
    error: NotRequired[str]
    stats: NotRequired[ActorStats | None]
    stats_error: NotRequired[str]
    children: NotRequired[list["SupervisionNode"] | None]


class DeploySpec(TypedDict):
    sku_id: str
    target_cloud: Literal["aws", "gcp", "azure", "onprem"]
    customer_ref: str
    customer_account: str
    region: str
    artifacts: dict[str, Any]
    cost: NotRequired[float | str]


class PublishArtifacts(TypedDict):
    code: str
    tests: str
    docs: str
    metadata: str


class PublishRequest(TypedDict):
    work_id: str
    sku_id: str
    artifacts: PublishArtifacts


class QuoteRequest(TypedDict):
    customer_id: str
    metrics: dict[str, float]


class OperationResult(TypedDict):
    operation_id: str
    status: Literal["completed", "failed", "in_progress"]
    receipts: list[Receipt]
    rca: NotRequired[dict[str, Any]]


class Quote(TypedDict):
    quote: dict[str, Any]
    receipt: Receipt


class Mode(TypedDict):
    mode: Literal["", "eval", "prod", "read_only", "draining"]
    reason: str
    configured: NotRequired[str]
    manual_resume: NotRequired[bool]


class Insurance(TypedDict):
    certificate: dict[str, Any]
    insurer: dict[str, Any]


class Status(TypedDict):
    """``/healthz``, ``/readyz``, ``/prod-health`` (``mode`` only on the last)."""

    status: str
    mode: NotRequired[str]


class Accepted(TypedDict):
    accepted: bool


class ContractEvent(TypedDict):
    event: str
    date: str
    monthly_fee: NotRequired[float | str]
    amount: NotRequired[float | str]
    month: NotRequired[str]
    availability_pct: NotRequired[float | str]


class RevenueContract(TypedDict):
    contract_id: str
    days_in_force: int
    days_lapsed: int
    base: str
    refund: str
    variable_reported: str
    variable_cap: str
    variable: str
    availability_pct: str | None
    sla_credit_pct: int
    sla_credit: str
    recognised: str
    paused: bool
    cure_notices: list[str]
    escalated_on: str | None


class Revenue(TypedDict):
    month: str
    days: int
    chain: str
    contract_receipts: int
    contracts: list[RevenueContract]
    totals: dict[str, str]
