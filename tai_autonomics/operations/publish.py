"""Publisher's rules (docs/specification.md §6): the publish request, and what the marketplace's answers mean.

A publish is ``{work_id, sku_id, artifacts: {code, tests, docs, metadata}}``, each artifact the
text of that part (UTF-8). Each is hashed (SHA-256 of its UTF-8 bytes, which is also the
marketplace's content address), and the intent receipt records the hashes, not the content.
``sku_id`` is the policy SKU the work is published under: ProdMode's guard authorises and counts
every insured write against one.

The marketplace is called in two stages, ``upload`` (each artifact) then ``register`` (the
work with the four hashes); :func:`publish_rca` maps the final answer of the stage that failed
to one of :data:`CLASSES`.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Any

from tai_autonomics.operations.fields import an_object, fail, ident, only_fields
from tai_autonomics.operations.rca import Answer, ClassInfo, record

ROLES = ("code", "tests", "docs", "metadata")
MAX_ARTIFACT_BYTES = 8 * 1024 * 1024  # the marketplace's limit per artifact
UPLOAD, REGISTER = "upload", "register"

CLASSES: dict[str, ClassInfo] = {
    "artifacts_validation_failed": ClassInfo("low", False, "fix the artifacts the marketplace refused and "
                                                           "publish again"),
    "storage_upload_failed": ClassInfo("medium", True, "the marketplace could not store an artifact; publish "
                                                       "again later (uploads are content-addressed)"),
    "metadata_registration_failed": ClassInfo("medium", True, "the artifacts are stored but the work is not "
                                                              "registered; publish again later"),
    "network_error": ClassInfo("medium", True, "check the marketplace's address and reachability; retry later"),
    "permission_denied": ClassInfo("high", False, "have the marketplace grant our publisher account the right "
                                                  "to publish"),
    "other": ClassInfo("high", True, "read the root cause and the marketplace's logs; escalate"),
}


@dataclass(frozen=True)
class Publication:
    work_id: str
    sku_id: str
    contents: dict[str, bytes]

    @property
    def hashes(self) -> dict[str, str]:
        return {role: hashlib.sha256(self.contents[role]).hexdigest() for role in ROLES}

    def to_dict(self) -> dict[str, Any]:
        """As recorded in the intent receipt: the hashes stand for the content."""
        return {"work_id": self.work_id, "sku_id": self.sku_id, "cost": "0", "artifacts": self.hashes}

    def upload_body(self, role: str) -> dict[str, Any]:
        return {"name": f"{self.work_id}/{role}", "content_base64": base64.b64encode(self.contents[role]).decode()}

    def register_body(self) -> dict[str, Any]:
        return {"work_id": self.work_id, "artifacts": self.hashes}


def validate_publish(request: Any) -> Publication:
    """``{"work_id", "sku_id", "artifacts": {code, tests, docs, metadata}}`` → :class:`Publication`."""
    request = an_object(request, "request")
    only_fields(request, ("work_id", "sku_id", "artifacts"))
    work_id, sku_id = ident(request, "work_id"), ident(request, "sku_id")
    artifacts = an_object(request["artifacts"], "artifacts")
    only_fields(artifacts, ROLES, where="artifacts.")
    contents = {}
    for role in ROLES:
        text = artifacts[role]
        if not isinstance(text, str) or not text:
            raise fail(f"artifacts.{role}", "must be a non-empty string (the artifact's UTF-8 text)")
        try:
            content = text.encode("utf-8")
        except UnicodeEncodeError:
            raise fail(f"artifacts.{role}", "must be valid Unicode text (no lone surrogates)") from None
        if len(content) > MAX_ARTIFACT_BYTES:
            raise fail(f"artifacts.{role}", f"must be at most {MAX_ARTIFACT_BYTES} bytes, got {len(content)}")
        contents[role] = content
    return Publication(work_id, sku_id, contents)


def classify(stage: str, answer: Answer) -> str:
    """The docs/specification.md §6 class of the marketplace's final answer in ``stage`` (upload or register)."""
    if answer.code in CLASSES:
        return answer.code  # the marketplace said why
    if answer.failure or answer.status in (429, 502, 503, 504):
        return "network_error"
    if answer.status in (401, 403):
        return "permission_denied"
    if answer.status is None or answer.status < 400:
        return "other"
    if stage == UPLOAD:
        return "artifacts_validation_failed" if answer.status < 500 else "storage_upload_failed"
    return "metadata_registration_failed"


def publish_rca(stage: str, answer: Answer, context: dict[str, Any]) -> dict[str, Any]:
    classification = classify(stage, answer)
    return record(classification, CLASSES[classification], answer, context)
