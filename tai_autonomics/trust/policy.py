"""The insurance policy carried in a certificate's critical private extension (docs/specification.md §5).

The extension (OID :data:`POLICY_OID`) holds a DER UTF8String whose text is a JSON object::

    {"policy_id": "...", "customer_name": "...", "customer_account": "...",
     "authorized_sku": ["sku-001", ...],
     "coverage_limits": {"sku-001": {"limit_count": 1000000, "limit_cost": 1000000000}, ...}}

:class:`Policy` is the only way the rest of the code sees it: parsing validates the whole schema,
so a ``Policy`` instance is always well-formed. Unknown fields are refused rather than ignored —
the extension is critical, and a critical extension we only partly understand must not be
accepted as if we understood it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from types import MappingProxyType
from typing import Any

from cryptography import x509

from tai_autonomics.trust._parsing import PARSE_ERRORS
from tai_autonomics.trust.errors import (
    CertPolicyExtensionMissing,
    CertPolicyExtensionNotCritical,
    CertPolicyMalformed,
)
from tai_autonomics.validation import is_int

POLICY_OID = x509.ObjectIdentifier("2.25.164504070593493259471820921850688795775")
"""UUID-derived OID (X.667) of the insurance policy extension."""

_UTF8STRING_TAG = 0x0C
_FIELDS = ("policy_id", "coverage_limits", "authorized_sku", "customer_name", "customer_account")
_LIMIT_FIELDS = ("limit_count", "limit_cost")
# Bounds keep hostile documents (1e999999, 10**4000) from costing memory or time downstream.
_MAX_COUNT = 2**63 - 1
_MAX_COST = Decimal(10) ** 18
_MIN_COST_EXPONENT = -6


@dataclass(frozen=True)
class CoverageLimit:
    """Monthly coverage for one SKU: how many operations, and how much cost (USD), are insured."""

    limit_count: int
    limit_cost: Decimal

    def __post_init__(self) -> None:
        count = self.limit_count
        if not is_int(count) or not 0 <= count <= _MAX_COUNT:
            raise CertPolicyMalformed(f"limit_count must be an integer from 0 to {_MAX_COUNT}, got {count!r}")
        object.__setattr__(self, "limit_cost", _non_negative_decimal(self.limit_cost))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form; whole-number costs stay integers so the document round-trips exactly."""
        cost = self.limit_cost
        return {
            "limit_count": self.limit_count,
            "limit_cost": int(cost) if cost == cost.to_integral_value() else float(cost),
        }


@dataclass(frozen=True)
class Policy:
    """A validated insurance policy. Construct directly, or parse with the ``from_*`` methods."""

    policy_id: str
    coverage_limits: Mapping[str, CoverageLimit] = field(hash=False)
    authorized_sku: tuple[str, ...]
    customer_name: str
    customer_account: str

    def __post_init__(self) -> None:
        for name in ("policy_id", "customer_name", "customer_account"):
            _require_text(name, getattr(self, name))
        if not isinstance(self.coverage_limits, Mapping) or not self.coverage_limits:
            raise CertPolicyMalformed("coverage_limits must be a non-empty object of SKU -> limits")
        limits: dict[str, CoverageLimit] = {}
        for sku, limit in self.coverage_limits.items():
            _require_text("coverage_limits key", sku)
            if not isinstance(limit, CoverageLimit):
                raise CertPolicyMalformed(f"coverage_limits[{sku!r}] must be a CoverageLimit")
            limits[sku] = limit
        skus = self.authorized_sku
        if isinstance(skus, str) or not isinstance(skus, (list, tuple)) or not skus:
            raise CertPolicyMalformed("authorized_sku must be a non-empty list of SKU strings")
        for sku in skus:
            _require_text("authorized_sku entry", sku)
            if sku not in limits:
                raise CertPolicyMalformed(f"authorized_sku {sku!r} has no entry in coverage_limits")
        if len(set(skus)) != len(skus):
            raise CertPolicyMalformed("authorized_sku lists a SKU more than once")
        object.__setattr__(self, "authorized_sku", tuple(skus))
        object.__setattr__(self, "coverage_limits", MappingProxyType(limits))

    def covers(self, sku: str) -> bool:
        """True if operations on ``sku`` are insured by this policy."""
        return sku in self.authorized_sku

    # --- JSON -----------------------------------------------------------------------------

    @classmethod
    def from_dict(cls, data: Any) -> Policy:
        """Validate a decoded JSON document against the schema; refuses unknown or missing fields."""
        if not isinstance(data, dict):
            raise CertPolicyMalformed("the policy must be a JSON object")
        missing = [name for name in _FIELDS if name not in data]
        if missing:
            raise CertPolicyMalformed(f"the policy lacks required field(s): {', '.join(missing)}")
        unknown = sorted(set(data) - set(_FIELDS))
        if unknown:
            raise CertPolicyMalformed(f"the policy has unknown field(s): {', '.join(unknown)}")
        raw_limits = data["coverage_limits"]
        if not isinstance(raw_limits, dict):
            raise CertPolicyMalformed("coverage_limits must be a JSON object of SKU -> limits")
        return cls(
            policy_id=data["policy_id"],
            coverage_limits={sku: _limit_from_dict(sku, raw) for sku, raw in raw_limits.items()},
            authorized_sku=data["authorized_sku"],
            customer_name=data["customer_name"],
            customer_account=data["customer_account"],
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON document (plain dicts and lists)."""
        return {
            "policy_id": self.policy_id,
            "coverage_limits": {sku: limit.to_dict() for sku, limit in sorted(self.coverage_limits.items())},
            "authorized_sku": list(self.authorized_sku),
            "customer_name": self.customer_name,
            "customer_account": self.customer_account,
        }

    @classmethod
    def from_json(cls, text: str | bytes) -> Policy:
        """Parse and validate JSON text; numbers with fractions are read exactly (as Decimal)."""
        try:
            data = json.loads(
                text, parse_float=Decimal, parse_constant=_reject_constant, object_pairs_hook=_unique_keys
            )
        except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            raise CertPolicyMalformed(f"the policy is not valid JSON: {exc}") from None
        return cls.from_dict(data)

    def to_json(self) -> str:
        """Compact JSON with sorted keys, so equal policies serialise to equal bytes."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    # --- X.509 extension ------------------------------------------------------------------

    @classmethod
    def from_extension_value(cls, der: bytes) -> Policy:
        """Parse the extension's value: a DER UTF8String holding the JSON document."""
        return cls.from_json(_decode_utf8string(der))

    def to_extension_value(self) -> bytes:
        """The extension's value: the JSON document as a DER UTF8String."""
        return _encode_utf8string(self.to_json())

    def to_extension(self) -> x509.UnrecognizedExtension:
        """The extension object for ``CertificateBuilder.add_extension(ext, critical=True)``."""
        return x509.UnrecognizedExtension(POLICY_OID, self.to_extension_value())

    @classmethod
    def from_certificate(cls, certificate: x509.Certificate) -> Policy:
        """Read the policy from a certificate, refusing a missing, non-critical or malformed extension."""
        try:
            extension = certificate.extensions.get_extension_for_oid(POLICY_OID)
        except x509.ExtensionNotFound:
            raise CertPolicyExtensionMissing(
                f"the certificate has no insurance policy extension (OID {POLICY_OID.dotted_string}); "
                "it is not an insurance certificate — ask the insurer for one"
            ) from None
        except PARSE_ERRORS as exc:  # duplicate or undecodable extensions
            raise CertPolicyMalformed(f"the certificate's extensions cannot be read: {exc}") from None
        if not extension.critical:
            raise CertPolicyExtensionNotCritical(
                "the insurance policy extension is not marked critical, so verifiers that do not know it "
                "would silently ignore the policy; ask the insurer to reissue it as critical"
            )
        value = extension.value
        if not isinstance(value, x509.UnrecognizedExtension):
            raise CertPolicyMalformed("the insurance policy extension has an unexpected type")
        return cls.from_extension_value(value.value)


def _limit_from_dict(sku: str, raw: Any) -> CoverageLimit:
    if not isinstance(raw, dict):
        raise CertPolicyMalformed(f"coverage_limits[{sku!r}] must be an object with limit_count and limit_cost")
    missing = [name for name in _LIMIT_FIELDS if name not in raw]
    unknown = sorted(set(raw) - set(_LIMIT_FIELDS))
    if missing or unknown:
        raise CertPolicyMalformed(
            f"coverage_limits[{sku!r}] must have exactly limit_count and limit_cost "
            f"(missing: {missing or 'none'}, unknown: {unknown or 'none'})"
        )
    try:
        return CoverageLimit(limit_count=raw["limit_count"], limit_cost=raw["limit_cost"])
    except CertPolicyMalformed as exc:
        raise CertPolicyMalformed(f"coverage_limits[{sku!r}]: {exc.message}") from None


def _non_negative_decimal(value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        raise CertPolicyMalformed(f"limit_cost must be a non-negative number, got {value!r}")
    number = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    if not number.is_finite() or not 0 <= number <= _MAX_COST:
        raise CertPolicyMalformed(f"limit_cost must be a number from 0 to {_MAX_COST:.0E}, got {value!r}")
    exponent = number.as_tuple().exponent
    if isinstance(exponent, int) and exponent < _MIN_COST_EXPONENT:
        raise CertPolicyMalformed(f"limit_cost may have at most {-_MIN_COST_EXPONENT} decimal places, got {value!r}")
    return number


def _require_text(name: str, value: Any) -> None:
    if not isinstance(value, str) or not value.strip():
        raise CertPolicyMalformed(f"{name} must be a non-empty string, got {value!r}")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """Refuse duplicate keys: parsers disagree on which one wins, and an insurer's document must mean one thing."""
    document: dict[str, Any] = {}
    for key, value in pairs:
        if key in document:
            raise CertPolicyMalformed(f"the policy JSON repeats the key {key!r}")
        document[key] = value
    return document


def _reject_constant(name: str) -> Any:
    raise CertPolicyMalformed(f"the policy JSON contains {name}, which is not a number")


def _encode_utf8string(text: str) -> bytes:
    body = text.encode("utf-8")
    return bytes([_UTF8STRING_TAG]) + _encode_length(len(body)) + body


def _encode_length(length: int) -> bytes:
    if length < 0x80:
        return bytes([length])
    octets = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(octets)]) + octets


def _decode_utf8string(der: bytes) -> str:
    """Strict DER: the tag, a minimal definite length, and nothing after the value."""
    if len(der) < 2 or der[0] != _UTF8STRING_TAG:
        raise CertPolicyMalformed("the policy extension value is not a DER UTF8String")
    first = der[1]
    if first < 0x80:
        length, offset = first, 2
    else:
        count = first & 0x7F
        octets = der[2 : 2 + count]
        if count == 0 or len(octets) != count or octets[0] == 0:
            raise CertPolicyMalformed("the policy extension value has an invalid DER length")
        length, offset = int.from_bytes(octets, "big"), 2 + count
        if length < 0x80:
            raise CertPolicyMalformed("the policy extension value has a non-minimal DER length")
    if len(der) != offset + length:
        raise CertPolicyMalformed("the policy extension value's DER length does not match its size")
    try:
        return der[offset:].decode("utf-8")
    except UnicodeDecodeError:
        raise CertPolicyMalformed("the policy extension value is not valid UTF-8") from None
