"""The insurer: policy status, certificate issuance, renewal and revocation, signed responses.

Its development CA is the trust subsystem's :class:`CertificateAuthority`, kept in ``ca_dir``
(loaded if one is there, generated and saved otherwise), so a daemon configured with that CA's
certificate as its trust anchor accepts what the sandbox issues. Every response body is signed
with the insurer's Ed25519 key (:mod:`tai_autonomics.trust.insurer_signature`), whose public
half is written to ``signing_key.pub.pem`` and served at ``/insurer/v1/keys``.
"""

from __future__ import annotations

import dataclasses
import secrets
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from starlette.requests import Request

from tai_autonomics.sandbox.web import (
    ApiError,
    Reply,
    Route,
    json_object,
    no_other_fields,
    path_param,
    rfc3339,
    text_field,
    utcnow,
)
from tai_autonomics.trust import (
    PRIVATE_FILE_MODE,
    CertificateAuthority,
    CertPolicyMalformed,
    CsrInvalid,
    Policy,
    atomic_write,
    private_key_pem,
    sample_policy,
)
from tai_autonomics.trust.insurer_signature import key_id_for, public_key_pem, sign_body
from tai_autonomics.trust.issuing import CA_KEY_FILE

PREFIX = "/insurer/v1"
POLICY_ID = r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}"
SERIAL = r"[0-9a-f]{1,40}"
SIGNING_KEY_FILE = "signing_key.pem"
SIGNING_PUBLIC_KEY_FILE = "signing_key.pub.pem"
CA_NAME = "TAI Autonomics Sandbox Insurer CA"
_BACKDATE = timedelta(minutes=5)


@dataclasses.dataclass
class PolicyRecord:
    policy: Policy
    status: str = "active"  # active | revoked (expired is derived from period_end)
    period_end: datetime | None = None
    revoked_at: datetime | None = None
    reason: str | None = None

    def effective_status(self, now: datetime) -> str:
        if self.status == "revoked":
            return "revoked"
        if self.period_end is not None and now >= self.period_end:
            return "expired"
        return "active"

    def to_dict(self, now: datetime) -> dict[str, Any]:
        body: dict[str, Any] = {"policy_id": self.policy.policy_id, "status": self.effective_status(now),
                                "as_of": rfc3339(now), "policy": self.policy.to_dict()}
        if self.period_end is not None:
            body["period_end"] = rfc3339(self.period_end)
        if self.revoked_at is not None:
            body["revoked_at"] = rfc3339(self.revoked_at)
            body["reason"] = self.reason
        return body


@dataclasses.dataclass
class CertificateRecord:
    serial: str
    policy_id: str
    not_before: datetime
    not_after: datetime
    revoked_at: datetime | None = None
    reason: str | None = None

    def to_dict(self, now: datetime) -> dict[str, Any]:
        if self.revoked_at is not None:
            status = "revoked"
        elif now >= self.not_after:
            status = "expired"
        else:
            status = "valid"
        body: dict[str, Any] = {"serial": self.serial, "policy_id": self.policy_id, "status": status,
                                "not_before": rfc3339(self.not_before), "not_after": rfc3339(self.not_after),
                                "as_of": rfc3339(now)}
        if self.revoked_at is not None:
            body["revoked_at"] = rfc3339(self.revoked_at)
            body["reason"] = self.reason
        return body


def load_or_create_signing_key(directory: Path) -> Ed25519PrivateKey:
    path = directory / SIGNING_KEY_FILE
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{path} is not an Ed25519 private key")
    else:
        key = Ed25519PrivateKey.generate()
        atomic_write(path, private_key_pem(key), mode=PRIVATE_FILE_MODE)
    atomic_write(directory / SIGNING_PUBLIC_KEY_FILE, public_key_pem(key.public_key()))
    return key


def load_or_create_ca(ca_dir: Path) -> CertificateAuthority:
    if (ca_dir / CA_KEY_FILE).exists():
        return CertificateAuthority.load(ca_dir)
    ca = CertificateAuthority.generate(CA_NAME)
    ca.save(ca_dir)
    return ca


class Insurer:
    def __init__(self, signing_key: Ed25519PrivateKey, ca: CertificateAuthority,
                 certificate_validity: timedelta = timedelta(days=90)) -> None:
        self._signing_key = signing_key
        self._ca = ca
        self._validity = certificate_validity
        self.reset()

    def reset(self) -> None:
        policy = sample_policy()
        self._policies: dict[str, PolicyRecord] = {policy.policy_id: PolicyRecord(policy)}
        self._certificates: dict[str, CertificateRecord] = {}

    @property
    def key_id(self) -> str:
        return key_id_for(self._signing_key.public_key())

    def routes(self) -> list[Route]:
        issuing = frozenset({"expired_certificate", "revoked_certificate"})
        return [
            Route(f"{PREFIX}/policies/{{policy_id}}", "GET", "insurer.policy_status", self.policy_status),
            Route(f"{PREFIX}/policies/{{policy_id}}/certificates", "POST", "insurer.issue_certificate",
                  self.issue_certificate, issuing),
            Route(f"{PREFIX}/policies/{{policy_id}}/certificates/renew", "POST", "insurer.renew_certificate",
                  self.renew_certificate, issuing),
            Route(f"{PREFIX}/certificates/{{serial}}", "GET", "insurer.certificate_status", self.certificate_status),
            Route(f"{PREFIX}/certificates/{{serial}}/revoke", "POST", "insurer.revoke_certificate",
                  self.revoke_certificate),
            Route(f"{PREFIX}/keys", "GET", "insurer.signing_keys", self.signing_keys),
            Route(f"{PREFIX}/ca", "GET", "insurer.ca_certificate", self.ca_certificate),
        ]

    def sign(self, body: bytes, faults: list) -> dict[str, str]:
        """Signature headers for a response body, spoiled as a ``bad_signature`` fault asks."""
        bad = next((f for f in faults if f.kind == "bad_signature"), None)
        if bad is None:
            return sign_body(self._signing_key, body)
        if bad.mode == "missing":
            return {}
        if bad.mode == "unknown_key":
            return sign_body(Ed25519PrivateKey.generate(), body)
        return sign_body(self._signing_key, body + b"\x00")  # "corrupt": a signature over other bytes

    # --- admin -----------------------------------------------------------------------------

    def policies(self) -> list[dict[str, Any]]:
        now = utcnow()
        return [record.to_dict(now) for record in self._policies.values()]

    def put_policy(self, policy_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """Create or replace a policy: ``{"policy": {...}, "status", "period_end", "reason"}`` (the
        policy as docs/specification.md §5 describes it)."""
        no_other_fields(body, {"policy", "status", "period_end", "reason"})
        try:
            policy = Policy.from_dict(body.get("policy"))
        except CertPolicyMalformed as exc:
            raise ApiError(400, exc.code, exc.message, {"field": "policy"}) from None
        if policy.policy_id != policy_id:
            raise ApiError(400, "invalid_request", "policy.policy_id must equal the policy id in the path",
                           {"field": "policy"})
        status = body.get("status", "active")
        if status not in ("active", "revoked"):
            raise ApiError(400, "invalid_request", "field 'status' must be active or revoked", {"field": "status"})
        period_end = _parse_time(body, "period_end")
        now = utcnow()
        record = PolicyRecord(policy, status, period_end)
        if status == "revoked":
            record.revoked_at = now
            record.reason = text_field(body, "reason", max_len=512, required=False) or "revoked by the insurer"
        self._policies[policy_id] = record
        return record.to_dict(now)

    # --- party endpoints -------------------------------------------------------------------

    def _policy(self, request: Request) -> PolicyRecord:
        policy_id = path_param(request, "policy_id", POLICY_ID)
        record = self._policies.get(policy_id)
        if record is None:
            raise ApiError(404, "policy_not_found", f"the insurer has no policy {policy_id!r}",
                           {"policy_id": policy_id})
        return record

    def _certificate(self, request: Request) -> CertificateRecord:
        serial = path_param(request, "serial", SERIAL).lstrip("0") or "0"
        record = self._certificates.get(serial)
        if record is None:
            raise ApiError(404, "certificate_not_found", f"the insurer issued no certificate with serial {serial}",
                           {"serial": serial})
        return record

    async def policy_status(self, request: Request, faults: list) -> Reply:
        return Reply(200, self._policy(request).to_dict(utcnow()))

    async def issue_certificate(self, request: Request, faults: list) -> Reply:
        record = self._policy(request)
        body = await json_object(request)
        no_other_fields(body, {"csr_pem"})
        return self._issue(record, body, faults)

    async def renew_certificate(self, request: Request, faults: list) -> Reply:
        record = self._policy(request)
        body = await json_object(request)
        no_other_fields(body, {"csr_pem", "current_serial"})
        current_serial = text_field(body, "current_serial", pattern=SERIAL, required=False)
        if current_serial is not None:
            current = self._certificates.get(current_serial.lstrip("0") or "0")
            if current is None or current.policy_id != record.policy.policy_id:
                raise ApiError(404, "certificate_not_found",
                               f"no certificate {current_serial} was issued under this policy",
                               {"serial": current_serial})
            if current.revoked_at is not None:
                raise ApiError(409, "certificate_revoked", "a revoked certificate cannot be renewed",
                               {"serial": current.serial})
        return self._issue(record, body, faults)

    def _issue(self, record: PolicyRecord, body: dict[str, Any], faults: list) -> Reply:
        csr_pem = text_field(body, "csr_pem", max_len=64 * 1024)
        now = utcnow()
        status = record.effective_status(now)
        if status != "active":
            raise ApiError(409, "policy_not_active", f"policy {record.policy.policy_id!r} is {status}",
                           {"policy_id": record.policy.policy_id, "status": status})
        kinds = {f.kind for f in faults}
        if "expired_certificate" in kinds:
            not_after = now - timedelta(days=1)
            not_before = not_after - self._validity
        else:
            not_before, not_after = now - _BACKDATE, now + self._validity
        serial = secrets.randbits(159) | 1 << 158
        try:
            certificate = self._ca.issue(csr_pem.encode(), record.policy, not_before, not_after,
                                         serial_number=serial)
        except CsrInvalid as exc:
            raise ApiError(400, exc.code, exc.message, {"field": "csr_pem"}) from None
        cert_record = CertificateRecord(format(serial, "x"), record.policy.policy_id,
                                        certificate.not_valid_before_utc, certificate.not_valid_after_utc)
        if "revoked_certificate" in kinds:
            cert_record.revoked_at, cert_record.reason = now, "sandbox fault: revoked_certificate"
        self._certificates[cert_record.serial] = cert_record
        pem = certificate.public_bytes(serialization.Encoding.PEM).decode()
        return Reply(201, {"certificate_pem": pem, **cert_record.to_dict(now)})

    async def certificate_status(self, request: Request, faults: list) -> Reply:
        return Reply(200, self._certificate(request).to_dict(utcnow()))

    async def revoke_certificate(self, request: Request, faults: list) -> Reply:
        record = self._certificate(request)
        body = await json_object(request)
        no_other_fields(body, {"reason"})
        reason = text_field(body, "reason", max_len=512, required=False) or "unspecified"
        now = utcnow()
        if record.revoked_at is None:
            record.revoked_at, record.reason = now, reason
        return Reply(200, record.to_dict(now))

    async def signing_keys(self, request: Request, faults: list) -> Reply:
        pem = public_key_pem(self._signing_key.public_key()).decode()
        return Reply(200, {"keys": [{"key_id": self.key_id, "algorithm": "Ed25519", "public_key_pem": pem}]})

    async def ca_certificate(self, request: Request, faults: list) -> Reply:
        return Reply(200, {"certificate_pem": self._ca.certificate.public_bytes(serialization.Encoding.PEM).decode()})


def _parse_time(body: dict[str, Any], name: str) -> datetime | None:
    raw = body.get(name)
    if raw is None:
        return None
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00")) if isinstance(raw, str) else None
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise ApiError(400, "invalid_request", f"field {name!r} must be an RFC 3339 time with a zone",
                       {"field": name})
    return moment
