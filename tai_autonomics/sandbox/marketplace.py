"""The marketplace: content-addressed artifact uploads and registration of published works."""

from __future__ import annotations

import base64
import binascii
import hashlib
import uuid
from typing import Any

from starlette.requests import Request

from tai_autonomics.sandbox.web import (
    KEPT_RECORDS,
    ApiError,
    Reply,
    Route,
    json_object,
    keep,
    no_other_fields,
    object_field,
    path_param,
    rfc3339,
    text_field,
    utcnow,
)

PREFIX = "/marketplace/v1"
WORK_ID = r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}"
SHA256_HEX = r"[0-9a-f]{64}"
ARTIFACT_ROLES = ("code", "tests", "docs", "metadata")
MAX_ARTIFACT_BYTES = 8 * 1024 * 1024


class Marketplace:
    def __init__(self, kept: int = KEPT_RECORDS) -> None:
        self._kept = kept
        self.reset()

    def reset(self) -> None:
        self._artifacts: dict[str, int] = {}
        self._works: dict[str, dict[str, Any]] = {}

    def routes(self) -> list[Route]:
        return [
            Route(f"{PREFIX}/artifacts", "POST", "marketplace.upload_artifact", self.upload_artifact),
            Route(f"{PREFIX}/works", "POST", "marketplace.register_work", self.register_work),
            Route(f"{PREFIX}/works/{{work_id}}", "GET", "marketplace.get_work", self.get_work),
        ]

    async def upload_artifact(self, request: Request, faults: list) -> Reply:
        body = await json_object(request)
        no_other_fields(body, {"name", "content_base64"})
        name = text_field(body, "name", max_len=256)
        encoded = text_field(body, "content_base64", max_len=MAX_ARTIFACT_BYTES * 2)
        try:
            content = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise ApiError(400, "invalid_request", "field 'content_base64' is not valid base64",
                           {"field": "content_base64"}) from None
        if len(content) > MAX_ARTIFACT_BYTES:
            raise ApiError(413, "artifact_too_large", f"an artifact may hold at most {MAX_ARTIFACT_BYTES} bytes")
        digest = hashlib.sha256(content).hexdigest()
        keep(self._artifacts, digest, len(content), self._kept)
        return Reply(201, {"sha256": digest, "size": len(content), "name": name})

    async def register_work(self, request: Request, faults: list) -> Reply:
        body = await json_object(request)
        no_other_fields(body, {"work_id", "artifacts", "title"})
        work_id = text_field(body, "work_id", pattern=WORK_ID)
        title = text_field(body, "title", max_len=512, required=False)
        artifacts = object_field(body, "artifacts")
        if set(artifacts) != set(ARTIFACT_ROLES):
            raise ApiError(400, "invalid_request", "field 'artifacts' must name exactly: " + ", ".join(ARTIFACT_ROLES),
                           {"field": "artifacts"})
        for role in ARTIFACT_ROLES:
            text_field(artifacts, role, pattern=SHA256_HEX)
        missing = sorted(h for h in artifacts.values() if h not in self._artifacts)
        if missing:
            raise ApiError(422, "artifact_not_found", "artifacts must be uploaded before a work is registered",
                           {"missing": missing})
        existing = self._works.get(work_id)
        if existing is not None:
            if existing["artifacts"] != artifacts:
                raise ApiError(409, "work_conflict", f"work {work_id!r} is already registered with other artifacts",
                               {"listing_id": existing["listing_id"]})
            return Reply(200, existing)
        listing = {"listing_id": "lst-" + uuid.uuid4().hex[:16], "work_id": work_id, "artifacts": dict(artifacts),
                   "registered_at": rfc3339(utcnow())}
        if title is not None:
            listing["title"] = title
        keep(self._works, work_id, listing, self._kept)
        return Reply(201, listing)

    async def get_work(self, request: Request, faults: list) -> Reply:
        work_id = path_param(request, "work_id", WORK_ID)
        listing = self._works.get(work_id)
        if listing is None:
            raise ApiError(404, "work_not_found", f"no work {work_id!r} is registered")
        return Reply(200, listing)
