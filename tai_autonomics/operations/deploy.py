"""Acquisition's rules (docs/specification.md §6): the deploy request, and what a customer endpoint's answer means.

:func:`validate_deploy` turns a request ``{spec, idempotency_key?}`` into a :class:`DeploySpec`
or refuses it naming the field; :func:`deploy_rca` maps the customer endpoint's final answer to
a root-cause record with one of :data:`CLASSES`.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from tai_autonomics.operations.fields import an_object, fail, ident, only_fields
from tai_autonomics.operations.rca import Answer, ClassInfo, record

TARGET_CLOUDS = ("aws", "gcp", "azure", "onprem")
SPEC_FIELDS = ("sku_id", "target_cloud", "customer_ref", "customer_account", "region", "artifacts")
MAX_ARTIFACTS_BYTES = 256 * 1024  # the spec travels in the intent receipt, so it stays small
MAX_COST = Decimal("1e12")
MAX_KEY_LEN = 256

CLASSES: dict[str, ClassInfo] = {
    "sku_not_supported": ClassInfo("medium", False, "deploy a SKU the customer's endpoint supports, or have the "
                                                    "customer enable it"),
    "network_error": ClassInfo("medium", True, "check the endpoint's address and reachability; retry later"),
    "authentication_error": ClassInfo("high", False, "renew or fix the credentials the customer issued for "
                                                     "deployments"),
    "insufficient_permissions": ClassInfo("high", False, "ask the customer to grant the deploy role to our "
                                                         "account"),
    "resource_quota_exceeded": ClassInfo("medium", False, "ask the customer to raise the quota, or free resources; "
                                                          "retry later"),
    "timeout": ClassInfo("medium", True, "the deployment may still complete: check its status at the customer "
                                         "before retrying with the same Idempotency-Key"),
    "other": ClassInfo("high", True, "read the root cause and the endpoint's logs; escalate to the customer"),
}
_BY_STATUS: dict[int | None, str] = {
    401: "authentication_error", 403: "insufficient_permissions", 409: "resource_quota_exceeded",
    429: "resource_quota_exceeded", 422: "sku_not_supported"}


@dataclass(frozen=True)
class DeploySpec:
    sku_id: str
    target_cloud: str
    customer_ref: str
    customer_account: str
    region: str
    artifacts: dict[str, Any]
    cost: Decimal

    def to_dict(self) -> dict[str, Any]:
        """The spec as recorded in the intent receipt (``cost`` as a decimal string)."""
        return {"sku_id": self.sku_id, "target_cloud": self.target_cloud, "customer_ref": self.customer_ref,
                "customer_account": self.customer_account, "region": self.region, "artifacts": self.artifacts,
                "cost": str(self.cost)}

    def fingerprint(self) -> str:
        """Identifies the request, so a reused Idempotency-Key with another spec is caught."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":")).encode()).hexdigest()

    def customer_body(self, operation_id: str) -> dict[str, Any]:
        """The body of ``POST /customer/v1/deployments`` (customer_ref and cost stay ours)."""
        return {"sku_id": self.sku_id, "target_cloud": self.target_cloud, "region": self.region,
                "customer_account": self.customer_account, "artifacts": self.artifacts, "operation_id": operation_id}


def validate_deploy(request: Any) -> tuple[DeploySpec, str | None]:
    """``{"spec": {...}, "idempotency_key"?: str}`` → (spec, key), or :class:`InvalidRequest`."""
    request = an_object(request, "request")
    only_fields(request, ("spec",), ("idempotency_key",))
    key = request.get("idempotency_key")
    if key is not None and not (isinstance(key, str) and 0 < len(key) <= MAX_KEY_LEN and key.isprintable()
                                and key.isascii()):
        raise fail("idempotency_key", f"must be 1-{MAX_KEY_LEN} printable ASCII characters")
    return validate_spec(request["spec"]), key


def validate_spec(spec: Any) -> DeploySpec:
    spec = an_object(spec, "spec")
    only_fields(spec, SPEC_FIELDS, ("cost",), where="spec.")
    values = {name: ident(spec, name, "spec.") for name in ("sku_id", "customer_ref", "customer_account", "region")}
    cloud = spec["target_cloud"]
    if not isinstance(cloud, str) or cloud not in TARGET_CLOUDS:
        raise fail("spec.target_cloud", "must be one of " + ", ".join(TARGET_CLOUDS))
    artifacts = an_object(spec["artifacts"], "spec.artifacts")
    try:
        size = len(json.dumps(artifacts, allow_nan=False, separators=(",", ":")).encode())
    except (TypeError, ValueError):
        raise fail("spec.artifacts", "must hold only JSON values (no NaN or infinity)") from None
    if size > MAX_ARTIFACTS_BYTES:
        raise fail("spec.artifacts", f"must be at most {MAX_ARTIFACTS_BYTES} bytes as JSON, got {size}")
    return DeploySpec(target_cloud=cloud, artifacts=artifacts, cost=_cost(spec.get("cost", 0)), **values)


_COST_TEXT = re.compile(r"[0-9]{1,12}(\.[0-9]{1,20})?")


def _cost(value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise fail("spec.cost", "must be a number (USD)")
    if isinstance(value, str) and not _COST_TEXT.fullmatch(value):  # the schema's pattern: not 1e3, +5 or " 5"
        raise fail("spec.cost", 'must be digits with an optional fraction, such as "12.50" (USD)')
    try:
        cost = Decimal(str(value))
    except InvalidOperation:
        raise fail("spec.cost", "must be a decimal number (USD)") from None
    if not cost.is_finite() or not 0 <= cost <= MAX_COST:
        raise fail("spec.cost", f"must be between 0 and {MAX_COST:f} USD")
    return cost


def classify(answer: Answer) -> str:
    """The docs/specification.md §6 class of a customer endpoint's final answer."""
    if answer.code in CLASSES:
        return answer.code  # the endpoint said why
    if answer.failure == "timeout" or answer.status == 504:
        return "timeout"
    if answer.failure or answer.status in (502, 503):
        return "network_error"
    if answer.code == "idempotency_key_reused":
        return "other"  # our request's fault (a 422 too), not the SKU's
    return _BY_STATUS.get(answer.status, "other")


def deploy_rca(answer: Answer, context: dict[str, Any]) -> dict[str, Any]:
    classification = classify(answer)
    return record(classification, CLASSES[classification], answer, context)
