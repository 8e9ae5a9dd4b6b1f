"""Publisher: publishes work to the marketplace, insured (docs/specification.md §6); a ``work_id`` is published once.

Calls (callers use ``timeout=CALL_TIMEOUT_S`` from :mod:`tai_autonomics.actors.operation_api`):

``publish`` ``{"work_id", "sku_id", "artifacts": {"code", "tests", "docs", "metadata"}}`` (each
artifact its UTF-8 text) → ``{"operation_id", "status": "completed"|"failed", "receipts":
[intent, outcome], "rca"?}``. The intent records the SHA-256 of each artifact; the completed
receipt holds the marketplace's listing. A repeat of a ``work_id`` returns its first result.
Refusals: ``invalid_request`` (``detail.field``; nothing recorded), ``work_conflict`` (the
work_id was published with other artifacts or SKU; ``detail.operation_id``), and ProdMode's
refusals as for Acquisition (``mode_refused`` in eval after an advisory ``refusal`` receipt).

``get`` ``{"work_id"}`` → the same shape (``in_progress`` while it runs); ``not_found``.

``status`` → as Acquisition's.

The marketplace is called as ``POST {url}/artifacts`` for each artifact (content-addressed, so
re-uploading is harmless), then ``POST {url}/works``. The intent holds hashes, not content, so a
publish interrupted by a restart is finished by its repeat.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from tai_autonomics.actors._operation import OperationActor, Step
from tai_autonomics.actors.operation_api import WorkConflict
from tai_autonomics.operations import publish
from tai_autonomics.operations.fields import an_object, ident, only_fields
from tai_autonomics.operations.rca import Answer


class Publisher(OperationActor):
    kind = "publish"
    party = "marketplace"
    conflict = WorkConflict

    def call_publish(self, request: Any) -> Any:
        work = publish.validate_publish(request)
        intent = work.to_dict()
        fingerprint = hashlib.sha256(json.dumps(intent, sort_keys=True).encode()).hexdigest()
        return self.submit(work.work_id, fingerprint, intent, lambda _op_id: _steps(work))

    def call_get(self, request: Any) -> dict[str, Any]:
        request = an_object(request, "request")
        only_fields(request, ("work_id",))
        return self.lookup(key=ident(request, "work_id"))

    def final_codes(self) -> tuple[str, ...]:
        return tuple(publish.CLASSES)

    def rca(self, stage: str, answer: Answer, context: dict[str, Any]) -> dict[str, Any]:
        return publish.publish_rca(stage, answer, context)

    def completed_payload(self, results: list[Any]) -> dict[str, Any]:
        return {"listing": results[-1]}

    def resume_steps(self, intent: dict[str, Any], operation_id: str) -> None:
        return None  # the content is not in the ledger: the request's repeat finishes it


def _steps(work: publish.Publication) -> list[Step]:
    uploads = [Step(publish.UPLOAD, "/artifacts", work.upload_body(role)) for role in publish.ROLES]
    return [*uploads, Step(publish.REGISTER, "/works", work.register_body())]
