"""The gateway's ASGI application: the routes of :mod:`.routes` behind one request pipeline.

Every request passes, in order: request id and trace (outermost, so even a 404 carries them)
→ route match (404/405) → authentication and role → path, query and body checks → handler. Each
refusal on the way is an :class:`ApiError` turned into docs/specification.md §7's JSON body here; anything else a
handler raises is logged with its stack and answered 500 ``internal_error`` with no detail.
One JSON log line per request, with Cloud Run's trace id, and the request's metrics.
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket

from tai_autonomics.gateway import inputs, shell
from tai_autonomics.gateway.auth import authorize
from tai_autonomics.gateway.context import Gateway
from tai_autonomics.gateway.errors import ApiError, error_response
from tai_autonomics.gateway.routes import ROUTES, Endpoint, Req

log = logging.getLogger("tai_autonomics.gateway")

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_TRACE = re.compile(r"([0-9a-fA-F]{32})(?:/.*)?")
UNMATCHED = "unmatched"  # the route label of 404s: raw paths would make unbounded metric labels
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})  # any other: "other"


def create_app(gateway: Gateway) -> ASGIApp:
    async def shell_session(websocket: WebSocket) -> None:
        await shell.session(websocket, gateway)

    routes: list[BaseRoute] = [Route(_route_path(ep), _endpoint(gateway, ep), methods=[ep.method]) for ep in ROUTES]
    routes.append(WebSocketRoute(shell.PATH, shell_session))
    app = Starlette(routes=routes, exception_handlers={HTTPException: _routing_error})  # type: ignore[dict-item]  # starlette types a handler as taking any exception; it gets its own class
    return _Observe(app, gateway)


def _route_path(ep: Endpoint) -> str:
    """The endpoint's path for Starlette: a parameter that spans segments gets its ``path`` converter."""
    path = ep.path
    for name, param in ep.path_params.items():
        if param.segments:
            path = path.replace(f"{{{name}}}", f"{{{name}:path}}")
    return path


def _endpoint(gateway: Gateway, ep: Endpoint):
    async def run(request: Request) -> Response:
        request.state.route = ep.path
        try:
            identity = None
            if ep.roles is not None:
                identity = await gateway.auth.authenticate(request.headers.get("authorization"))
                request.state.subject = identity.subject
                authorize(identity, ep.roles)
            body = await inputs.json_object(request, gateway.config.max_body_bytes) if ep.body else None
            req = Req(request, gateway, identity, inputs.path(request, ep.path_params),
                      inputs.query(request, ep.query), body)
            if ep.body:
                gateway.check_body(ep.method, ep.path, body)
            if ep.write and gateway.draining.is_set():
                raise ApiError(503, "draining", "this instance is stopping; send the request again (another "
                               "instance takes it)", headers={"Retry-After": "1"})
            return await ep.handler(req)
        except ApiError as exc:
            return error_response(exc, request.state.request_id)
        except Exception as exc:  # never a traceback to the client; the log has it
            log.error("request failed", exc_info=exc, extra={"fields": {
                "event": "request_failed", "route": ep.path, "request_id": request.state.request_id}})
            return error_response(ApiError(500, "internal_error", "the gateway failed to handle the request"),
                                  request.state.request_id)

    run.__name__ = ep.handler.__name__
    return run


async def _routing_error(request: Request, exc: HTTPException) -> Response:
    """Starlette's own 404 (no route) and 405 (route, not this method), in our error shape."""
    if exc.status_code == 405:
        error = ApiError(405, "method_not_allowed", f"{request.method} is not allowed on {request.url.path}",
                         headers=dict(exc.headers or {}))
    else:
        error = ApiError(404, "not_found", "no such route", {"path": request.url.path[:200]})
    return error_response(error, request.state.request_id)


class _Observe:
    """Request id, trace id, the access log line and the metrics of every request."""

    def __init__(self, app: ASGIApp, gateway: Gateway) -> None:
        self.app = app
        self.gateway = gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        given = headers.get("x-request-id", "")
        request_id = given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        state = scope.setdefault("state", {})
        state.update(request_id=request_id, route=UNMATCHED, subject="")
        status = [0]

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        started = time.perf_counter()
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            method = scope["method"] if scope["method"] in _METHODS else "other"
            self.gateway.metrics.observe(state["route"], method, status[0], elapsed)
            log.info("request", extra={"trace": self._trace(headers.get("x-cloud-trace-context", "")), "fields": {
                "event": "http_request", "request_id": request_id, "method": scope["method"][:16],
                "path": scope["path"][:200], "route": state["route"], "status": status[0],
                "latency_ms": round(elapsed * 1000, 2), "subject": state["subject"]}})

    def _trace(self, header: str) -> str | None:
        """Cloud Logging's trace name for ``X-Cloud-Trace-Context: TRACE_ID/SPAN_ID;o=1``."""
        match = _TRACE.fullmatch(header)
        if match is None:
            return None
        trace = match.group(1).lower()
        project = self.gateway.config.trace_project
        return f"projects/{project}/traces/{trace}" if project else trace
