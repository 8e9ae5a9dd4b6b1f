"""Typed errors of the trust subsystem.

Each distinct reason a certificate, policy or renewal is refused has its own class and stable
``code``: the CLI, HTTP bodies, receipts and the daemon's fail-fast start line all report that
code, so operators and tests can tell *why* without parsing prose. Messages say what to do next
and never contain key material.
"""

from __future__ import annotations

from tai_autonomics.errors import TaiError


class TrustError(TaiError):
    """Base of every error raised by :mod:`tai_autonomics.trust`."""

    code = "trust_error"


class CertificateError(TrustError):
    """A certificate was refused; the subclass (and ``code``) says why."""

    code = "cert_invalid"


class CertMalformed(CertificateError):
    """The bytes are not a parseable X.509 certificate (DER or PEM)."""

    code = "cert_malformed"


class CertExpired(CertificateError):
    """The validity window ended (``not_after`` is in the past)."""

    code = "cert_expired"


class CertNotYetValid(CertificateError):
    """The validity window has not begun (``not_before`` is in the future)."""

    code = "cert_not_yet_valid"


class CertUntrustedIssuer(CertificateError):
    """The chain ends at a CA other than the configured trust anchor."""

    code = "cert_untrusted_issuer"


class CertIntermediateMissing(CertificateError):
    """The issuer is not the trust anchor and no supplied intermediate has its name."""

    code = "cert_intermediate_missing"


class CertSignatureInvalid(CertificateError):
    """The named issuer's key does not verify the signature: the certificate was altered."""

    code = "cert_signature_invalid"


class CertIssuerMismatch(CertificateError):
    """The chain is trusted, but the direct issuer is not the configured insurer CA."""

    code = "cert_issuer_mismatch"


class CertChainInvalid(CertificateError):
    """Strict path validation rejected the chain (e.g. a CA without CA constraints, an expired intermediate)."""

    code = "cert_chain_invalid"


class CertPolicyExtensionMissing(CertificateError):
    """The certificate carries no insurance policy extension."""

    code = "cert_policy_extension_missing"


class CertPolicyExtensionNotCritical(CertificateError):
    """The policy extension is present but not marked critical, so other verifiers may ignore it."""

    code = "cert_policy_extension_not_critical"


class CertPolicyMalformed(CertificateError):
    """The policy extension (or a policy given to the issuing API) is not a valid policy document."""

    code = "cert_policy_malformed"


class CertWrongKeyUsage(CertificateError):
    """The certificate's key may not be used as an insurance (end-entity signing) key."""

    code = "cert_wrong_key_usage"


class CertRevoked(CertificateError):
    """The insurer reported the certificate revoked; it is refused from that moment on."""

    code = "cert_revoked"


class CertValidityTooShort(CertificateError):
    """Pre-flight: the certificate is valid now but expires before the operation could finish."""

    code = "cert_validity_too_short"


class CertKeyMismatch(CertificateError):
    """The certificate's public key does not belong to the private key it was stored or issued with."""

    code = "cert_key_mismatch"


class CertRenewalMismatch(CertificateError):
    """A renewed certificate names a different policy or customer account than the one it replaces."""

    code = "cert_renewal_mismatch"


class CertNotLoaded(TrustError):
    """No current certificate: the data directory holds none, or it could not be read."""

    code = "cert_not_loaded"


class TrustAnchorInvalid(TrustError):
    """The configured trust anchor (or an intermediate file) is unreadable or not a CA certificate."""

    code = "trust_anchor_invalid"


class CsrInvalid(TrustError):
    """A certificate signing request is unparseable or its self-signature does not verify."""

    code = "csr_invalid"


class CaStoreInvalid(TrustError):
    """A certificate authority directory is missing files, unreadable, or its key and certificate disagree."""

    code = "ca_store_invalid"


class RenewalFailed(TrustError):
    """The renewer (the insurer's API) could not deliver a new certificate."""

    code = "cert_renewal_failed"


class DevCaExists(TrustError):
    """``cert dev-ca`` refuses to overwrite an existing CA key unless asked to (``--force``)."""

    code = "dev_ca_exists"


class CertStateCorrupt(TrustError):
    """The CertManager's stored state is unreadable (a file, or a shared document edited by hand);
    refusing to guess whether the certificate was revoked."""

    code = "cert_state_corrupt"


class CertStateConflict(TrustError):
    """Another instance changed the shared certificate state first: this write was not made."""

    code = "cert_state_conflict"


class CertRenewalElsewhere(TrustError):
    """Another instance holds the renewal lease: it renews, and this one adopts its certificate."""

    code = "cert_renewal_elsewhere"


class CertStoreUnavailable(TrustError):
    """The shared certificate store (Firestore) did not answer; the held certificate stays in force."""

    code = "cert_store_unavailable"


class KeyInvalid(TrustError):
    """A private key file is unreadable, encrypted, or not PEM; the message names the file, never the key."""

    code = "key_invalid"
