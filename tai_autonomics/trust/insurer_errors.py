"""The errors of talking to the insurer: one base class, one stable ``code`` per reason.

Unavailability comes in three kinds that callers may treat alike (catch
:class:`InsuranceServiceUnavailableError`): plain, circuit open, rate limited.
"""

from __future__ import annotations

from tai_autonomics.errors import TaiError


class InsuranceError(TaiError):
    """Base of the InsuranceClient's errors."""

    code = "insurance_error"


class InsuranceServiceUnavailableError(InsuranceError):
    """The insurer could not be reached or kept failing (after retries), and no fresh cache helps."""

    code = "insurance_service_unavailable"


class InsuranceCircuitOpenError(InsuranceServiceUnavailableError):
    """The circuit breaker is open: the insurer failed repeatedly, calls are not attempted for a while."""

    code = "insurance_circuit_open"


class RateLimitedError(InsuranceServiceUnavailableError):
    """The insurer answered 429 on every attempt, or asked to wait longer than we may (``retry_after_s``)."""

    code = "rate_limited"


class InsuranceCacheStaleError(InsuranceError):
    """The insurer is unavailable and the cached policy status is older than the TTL (or absent)."""

    code = "insurance_cache_stale"


class PolicyNotFoundError(InsuranceError):
    """The insurer knows no policy with this id."""

    code = "policy_not_found"


class InsuranceExpiredError(InsuranceError):
    """The policy's period has ended."""

    code = "insurance_expired"


class InsuranceRevokedError(InsuranceError):
    """The insurer revoked the policy or the certificate."""

    code = "insurance_revoked"


class CertificateNotFoundError(InsuranceError):
    """The insurer knows no certificate with this serial."""

    code = "certificate_not_found"


class InsurerRejectedError(InsuranceError):
    """The insurer refused the request (a 4xx other than the ones above); ``detail`` has its code."""

    code = "insurer_rejected"


class InsurerResponseInvalidError(InsuranceError):
    """A correctly signed answer that is not what the contract says (not JSON, fields missing or wrong)."""

    code = "insurer_response_invalid"


class InsurerSignatureInvalidError(InsuranceError):
    """An insurer response is unsigned, signed by an unknown key, or its signature does not verify."""

    code = "insurer_signature_invalid"


class InsurerKeyInvalidError(InsuranceError):
    """A configured insurer public key cannot be loaded."""

    code = "insurer_key_invalid"
