"""Acquisition: deploys generated software into customers' clouds, insured (docs/specification.md §6).

Calls (callers use ``timeout=CALL_TIMEOUT_S`` from :mod:`tai_autonomics.actors.operation_api`):

``deploy`` ``{"spec": {sku_id, target_cloud, customer_ref, customer_account, region, artifacts,
cost?}, "idempotency_key"?: str}`` → ``{"operation_id", "status": "completed"|"failed",
"receipts": [intent, outcome], "rca"?}``. The outcome receipt's payload holds the customer's
deployment (``deployment``) or the root-cause record (``rca``, also in the reply).
Refusals: ``invalid_request`` (``detail.field``; nothing recorded), ``idempotency_key_reused``
(the key names another spec; ``detail.operation_id``), ProdMode's ``mode_refused`` (in eval after
an advisory ``refusal`` receipt), ``sku_not_authorized``, ``coverage_limit_exceeded``,
``cert_validity_too_short``, ``insurance_not_verified``; a ledger error if the intent could not
be recorded (then nothing was deployed).

``get`` ``{"operation_id"}`` → the same shape (``status`` ``in_progress`` with the intent only,
while it runs); ``not_found``.

``status`` → ``{"actor", "url", "operations", "in_progress", "unrecorded", "call_timeout_s", "deadline_s"}``
(``unrecorded``: operations whose outcome receipt the ledger did not take, being offered again).

The customer's endpoint is ``POST {url}/deployments`` with the operation's ``Idempotency-Key``;
a deploy interrupted by a restart is re-sent with the same key at the next start.
"""

from __future__ import annotations

from typing import Any

from tai_autonomics.actors._operation import OperationActor, Step
from tai_autonomics.actors.operation_api import IdempotencyKeyReused
from tai_autonomics.operations import deploy
from tai_autonomics.operations.fields import an_object, ident, only_fields
from tai_autonomics.operations.rca import Answer

STAGE = "deploy"


class Acquisition(OperationActor):
    kind = "deploy"
    party = "customer"
    conflict = IdempotencyKeyReused

    def call_deploy(self, request: Any) -> Any:
        spec, key = deploy.validate_deploy(request)
        return self.submit(key, spec.fingerprint(), spec.to_dict(), lambda op_id: _steps(spec, op_id))

    def call_get(self, request: Any) -> dict[str, Any]:
        request = an_object(request, "request")
        only_fields(request, ("operation_id",))
        return self.lookup(operation_id=ident(request, "operation_id"))

    def final_codes(self) -> tuple[str, ...]:
        return tuple(deploy.CLASSES)

    def rca(self, stage: str, answer: Answer, context: dict[str, Any]) -> dict[str, Any]:
        return deploy.deploy_rca(answer, context)

    def completed_payload(self, results: list[Any]) -> dict[str, Any]:
        return {"deployment": results[0]}

    def resume_steps(self, intent: dict[str, Any], operation_id: str) -> list[Step]:
        spec = deploy.validate_spec({k: intent[k] for k in (*deploy.SPEC_FIELDS, "cost")})
        return _steps(spec, operation_id)


def _steps(spec: deploy.DeploySpec, operation_id: str) -> list[Step]:
    return [Step(STAGE, "/deployments", spec.customer_body(operation_id))]
