"""The sandbox ASGI application: three outside parties, fault injection, a request log, an admin API.

Every party request goes through :meth:`Sandbox._dispatch`: record its arrival (so a client's
retries and backoff can be read from ``/admin/requests``), draw the faults for its endpoint, apply
them (latency, hang, outage, error, 429, rejection), run the handler, replay the first answer for a
repeated ``Idempotency-Key`` (422 if the body differs), sign insurer bodies, and log it.
"""

from __future__ import annotations

import asyncio
import fnmatch
import hashlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route as StarletteRoute
from starlette.types import Receive, Scope, Send

from tai_autonomics import logs
from tai_autonomics.sandbox.customer import CustomerEndpoint
from tai_autonomics.sandbox.faults import Fault, FaultConfigError, FaultInjector
from tai_autonomics.sandbox.insurer import (
    POLICY_ID,
    SIGNING_PUBLIC_KEY_FILE,
    Insurer,
    load_or_create_ca,
    load_or_create_signing_key,
)
from tai_autonomics.sandbox.marketplace import Marketplace
from tai_autonomics.sandbox.web import (
    KEPT_RECORDS,
    ApiError,
    Reply,
    Route,
    encode,
    error_body,
    error_reply,
    json_object,
    keep,
    no_other_fields,
    path_param,
    rejection,
)

log = logging.getLogger(__name__)

REQUEST_LOG_SIZE = 10_000
INSURER_DIR = "insurer"


@dataclass(frozen=True)
class SandboxConfig:
    """``data_dir`` holds the insurer's signing key and (unless ``ca_dir`` says otherwise) its CA."""

    data_dir: Path
    ca_dir: Path | None = None
    faults: tuple[Fault, ...] = ()
    seed: int = 0
    certificate_validity: timedelta = field(default=timedelta(days=90))
    kept_records: int = KEPT_RECORDS

    @property
    def insurer_dir(self) -> Path:
        return Path(self.data_dir) / INSURER_DIR

    @property
    def insurer_public_key_file(self) -> Path:
        return self.insurer_dir / SIGNING_PUBLIC_KEY_FILE


class RequestLog:
    """The last :data:`REQUEST_LOG_SIZE` party requests, each with its arrival time (epoch seconds).

    An entry is recorded on arrival, so a request still being answered (a hang) is already
    counted; its ``status`` and ``duration_s`` are null until it is answered.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.clear()

    def clear(self) -> None:
        with self._lock:
            self._entries: deque[dict[str, Any]] = deque(maxlen=REQUEST_LOG_SIZE)
            self._seq = 0

    def arrived(self, endpoint: str, method: str, path: str, faults: list[str]) -> dict[str, Any]:
        """Record a request as it arrives; the caller fills in status, dropped and duration_s when it is answered."""
        with self._lock:
            self._seq += 1
            entry = {"seq": self._seq, "time": time.time(), "endpoint": endpoint, "method": method, "path": path,
                     "faults": faults, "status": None, "dropped": False, "duration_s": None}
            self._entries.append(entry)
            return entry

    def query(self, endpoint: str = "*", after: int = 0) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(e) for e in self._entries
                    if e["seq"] > after and fnmatch.fnmatchcase(e["endpoint"], endpoint)]


class _DroppedResponse(Response):
    """Sends the status line and headers, announces a body it never sends, and ends: the server closes."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"content-type", b"application/json"), (b"content-length", b"1024")]
        await send({"type": "http.response.start", "status": self.status_code, "headers": headers})
        await send({"type": "http.response.body", "body": b"{", "more_body": True})


async def _hang(request: Request, seconds: float) -> None:
    """Wait ``seconds``, or less if the client hangs up first."""

    async def disconnected() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    try:
        await asyncio.wait_for(disconnected(), timeout=seconds)
    except asyncio.TimeoutError:
        pass


class Sandbox:
    """The parties, their faults and request log, and the Starlette app serving them."""

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        insurer_dir = config.insurer_dir
        self.insurer = Insurer(
            load_or_create_signing_key(insurer_dir),
            load_or_create_ca(Path(config.ca_dir) if config.ca_dir else insurer_dir / "ca"),
            config.certificate_validity,
        )
        self.marketplace = Marketplace(config.kept_records)
        self.customer = CustomerEndpoint(config.kept_records)
        self.faults = FaultInjector(config.faults, config.seed)
        self.requests = RequestLog()
        self._idempotent: dict[tuple[str, str, str], tuple[str, Reply]] = {}
        self.app = self._build_app()

    # --- parties ---------------------------------------------------------------------------

    def party_routes(self) -> list[Route]:
        return [*self.insurer.routes(), *self.marketplace.routes(), *self.customer.routes()]

    def _build_app(self) -> Starlette:
        routes = [
            StarletteRoute(r.path, self._endpoint(r), methods=[r.method], name=r.name) for r in self.party_routes()
        ]
        routes += [
            StarletteRoute("/healthz", self._healthz, methods=["GET"]),
            StarletteRoute("/admin/faults", self._get_faults, methods=["GET"]),
            StarletteRoute("/admin/faults", self._put_faults, methods=["PUT"]),
            StarletteRoute("/admin/faults", self._add_fault, methods=["POST"]),
            StarletteRoute("/admin/faults/{fault_id}", self._delete_fault, methods=["DELETE"]),
            StarletteRoute("/admin/requests", self._get_requests, methods=["GET"]),
            StarletteRoute("/admin/reset", self._reset, methods=["POST"]),
            StarletteRoute("/admin/policies", self._get_policies, methods=["GET"]),
            StarletteRoute("/admin/policies/{policy_id}", self._put_policy, methods=["PUT"]),
        ]
        return Starlette(
            routes=routes,
            # starlette types a handler as taking any exception; each of these gets its own class
            exception_handlers={
                ApiError: self._api_error, HTTPException: self._http_error,  # type: ignore[dict-item]
                Exception: self._internal_error,
            },
        )

    def _endpoint(self, route: Route) -> Callable:
        sign = self.insurer.sign if route.name.startswith("insurer.") else None

        async def endpoint(request: Request) -> Response:
            return await self._dispatch(route, sign, request)

        return endpoint

    async def _dispatch(self, route: Route, sign: Callable | None, request: Request) -> Response:
        started = time.monotonic()
        faults = self.faults.draw(route.name)
        entry = self.requests.arrived(route.name, request.method, request.url.path, [f.kind for f in faults])
        try:
            reply = await self._reply(route, request, faults)
        except ApiError as err:
            reply = error_reply(err)
        body = encode(reply.body)
        headers = {**reply.headers, **(sign(body, faults) if sign else {})}
        entry.update(status=reply.status, dropped=reply.dropped, duration_s=round(time.monotonic() - started, 6))
        # a plain success at DEBUG: at load, a line per request cost the daemon (which relays the
        # child's lines) half a millisecond of CPU each; faults and errors stay at INFO
        level = logging.DEBUG if 200 <= reply.status < 300 and not faults else logging.INFO
        logs.event(log, "sandbox request", level, **{k: v for k, v in entry.items() if k != "time"})
        if reply.dropped:
            return _DroppedResponse(status_code=reply.status)
        return Response(body, reply.status, headers, media_type="application/json")

    async def _reply(self, route: Route, request: Request, faults: list[Fault]) -> Reply:
        for fault in faults:
            if fault.kind == "latency":
                assert fault.delay_s is not None  # a latency or timeout fault has one (its kind's default)
                await asyncio.sleep(fault.delay_s)
        for fault in faults:
            if fault.kind == "timeout":
                assert fault.delay_s is not None
                await _hang(request, fault.delay_s)
                return Reply(504, error_body("sandbox_timeout", f"sandbox fault: no answer for {fault.delay_s} s"))
            if fault.kind == "outage":
                headers = _retry_after(fault)
                if fault.mode == "drop":
                    return Reply(200, {}, headers, dropped=True)
                return Reply(503, error_body("service_unavailable", "sandbox fault: outage"), headers)
            if fault.kind == "error":
                assert fault.status is not None  # an error fault has a 5xx status (500 by default)
                return Reply(fault.status, error_body("internal_error", "sandbox fault: injected error"))
            if fault.kind == "rate_limit":
                return Reply(429, error_body("rate_limited", "sandbox fault: too many requests"), _retry_after(fault))
            if fault.kind == "reject" and "reject" not in route.consumes:
                assert fault.classification is not None  # checked when the fault was made
                raise rejection(fault.classification)
        key = request.headers.get("idempotency-key")
        if key is None or route.method != "POST":
            return await route.handler(request, faults)
        slot = (route.name, request.url.path, key)
        digest = hashlib.sha256(await request.body()).hexdigest()
        if slot in self._idempotent:
            first_digest, first_reply = self._idempotent[slot]
            if first_digest != digest:
                raise ApiError(422, "idempotency_key_reused",
                               "this Idempotency-Key was used with a different request body")
            return first_reply
        try:
            reply = await route.handler(request, faults)
        except ApiError as err:
            reply = error_reply(err)
        if reply.status < 500:
            keep(self._idempotent, slot, (digest, reply), self.config.kept_records)
        return reply

    # --- admin -----------------------------------------------------------------------------

    async def _healthz(self, request: Request) -> Response:
        return _json(200, {"status": "ok", "insurer_key_id": self.insurer.key_id})

    async def _get_faults(self, request: Request) -> Response:
        return _json(200, self.faults.snapshot())

    async def _put_faults(self, request: Request) -> Response:
        body = await json_object(request)
        no_other_fields(body, {"faults", "seed"})
        raw = body.get("faults", [])
        seed = body.get("seed")
        if not isinstance(raw, list):
            raise ApiError(400, "invalid_request", "field 'faults' must be a list", {"field": "faults"})
        if seed is not None and type(seed) is not int:
            raise ApiError(400, "invalid_request", "field 'seed' must be an integer", {"field": "seed"})
        faults = [_fault(item) for item in raw]
        self.faults.replace(faults, seed)
        return _json(200, self.faults.snapshot())

    async def _add_fault(self, request: Request) -> Response:
        fault = _fault(await json_object(request))
        return _json(201, {"id": self.faults.add(fault), **fault.to_dict()})

    async def _delete_fault(self, request: Request) -> Response:
        fault_id = path_param(request, "fault_id", r"f[0-9]{1,12}")
        if not self.faults.remove(fault_id):
            raise ApiError(404, "fault_not_found", f"no active fault {fault_id!r}")
        return Response(status_code=204)

    async def _get_requests(self, request: Request) -> Response:
        endpoint = request.query_params.get("endpoint", "*")
        after = request.query_params.get("after", "0")
        if not after.isdigit():
            raise ApiError(400, "invalid_request", "query parameter 'after' must be a non-negative integer",
                           {"field": "after"})
        return _json(200, {"requests": self.requests.query(endpoint, int(after))})

    async def _reset(self, request: Request) -> Response:
        self.faults.clear()
        self.requests.clear()
        self._idempotent.clear()
        self.insurer.reset()
        self.marketplace.reset()
        self.customer.reset()
        return _json(200, {"reset": True})

    async def _get_policies(self, request: Request) -> Response:
        return _json(200, {"policies": self.insurer.policies()})

    async def _put_policy(self, request: Request) -> Response:
        policy_id = path_param(request, "policy_id", POLICY_ID)
        return _json(200, self.insurer.put_policy(policy_id, await json_object(request)))

    # --- errors ----------------------------------------------------------------------------

    async def _http_error(self, request: Request, exc: HTTPException) -> Response:
        codes = {404: "not_found", 405: "method_not_allowed"}
        return _json(exc.status_code, error_body(codes.get(exc.status_code, "http_error"), exc.detail), exc.headers)

    async def _api_error(self, request: Request, exc: ApiError) -> Response:
        return _json(exc.status, error_reply(exc).body, exc.headers)

    async def _internal_error(self, request: Request, exc: Exception) -> Response:
        logs.event(log, "sandbox internal error", logging.ERROR, path=request.url.path, error=type(exc).__name__)
        return _json(500, error_body("internal_error", "the sandbox failed to handle the request"))


def _json(status: int, body: dict[str, Any], headers: Mapping[str, str] | None = None) -> Response:
    return Response(encode(body), status, headers, media_type="application/json")


def _retry_after(fault: Fault) -> dict[str, str]:
    if fault.retry_after_s is None:
        return {}
    return {"Retry-After": format(fault.retry_after_s, "g")}


def _fault(data: Any) -> Fault:
    try:
        return Fault.from_dict(data)
    except FaultConfigError as exc:
        raise ApiError(400, exc.code, exc.message, exc.detail) from None
