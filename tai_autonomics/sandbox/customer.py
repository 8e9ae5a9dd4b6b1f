"""A customer's deploy endpoint: accepts a deployment and reports its result; and its webhook
receiver, which checks each notification's signature as a customer should
(:func:`~tai_autonomics.notifications.verify_signature`, with replay protection) and keeps what
it received for ``GET`` (``verified`` or the refusal's code). A ``error`` or ``outage`` fault on
``customer.webhook`` makes it fail on purpose, so senders' retries can be tested.

A deployment succeeds unless a ``reject`` fault fires for ``customer.deploy``; then it fails
with that classification (one of docs/specification.md §6's Acquisition RCA classes), the HTTP status of
:data:`~tai_autonomics.sandbox.faults.REJECTION_STATUS`, and the failure is what a later
``GET`` of the deployment reports.
"""

from __future__ import annotations

import os
import time
import uuid
from collections import deque
from typing import Any

from starlette.requests import Request

from tai_autonomics.notifications.signing import HEADER, SignatureError, verify_signature
from tai_autonomics.sandbox.web import (
    KEPT_RECORDS,
    ApiError,
    Reply,
    Route,
    choice_field,
    json_object,
    keep,
    no_other_fields,
    object_field,
    path_param,
    rejection,
    rfc3339,
    text_field,
    utcnow,
)
from tai_autonomics.validation import loads_json

PREFIX = "/customer/v1"
TARGET_CLOUDS = ("aws", "gcp", "azure", "onprem")
IDENT = r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}"
DEPLOYMENT_ID = r"dep-[0-9a-f]{16}"
WEBHOOK_PATH = f"{PREFIX}/webhooks"
#: the environment variable holding the webhook secret the receiver checks with (the daemon's dev profile sets it)
WEBHOOK_SECRET_ENV = "TAI_WEBHOOK_SECRET"


class CustomerEndpoint:
    def __init__(self, kept: int = KEPT_RECORDS) -> None:
        self._kept = kept
        self.reset()

    def reset(self) -> None:
        self._deployments: dict[str, dict[str, Any]] = {}
        self._webhooks: deque[dict[str, Any]] = deque(maxlen=self._kept)
        self._received = 0

    def routes(self) -> list[Route]:
        return [
            Route(f"{PREFIX}/deployments", "POST", "customer.deploy", self.deploy, frozenset({"reject"})),
            Route(f"{PREFIX}/deployments/{{deployment_id}}", "GET", "customer.get_deployment", self.get_deployment),
            Route(WEBHOOK_PATH, "POST", "customer.webhook", self.webhook),
            Route(WEBHOOK_PATH, "GET", "customer.list_webhooks", self.list_webhooks),
        ]

    async def deploy(self, request: Request, faults: list) -> Reply:
        body = await json_object(request)
        no_other_fields(body, {"sku_id", "target_cloud", "region", "customer_account", "artifacts", "operation_id"})
        record: dict[str, Any] = {
            "deployment_id": "dep-" + uuid.uuid4().hex[:16],
            "sku_id": text_field(body, "sku_id", pattern=IDENT),
            "target_cloud": choice_field(body, "target_cloud", TARGET_CLOUDS),
            "region": text_field(body, "region", pattern=IDENT),
            "customer_account": text_field(body, "customer_account", pattern=IDENT),
            "artifacts": object_field(body, "artifacts"),
            "completed_at": rfc3339(utcnow()),
        }
        operation_id = text_field(body, "operation_id", pattern=IDENT, required=False)
        if operation_id is not None:
            record["operation_id"] = operation_id
        reject = next((f for f in faults if f.kind == "reject"), None)
        if reject is not None:
            error = rejection(reject.classification)
            record["status"] = "failed"
            record["failure"] = {"classification": error.code, "message": error.message}
            keep(self._deployments, record["deployment_id"], record, self._kept)
            error.detail["deployment_id"] = record["deployment_id"]
            raise error
        record["status"] = "succeeded"
        keep(self._deployments, record["deployment_id"], record, self._kept)
        return Reply(201, record)

    async def get_deployment(self, request: Request, faults: list) -> Reply:
        deployment_id = path_param(request, "deployment_id", DEPLOYMENT_ID)
        record = self._deployments.get(deployment_id)
        if record is None:
            raise ApiError(404, "deployment_not_found", f"no deployment {deployment_id!r}")
        return Reply(200, record)

    async def webhook(self, request: Request, faults: list) -> Reply:
        """A notification: kept with its verdict; refused 401 with the signature's code if it does not check."""
        secret = os.environ.get(WEBHOOK_SECRET_ENV)
        if not secret:
            raise ApiError(503, "webhook_secret_missing", f"the sandbox has no ${WEBHOOK_SECRET_ENV} to check with")
        body = await request.body()
        self._received += 1
        entry: dict[str, Any] = {"seq": self._received, "received_at": time.time(),
                                 "delivery_id": request.headers.get("x-tai-delivery"), "verified": False}
        try:
            entry["signed_at"] = verify_signature(secret, body, request.headers.get(HEADER))
        except SignatureError as bad:
            self._webhooks.append({**entry, "refused": bad.code})
            raise ApiError(401, bad.code, bad.message) from None
        try:
            notice = loads_json(body)
        except (ValueError, RecursionError):
            notice = None
        if not isinstance(notice, dict):
            self._webhooks.append({**entry, "refused": "invalid_request"})
            raise ApiError(400, "invalid_request", "a notification is a JSON object")
        self._webhooks.append({**entry, "verified": True, "kind": notice.get("kind"),
                               "customer": notice.get("customer"), "notice": notice})
        return Reply(200, {"received": entry["seq"]})

    async def list_webhooks(self, request: Request, faults: list) -> Reply:
        return Reply(200, {"webhooks": list(self._webhooks)})
