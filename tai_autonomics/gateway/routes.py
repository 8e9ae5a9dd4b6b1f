"""Every route of the gateway: one :class:`Endpoint` row per route, and its handler.

Adding a route (the operation routes of docs/specification.md §7 come this way):
1. write ``async def handler(req: Req) -> Response`` below (``req.gateway.bridge.call(...)``
   to ask an actor; raise :class:`~tai_autonomics.gateway.errors.ApiError` to refuse);
2. add its row to :data:`ROUTES`: method, path, handler, roles (``None``: public), and the
   query / path parameters and whether it takes a JSON body — the app enforces all of these;
3. add the operation to ``openapi.json`` with ``operationId`` = the handler's name and
   ``x-roles`` = the roles; tests/gateway/test_openapi.py fails until the two agree.
"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from tai_autonomics.actors import operation_api, status_api
from tai_autonomics.actors.ledger_api import aread_chain, proof_query, receipts_query
from tai_autonomics.actors.names import (
    ACQUISITION,
    CERT_MANAGER,
    PRICING,
    PROD_MODE,
    PUBLISHER,
    RECEIPT_LEDGER,
)
from tai_autonomics.errors import InvalidRequest
from tai_autonomics.gateway import observer
from tai_autonomics.gateway.auth import ANY_ROLE, Identity
from tai_autonomics.gateway.context import Gateway, scrape
from tai_autonomics.gateway.errors import ApiError, encode_reply, json_response
from tai_autonomics.gateway.inputs import Param, fields
from tai_autonomics.gateway.metrics import CONTENT_TYPE
from tai_autonomics.gateway.policy import (
    ADMIN,
    AUDITOR,
    OPERATION_TIMEOUT_S,
    SERVICE,
    SERVICE_OR_AUDITOR,
    allowed_message,
)
from tai_autonomics.ledger.tiles import TILE_WIDTH, parse_tile_path
from tai_autonomics.operations import revenue

# operation metrics by kind; reads are not operations
_COUNTED = (operation_api.DEPLOY, operation_api.PUBLISH, operation_api.QUOTE)
_IDEMPOTENCY_KEY = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_OPERATION_ID = Param(pattern=r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")  # operations/fields.py IDENT
_ACTOR_NAME = Param(pattern=r"[A-Za-z_][A-Za-z0-9_.-]{0,127}")
_RECEIPT_ID = Param(pattern=r"[A-Za-z0-9._:-]{1,128}")
_TREE_SIZE = Param(int, minimum=1)
_CONTRACT_ID = Param(pattern=r"[A-Za-z0-9._:-]{1,128}")
_MONTH = Param(required=True, pattern=r"\d{4}-(0[1-9]|1[0-2])")
_TILE_PATH = Param(pattern=r"[0-9a-z./]{1,200}", segments=True)  # parse_tile_path decides the rest


@dataclass
class Req:
    """What a handler gets: the request, the gateway, and its inputs already checked."""

    request: Request
    gateway: Gateway
    identity: Identity | None
    path: dict[str, Any]
    query: dict[str, Any]
    body: dict[str, Any] | None


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    handler: Callable[[Req], Awaitable[Response]]
    roles: frozenset[str] | None  # None: public (health only)
    query: Mapping[str, Param] = field(default_factory=dict)
    path_params: Mapping[str, Param] = field(default_factory=dict)
    body: bool = False
    write: bool = False  # starts an operation: refused while the instance drains


# -- health and description ----------------------------------------------------------------

async def healthz(req: Req) -> Response:
    return json_response({"status": "alive"})


async def readyz(req: Req) -> Response:
    if req.gateway.draining.is_set():
        raise ApiError(503, "draining", "this instance is stopping", headers={"Retry-After": "1"})
    if not req.gateway.ready.is_set():
        raise ApiError(503, "not_ready", "the supervision tree is not running", headers={"Retry-After": "1"})
    return json_response({"status": "ready"})


async def metrics(req: Req) -> Response:
    return Response(await scrape(req.gateway), media_type=CONTENT_TYPE)


async def openapi(req: Req) -> Response:
    return Response(req.gateway.openapi, media_type="application/json")


# -- admin ---------------------------------------------------------------------------------

async def get_supervision(req: Req) -> Response:
    return json_response(await observer.observe(req.gateway.bridge, req.gateway.config.root))


async def open_shell(req: Req) -> Response:
    """``/v1/shell`` is the remote shell's WebSocket (:mod:`.shell`); a plain GET is told to upgrade."""
    raise ApiError(426, "upgrade_required", "/v1/shell is a WebSocket: connect with tai-autonomics remote-shell",
                   headers={"Upgrade": "websocket"})


def _actor_message(req: Req) -> tuple[str, str, Any]:
    """The actor, message type and payload of a generic call or cast, if the allow-list has it."""
    body = req.body or {}
    fields(body, {"type": str}, {"payload": object})
    actor, msg_type = req.path["name"], body["type"]
    allowed_message(req.gateway.config, actor, msg_type)
    return actor, msg_type, body.get("payload")


async def call_actor(req: Req) -> Response:
    actor, msg_type, payload = _actor_message(req)
    return encode_reply(await req.gateway.bridge.call(actor, msg_type, payload), actor, msg_type)


async def cast_actor(req: Req) -> Response:
    actor, msg_type, payload = _actor_message(req)
    await req.gateway.bridge.cast(actor, msg_type, payload)
    return json_response({"accepted": True}, 202)


# -- receipts and the ledger (auditor) -----------------------------------------------------

async def _ledger(req: Req, msg_type: str, payload: Any = None) -> Response:
    return encode_reply(await req.gateway.bridge.call(RECEIPT_LEDGER, msg_type, payload), RECEIPT_LEDGER, msg_type)


async def get_receipt(req: Req) -> Response:
    return await _ledger(req, "receipt", {"id": req.path["id"]})


async def get_receipt_proof(req: Req) -> Response:
    return await _ledger(req, "proof", proof_query(req.path["id"], req.query["tree_size"]))


async def get_checkpoint(req: Req) -> Response:
    return await _ledger(req, "checkpoint")


async def get_consistency(req: Req) -> Response:
    first, second = req.query["from"], req.query["to"]
    if first > second:
        # well-formed but inconsistent: 422, as any request the schema admits but the meaning refuses
        raise ApiError(422, "invalid_range", "'from' must not be greater than 'to'", {"from": first, "to": second})
    return await _ledger(req, "consistency", {"from": first, "to": second})


async def list_receipts(req: Req) -> Response:
    return await _ledger(req, "receipts", receipts_query(req.query["chain"], req.query["after"], req.query["limit"]))


# -- the log as C2SP tlog-tiles (auditor): what standard tile clients mirror and verify ---------

_IMMUTABLE = "public, max-age=31536000, immutable"  # a full tile never changes
_CHANGING = "no-cache"  # the checkpoint and partial tiles grow with the log


async def tlog_checkpoint(req: Req) -> Response:
    reply = await req.gateway.bridge.call(RECEIPT_LEDGER, "checkpoint")
    return Response(reply["note"], media_type="text/plain; charset=utf-8", headers={"Cache-Control": _CHANGING})


async def tlog_tile(req: Req) -> Response:
    """``tile/<L>/<N>[.p/<W>]`` (hashes) or ``tile/entries/<N>[.p/<W>]`` (receipts), as C2SP
    ``tlog-tiles`` names them; 404 for a tile the tree does not have (yet) and for a path that names
    no tile (C2SP names each tile once: a non-canonical index is no tile)."""
    try:
        tile = parse_tile_path(req.path["path"])
    except ValueError as exc:
        raise ApiError(404, "not_found", f"no such tile: {exc}", {"path": req.path["path"]}) from None
    if tile.level is None:
        reply = await req.gateway.bridge.call(RECEIPT_LEDGER, "entries", {"index": tile.index, "width": tile.width})
    else:
        reply = await req.gateway.bridge.call(RECEIPT_LEDGER, "tile", {"level": tile.level, "index": tile.index,
                                                              "width": tile.width})
    return Response(base64.b64decode(reply["data"]), media_type="application/octet-stream",
                    headers={"Cache-Control": _IMMUTABLE if tile.width == TILE_WIDTH else _CHANGING})


# -- insured operations (service) ----------------------------------------------------------

async def _operation(req: Req, actor: str, msg_type: str, payload: Any) -> Response:
    """Ask an operation actor; a repeat answered from the store says ``Idempotent-Replayed:
    true`` (the body is the first answer's), and a repeat of one still running elsewhere is 202."""
    started = time.monotonic()
    try:
        reply = await req.gateway.bridge.call(actor, msg_type, payload, timeout_s=OPERATION_TIMEOUT_S)
    except ApiError as refused:
        if msg_type in _COUNTED:
            req.gateway.metrics.operation(msg_type, "refused", time.monotonic() - started, refused.code)
        raise
    replayed = isinstance(reply, dict) and bool(reply.pop("replayed", False))
    if msg_type in _COUNTED:
        outcome = reply.get("status", "completed") if isinstance(reply, dict) else "completed"
        req.gateway.metrics.operation(msg_type, "replayed" if replayed else outcome, time.monotonic() - started)
    response = encode_reply(reply, actor, msg_type)
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    if msg_type in _COUNTED and isinstance(reply, dict) and reply.get("status") == "in_progress":
        response.status_code = 202
        response.headers["Retry-After"] = "1"
    return response


async def create_deployment(req: Req) -> Response:
    key = req.request.headers.get("idempotency-key")
    if key is not None and not _IDEMPOTENCY_KEY.fullmatch(key):
        raise ApiError(400, "invalid_request", "Idempotency-Key must be 1-128 of A-Z a-z 0-9 . _ : -",
                       {"field": "Idempotency-Key"})
    return await _operation(req, ACQUISITION, operation_api.DEPLOY, operation_api.deploy_request(req.body, key))


async def get_deployment(req: Req) -> Response:
    return await _operation(req, ACQUISITION, operation_api.GET,
                            operation_api.deployment_query(req.path["operation_id"]))


async def create_publication(req: Req) -> Response:
    return await _operation(req, PUBLISHER, operation_api.PUBLISH, req.body)


async def get_publication(req: Req) -> Response:
    return await _operation(req, PUBLISHER, operation_api.GET, operation_api.publication_query(req.path["work_id"]))


async def create_quote(req: Req) -> Response:
    return await _operation(req, PRICING, operation_api.QUOTE, req.body)


async def get_mode(req: Req) -> Response:
    return encode_reply(await status_api.amode(req.gateway.bridge), PROD_MODE, status_api.MODE)


async def get_insurance(req: Req) -> Response:
    return encode_reply(await status_api.ainsurance(req.gateway.bridge), CERT_MANAGER, status_api.STATUS)


# -- contracts and revenue (docs/specification.md §12) -------------------------------------------

async def create_contract_event(req: Req) -> Response:
    """A contract event becomes a receipt on the policy's chain (ProdMode decides chain and authority)."""
    try:
        kind, payload = revenue.contract_event(req.path["id"], req.body)
    except InvalidRequest as bad:  # the schema admitted it; its meaning (fields of the event, a date) does not
        raise ApiError(422, bad.code, bad.message, bad.detail) from None
    return encode_reply(await status_api.arecord(req.gateway.bridge, kind, payload), PROD_MODE, status_api.RECORD)


async def get_revenue(req: Req) -> Response:
    """The month's figures from the contract receipts of the policy's chain, read now."""
    try:
        month = revenue.parse_month(req.query["month"])
    except InvalidRequest as bad:
        raise ApiError(422, bad.code, bad.message, bad.detail) from None
    chain = (await status_api.astatus(req.gateway.bridge)).get("policy_id")
    if not chain:
        raise ApiError(409, "no_contract_chain", "no insurance policy, so no contractual chain: revenue is "
                       "recognised only from contractual receipts", {"month": month})
    bridge = req.gateway.bridge
    receipts = aread_chain(lambda query: bridge.call(RECEIPT_LEDGER, "receipts", query), chain)
    # only the contract receipts are kept: the chain may be long
    contract = [r async for r in receipts if str(r.get("kind", "")).startswith(revenue.KIND_PREFIX)]
    return json_response({**revenue.recognise(contract, month), "chain": chain})


async def prod_health(req: Req) -> Response:
    """200 only in ``prod`` with verified insurance (a load balancer's view of "insured now")."""
    mode = await status_api.amode(req.gateway.bridge)
    if mode.get("mode") != "prod":
        raise ApiError(503, "not_insured", f"mode is {mode.get('mode') or 'starting'}: {mode.get('reason')}",
                       {"mode": mode.get("mode")}, headers={"Retry-After": "5"})
    return json_response({"status": "insured", "mode": "prod"})


ROUTES: tuple[Endpoint, ...] = (
    Endpoint("GET", "/healthz", healthz, None),
    Endpoint("GET", "/readyz", readyz, None),
    # any token: the metrics name actors and show traffic and restarts, and Cloud Run exposes one
    # public port; Prometheus scrapers send a bearer token (authorization.credentials_file)
    Endpoint("GET", "/metrics", metrics, ANY_ROLE),
    Endpoint("GET", "/openapi.json", openapi, ANY_ROLE),
    Endpoint("GET", "/prod-health", prod_health, None),
    Endpoint("POST", "/v1/deployments", create_deployment, SERVICE, body=True, write=True),
    Endpoint("GET", "/v1/deployments/{operation_id}", get_deployment, SERVICE_OR_AUDITOR,
             path_params={"operation_id": _OPERATION_ID}),
    Endpoint("POST", "/v1/publications", create_publication, SERVICE, body=True, write=True),
    Endpoint("GET", "/v1/publications/{work_id}", get_publication, SERVICE_OR_AUDITOR,
             path_params={"work_id": _OPERATION_ID}),
    Endpoint("POST", "/v1/pricing/quotes", create_quote, SERVICE, body=True, write=True),
    Endpoint("GET", "/v1/mode", get_mode, SERVICE_OR_AUDITOR),
    Endpoint("GET", "/v1/insurance", get_insurance, SERVICE_OR_AUDITOR),
    Endpoint("POST", "/v1/contracts/{id}/events", create_contract_event, SERVICE, path_params={"id": _CONTRACT_ID},
             body=True, write=True),
    Endpoint("GET", "/v1/revenue", get_revenue, AUDITOR, query={"month": _MONTH}),
    Endpoint("GET", "/v1/supervision", get_supervision, ADMIN),
    Endpoint("GET", "/v1/shell", open_shell, ADMIN),
    Endpoint("POST", "/v1/actors/{name}/call", call_actor, ADMIN, path_params={"name": _ACTOR_NAME}, body=True),
    Endpoint("POST", "/v1/actors/{name}/cast", cast_actor, ADMIN, path_params={"name": _ACTOR_NAME}, body=True),
    Endpoint("GET", "/v1/receipts/{id}", get_receipt, AUDITOR, path_params={"id": _RECEIPT_ID}),
    Endpoint("GET", "/v1/receipts/{id}/proof", get_receipt_proof, AUDITOR, path_params={"id": _RECEIPT_ID},
             query={"tree_size": _TREE_SIZE}),
    Endpoint("GET", "/v1/ledger/checkpoint", get_checkpoint, AUDITOR),
    Endpoint("GET", "/v1/ledger/consistency", get_consistency, AUDITOR,
             query={"from": Param(int, required=True, minimum=1), "to": Param(int, required=True, minimum=1)}),
    Endpoint("GET", "/tlog/checkpoint", tlog_checkpoint, AUDITOR),
    Endpoint("GET", "/tlog/tile/{path}", tlog_tile, AUDITOR, path_params={"path": _TILE_PATH}),
    Endpoint("GET", "/v1/ledger/receipts", list_receipts, AUDITOR,
             query={"chain": Param(required=True), "after": Param(int, default=0),
                    "limit": Param(int, minimum=1, maximum=1000, default=100)}),
)
