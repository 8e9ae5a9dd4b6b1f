"""The one exception hierarchy of the project, in the style of httpx's ``_exceptions.py``.

Every error we raise on purpose is a :class:`TaiError` with a stable machine-readable ``code``
(used in HTTP bodies, CLI output and receipts) and a message a person can act on. Each code has
one class, registered when the class is defined: an error that crossed an actor boundary (sent
as its code and message) is rebuilt as that class (:func:`rebuild`), so callers catch classes,
never compare codes. A code no class claims comes back as a plain :class:`TaiError` keeping it.

The base and the generic refusals live here; the others live with the code that raises them and
are re-exported from this module on first use (``from tai_autonomics.errors import CertExpired``),
so importing it stays cheap. The tree, each class with the code it claims:

.. code-block:: text

    TaiError  [error]
    ├── AlreadyRunning  [already_running]
    ├── ArgumentsInvalid  [invalid_arguments]
    ├── CallError  [call_failed]
    │   ├── ActorCrashed  [actor_crashed]
    │   ├── ActorRestarting  [actor_restarting]
    │   ├── CallTimeout  [call_timeout]
    │   ├── NoSuchActor  [no_such_actor]
    │   └── UnknownMessage  [unknown_message]
    ├── CertStatusInvalid  [cert_status_invalid]
    ├── ChainAmbiguous  [chain_ambiguous]
    ├── ClientError  [gateway_error]
    │   └── GatewayUnreachable  [gateway_unreachable]
    ├── ConfigError  [config_invalid]
    │   └── SettingMissing  [config_missing]
    ├── Conflict  [conflict]
    ├── DataDirUnwritable  [data_dir_unwritable]
    ├── Draining  [draining]
    ├── FaultConfigError  [sandbox_fault_invalid]
    ├── FileUnreadable  [file_unreadable]
    ├── GatewayStartError  [gateway_start_failed]
    ├── HttpError
    ├── InsuranceError  [insurance_error]
    │   ├── CertificateNotFoundError  [certificate_not_found]
    │   ├── InsuranceCacheStaleError  [insurance_cache_stale]
    │   ├── InsuranceExpiredError  [insurance_expired]
    │   ├── InsuranceRevokedError  [insurance_revoked]
    │   ├── InsuranceServiceUnavailableError  [insurance_service_unavailable]
    │   │   ├── InsuranceCircuitOpenError  [insurance_circuit_open]
    │   │   └── RateLimitedError  [rate_limited]
    │   ├── InsurerKeyInvalidError  [insurer_key_invalid]
    │   ├── InsurerRejectedError  [insurer_rejected]
    │   ├── InsurerResponseInvalidError  [insurer_response_invalid]
    │   ├── InsurerSignatureInvalidError  [insurer_signature_invalid]
    │   └── PolicyNotFoundError  [policy_not_found]
    ├── InsuranceNotConfigured  [insurance_not_configured]
    ├── InvalidRequest  [invalid_request]
    │   └── PricingError  [invalid_metrics]
    ├── LedgerError  [ledger_error]
    │   ├── BackupFailed  [ledger_backup_failed]
    │   ├── BackupInvalid  [ledger_backup_invalid]
    │   ├── CanonicalJSONError  [ledger_bad_json]
    │   ├── DraftError  [ledger_bad_draft]
    │   │   ├── CoverageExceeded  [coverage_limit_exceeded]
    │   │   ├── OperationExists  [operation_exists]
    │   │   └── OperationNotOpen  [operation_not_open]
    │   ├── ExportFailed  [ledger_export_failed]
    │   ├── LedgerKeyError  [ledger_key_invalid]
    │   ├── LedgerRequestInvalid  [ledger_bad_request]
    │   ├── NotFoundError  [ledger_not_found]
    │   ├── NotSequencer  [ledger_not_sequencer]
    │   ├── NoteError  [ledger_note_invalid]
    │   ├── ProofError  [ledger_proof_invalid]
    │   ├── RestoreFailed  [ledger_restore_failed]
    │   ├── RestoreRefused  [ledger_restore_refused]
    │   ├── StoreError  [ledger_store_error]
    │   │   ├── ConflictError  [ledger_conflict]
    │   │   │   └── LedgerBusy  [ledger_busy]
    │   │   ├── StoreCorruptError  [ledger_store_corrupt]
    │   │   └── StoreUnavailable  [ledger_unavailable]
    │   ├── VerificationError  [ledger_verify_failed]
    │   └── VerifyAborted  [ledger_verify_aborted]
    ├── ModeRefusal  [mode_refused]
    │   ├── InsuranceNotVerified  [insurance_not_verified]
    │   └── ModeNotReadOnly  [mode_not_read_only]
    ├── NotFound  [not_found]
    ├── OperationConflict
    │   ├── IdempotencyKeyReused  [idempotency_key_reused]
    │   └── WorkConflict  [work_conflict]
    ├── OperationInterrupted  [operation_interrupted]
    ├── Problems  [start_checks_failed]
    ├── SandboxStartError  [sandbox_start_failed]
    ├── ShellClientError  [shell_unavailable]
    │   ├── ShellRefused  [shell_refused]
    │   └── ShellUrlInvalid  [invalid_url]
    ├── ShellInputError  [invalid_command]
    ├── SignatureError  [signature_invalid]
    │   ├── SignatureExpired  [signature_expired]
    │   ├── SignatureMalformed  [signature_malformed]
    │   ├── SignatureMismatch  [signature_mismatch]
    │   └── SignatureMissing  [signature_missing]
    ├── SkuNotAuthorized  [sku_not_authorized]
    ├── StartError  [start_failed]
    ├── SupervisorBusy  [supervisor_busy]
    ├── SystemError_  [actor_system_error]
    ├── TokenMissing  [token_missing]
    ├── TrustError  [trust_error]
    │   ├── CaStoreInvalid  [ca_store_invalid]
    │   ├── CertNotLoaded  [cert_not_loaded]
    │   ├── CertRenewalElsewhere  [cert_renewal_elsewhere]
    │   ├── CertStateConflict  [cert_state_conflict]
    │   ├── CertStateCorrupt  [cert_state_corrupt]
    │   ├── CertStoreUnavailable  [cert_store_unavailable]
    │   ├── CertificateError  [cert_invalid]
    │   │   ├── CertChainInvalid  [cert_chain_invalid]
    │   │   ├── CertExpired  [cert_expired]
    │   │   ├── CertIntermediateMissing  [cert_intermediate_missing]
    │   │   ├── CertIssuerMismatch  [cert_issuer_mismatch]
    │   │   ├── CertKeyMismatch  [cert_key_mismatch]
    │   │   ├── CertMalformed  [cert_malformed]
    │   │   ├── CertNotYetValid  [cert_not_yet_valid]
    │   │   ├── CertPolicyExtensionMissing  [cert_policy_extension_missing]
    │   │   ├── CertPolicyExtensionNotCritical  [cert_policy_extension_not_critical]
    │   │   ├── CertPolicyMalformed  [cert_policy_malformed]
    │   │   ├── CertRenewalMismatch  [cert_renewal_mismatch]
    │   │   ├── CertRevoked  [cert_revoked]
    │   │   ├── CertSignatureInvalid  [cert_signature_invalid]
    │   │   ├── CertUntrustedIssuer  [cert_untrusted_issuer]
    │   │   ├── CertValidityTooShort  [cert_validity_too_short]
    │   │   └── CertWrongKeyUsage  [cert_wrong_key_usage]
    │   ├── CsrInvalid  [csr_invalid]
    │   ├── DevCaExists  [dev_ca_exists]
    │   ├── KeyInvalid  [key_invalid]
    │   ├── RenewalFailed  [cert_renewal_failed]
    │   └── TrustAnchorInvalid  [trust_anchor_invalid]
    └── Unreachable
        ├── InsurerUnreachable  [insurer_unreachable]
        └── StoreUnreachable  [store_unreachable]

``tests/test_error_tree.py`` redraws this tree from the classes: a class added, moved or renamed
without it here fails the suite.
"""

from __future__ import annotations

import importlib
from typing import Any


class TaiError(Exception):
    """Base of every error raised deliberately by tai_autonomics.

    A subclass that sets its own ``code`` is registered under it when it is defined: codes are
    unique (a second class claiming one is a bug, refused at import), and an error that crossed
    an actor boundary as a code and a message is rebuilt as its class by :func:`rebuild`, so
    callers catch classes instead of comparing codes.
    """

    code: str = "error"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "code" not in cls.__dict__:
            return
        known = _REGISTRY.get(cls.code)
        if known is not None and (known.__module__, known.__qualname__) != (cls.__module__, cls.__qualname__):
            raise TypeError(f"error code {cls.code!r} of {cls.__qualname__} is already {known.__qualname__}'s")
        _REGISTRY[cls.code] = cls

    def __init__(self, message: str, *, code: str | None = None, detail: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        self.message = message
        self.detail: dict[str, Any] = dict(detail or {})

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of docs/specification.md §7's error body (without the request id)."""
        return {"code": self.code, "message": self.message, "detail": self.detail}

    def __reduce__(self) -> tuple[Any, ...]:  # errors cross process boundaries pickled as actor replies
        return (_restore, (type(self), self.message, self.code, self.detail))


_REGISTRY: dict[str, type[TaiError]] = {}


def registered() -> dict[str, type[TaiError]]:
    """Every code a class claims, with that class (the ones whose modules are imported)."""
    return dict(_REGISTRY)


def rebuild(code: str, message: str, detail: dict[str, Any] | None = None) -> TaiError:
    """The error ``code`` names, as its registered class (an unknown code: a :class:`TaiError`
    keeping the code), without running the class's own ``__init__``: subclasses keep what their
    constructors take in ``detail``, so nothing is lost."""
    return _restore(_REGISTRY.get(code, TaiError), message, code, detail)


def _restore(cls: type[TaiError], message: str, code: str, detail: dict[str, Any] | None) -> TaiError:
    err = cls.__new__(cls)
    TaiError.__init__(err, message, code=code, detail=detail)
    return err


class HttpError(TaiError):
    """A request refused over HTTP: ``status`` is the HTTP status, ``headers`` extra headers.

    Shared by the gateway and the sandbox, whose error bodies have the same shape. It is an
    answer, not a cause: its code is given per instance (the cause's, or an outside party's that
    the sandbox plays), and the same code may answer with different statuses in different places
    (``invalid_request`` is 400 for a malformed body, 422 for a contract event's meaning), so it
    claims no code in the registry.
    """

    def __init__(self, status: int, code: str, message: str, detail: dict[str, Any] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message, code=code, detail=detail)
        self.status = status
        self.headers = dict(headers or {})

    def __reduce__(self) -> tuple[Any, ...]:
        return (HttpError, (self.status, self.code, self.message, self.detail, self.headers))


class InvalidRequest(TaiError):
    """A call's (or a request's) payload is malformed: a field is missing, of the wrong type or out
    of range; ``detail["field"]`` names it when there is one. The caller must change the request;
    nothing was done."""

    code = "invalid_request"


class Conflict(TaiError):
    """The request conflicts with what is already there (HTTP 409); the more precise conflicts
    (``ledger_conflict``, ``coverage_limit_exceeded``, a reused key) have classes of their own."""

    code = "conflict"


class ConfigError(TaiError):
    """A configuration file or option is invalid; names the file, the key path and the reason."""

    code = "config_invalid"

    def __init__(self, file: str, key: str, reason: str) -> None:
        where = f"{file}: {key}" if key else file
        super().__init__(f"{where}: {reason}", detail={"file": file, "key": key, "reason": reason})

    @property
    def file(self) -> str:
        return str(self.detail.get("file", ""))

    @property
    def key(self) -> str:
        return str(self.detail.get("key", ""))

    @property
    def reason(self) -> str:
        return str(self.detail.get("reason", ""))


class Problems(TaiError):
    """Several problems found at once (e.g. every bad setting of a release, checked before a
    start): the CLI prints each on its own line, so one run names them all."""

    code = "start_checks_failed"

    def __init__(self, message: str, problems: list[TaiError]) -> None:
        super().__init__(message, detail={"problems": [problem.to_dict() for problem in problems]})

    @property
    def problems(self) -> list[TaiError]:
        """Each problem, rebuilt from ``detail`` (so a pickled or rebuilt copy has them too)."""
        return [rebuild(p["code"], p["message"], p.get("detail")) for p in self.detail.get("problems", [])]


#: where each class outside this module is defined: re-exported lazily (PEP 562), since most of
#: those modules import this one, and importing them all would make every import pay for the tree.
_HOMES: dict[str, tuple[str, ...]] = {
    "tai_autonomics.actors.insurance_client": ("InsuranceNotConfigured",),
    "tai_autonomics.actors.operation_api": ("Draining", "IdempotencyKeyReused", "NotFound", "OperationConflict",
        "OperationInterrupted", "WorkConflict"),
    "tai_autonomics.actors.prod_mode": ("CertStatusInvalid",),
    "tai_autonomics.cli._errors": ("AlreadyRunning", "ArgumentsInvalid", "ChainAmbiguous", "FileUnreadable",
        "TokenMissing"),
    "tai_autonomics.client._client": ("ClientError", "GatewayUnreachable"),
    "tai_autonomics.datadir": ("DataDirUnwritable",),
    "tai_autonomics.gateway.server": ("GatewayStartError",),
    "tai_autonomics.gateway.shell_client": ("ShellClientError", "ShellRefused", "ShellUrlInvalid"),
    "tai_autonomics.gateway.shell_commands": ("ShellInputError",),
    "tai_autonomics.ledger._sequencer": ("NotSequencer",),
    "tai_autonomics.ledger.backup": ("BackupFailed", "BackupInvalid", "RestoreFailed", "RestoreRefused"),
    "tai_autonomics.ledger.errors": ("CanonicalJSONError", "ConflictError", "DraftError", "ExportFailed", "LedgerBusy",
        "LedgerError", "LedgerKeyError", "LedgerRequestInvalid", "NotFoundError", "NoteError", "ProofError",
        "StoreCorruptError", "StoreError", "StoreUnavailable", "VerificationError", "VerifyAborted"),
    "tai_autonomics.ledger.operations": ("CoverageExceeded", "OperationExists", "OperationNotOpen"),
    "tai_autonomics.notifications.signing": ("SignatureError", "SignatureExpired", "SignatureMalformed",
        "SignatureMismatch", "SignatureMissing"),
    "tai_autonomics.operations.coverage": ("SkuNotAuthorized",),
    "tai_autonomics.operations.mode": ("InsuranceNotVerified", "ModeNotReadOnly", "ModeRefusal"),
    "tai_autonomics.operations.pricing": ("PricingError",),
    "tai_autonomics.preflight": ("InsurerUnreachable", "SettingMissing", "StoreUnreachable", "Unreachable"),
    "tai_autonomics.runtime.errors": ("ActorCrashed", "ActorRestarting", "CallError", "CallTimeout", "NoSuchActor",
        "StartError", "SupervisorBusy", "SystemError_", "UnknownMessage"),
    "tai_autonomics.sandbox.faults": ("FaultConfigError",),
    "tai_autonomics.sandbox.runner": ("SandboxStartError",),
    "tai_autonomics.trust.errors": ("CaStoreInvalid", "CertChainInvalid", "CertExpired", "CertIntermediateMissing",
        "CertIssuerMismatch", "CertKeyMismatch", "CertMalformed", "CertNotLoaded", "CertNotYetValid",
        "CertPolicyExtensionMissing", "CertPolicyExtensionNotCritical", "CertPolicyMalformed", "CertRenewalElsewhere",
        "CertRenewalMismatch", "CertRevoked", "CertSignatureInvalid", "CertStateConflict", "CertStateCorrupt",
        "CertStoreUnavailable", "CertUntrustedIssuer", "CertValidityTooShort", "CertWrongKeyUsage", "CertificateError",
        "CsrInvalid", "DevCaExists", "KeyInvalid", "RenewalFailed", "TrustAnchorInvalid", "TrustError"),
    "tai_autonomics.trust.insurer_errors": ("CertificateNotFoundError", "InsuranceCacheStaleError",
        "InsuranceCircuitOpenError", "InsuranceError", "InsuranceExpiredError", "InsuranceRevokedError",
        "InsuranceServiceUnavailableError", "InsurerKeyInvalidError", "InsurerRejectedError",
        "InsurerResponseInvalidError", "InsurerSignatureInvalidError", "PolicyNotFoundError", "RateLimitedError"),
}
_HOME_OF = {name: module for module, names in _HOMES.items() for name in names}
_HERE = ["Conflict", "ConfigError", "HttpError", "InvalidRequest", "Problems", "TaiError", "rebuild", "registered"]
__all__ = sorted([*_HERE, *_HOME_OF])


def __getattr__(name: str) -> Any:
    module = _HOME_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return __all__
