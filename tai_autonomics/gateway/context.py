"""What the gateway's routes and its shell share: the :class:`Gateway` context, one per server,
and the metrics scrape (``/metrics`` and the shell's ``metrics``).

A leaf module (it imports no route and no shell), so that :mod:`.app`, :mod:`.routes`,
:mod:`.shell` and :mod:`.shell_commands` all name the context without importing one another in
a circle.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator

from tai_autonomics.actors.names import CERT_MANAGER, INSURANCE_CLIENT, PROD_MODE, RECEIPT_LEDGER
from tai_autonomics.gateway import observer
from tai_autonomics.gateway._fastcheck import Check, compile_check
from tai_autonomics.gateway.auth import Authenticator
from tai_autonomics.gateway.bridge import ActorBridge
from tai_autonomics.gateway.config import GatewayConfig
from tai_autonomics.gateway.errors import ApiError
from tai_autonomics.gateway.metrics import GatewayMetrics


def openapi_document() -> bytes:
    """The OpenAPI 3.1 document kept in the package, served as it is."""
    return (resources.files("tai_autonomics.gateway") / "openapi.json").read_bytes()


@dataclass
class Gateway:
    """What the routes share: configuration, the actor bridge, auth, metrics, readiness."""

    config: GatewayConfig
    bridge: ActorBridge
    ready: threading.Event = field(default_factory=threading.Event)
    #: set on SIGTERM (docs/specification.md §11): new writes are refused ``503 draining``, ``/readyz`` answers 503
    draining: threading.Event = field(default_factory=threading.Event)
    auth: Authenticator = field(init=False)
    metrics: GatewayMetrics = field(init=False)
    openapi: bytes = field(init=False, default=b"")

    def __post_init__(self) -> None:
        self.auth = Authenticator(self.config)
        self.metrics = GatewayMetrics(lambda: self.bridge.in_flight)
        self.openapi = openapi_document()
        self._bodies = _body_validators(json.loads(self.openapi))

    def check_body(self, method: str, path: str, body: Any) -> None:
        """Refuse a body the OpenAPI document does not admit for the operation ``method path``,
        before any actor sees it."""
        checks = self._bodies.get((method, path))
        if checks is None:
            return
        quick, validator = checks
        if quick is not None and quick(body):
            return
        error = next(iter(validator.iter_errors(body)), None)
        if error is not None:
            field_path = ".".join(str(part) for part in error.absolute_path) or "body"
            raise ApiError(400, "invalid_request", f"{field_path}: {error.message[:200]}", {"field": field_path})


def _body_validators(doc: dict[str, Any]) -> dict[tuple[str, str], tuple[Check | None, Draft202012Validator]]:
    """Per operation with a request body: the quick check that admits most bodies
    (:mod:`._fastcheck`, fastjsonschema) and the JSON Schema validator that says why one is refused."""
    validators = {}
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            schema = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
            if schema is not None:
                rooted = {**schema, "components": doc["components"]}
                validators[(method.upper(), path)] = (compile_check(rooted), Draft202012Validator(rooted))
    return validators


async def scrape(gateway: Gateway) -> bytes:
    """The Prometheus text of now: the gateway's own metrics, the tree and the domain actors'."""
    try:
        tree = await observer.observe(gateway.bridge, gateway.config.root)
    except ApiError:
        tree = None  # the scrape still answers, with tai_supervision_walk_ok 0
    domain = {}
    for key, actor, msg_type in (("mode", PROD_MODE, "mode"), ("ledger", RECEIPT_LEDGER, "status"),
                                 ("insurer", INSURANCE_CLIENT, "status"), ("certificate", CERT_MANAGER, "status")):
        try:
            domain[key] = await gateway.bridge.call(actor, msg_type)
        except ApiError as refused:
            # CertManager refuses ``status`` outside the validity window (cert_expired), with the status
            # in the detail: an expired certificate is exactly what the metrics must show
            if isinstance(refused.detail.get("status"), dict):
                domain[key] = refused.detail["status"]
            # otherwise that actor is restarting or absent: its metrics are left out of this scrape
    return gateway.metrics.render(tree, domain)
