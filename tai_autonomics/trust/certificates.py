"""Verifying insurance certificates (docs/specification.md §5): one call, one typed verdict.

:class:`CertificateVerifier` checks, in this order, and stops at the first failure so every
defect maps to exactly one stable error code:

1. the bytes parse as X.509 (DER or PEM)                        -> ``cert_malformed``
2. a path leads to the configured trust anchor, each link's
   signature verifying under its issuer's key                    -> ``cert_untrusted_issuer``,
                                                                   ``cert_intermediate_missing``,
                                                                   ``cert_signature_invalid``
3. the direct issuer is the configured insurer CA (optional)     -> ``cert_issuer_mismatch``
4. the validity window contains "now"                            -> ``cert_not_yet_valid``, ``cert_expired``
5. the key is an end-entity signing key                          -> ``cert_wrong_key_usage``
6. the policy extension is present, critical and well-formed     -> ``cert_policy_extension_missing``,
                                                                   ``cert_policy_extension_not_critical``,
                                                                   ``cert_policy_malformed``
7. strict RFC 5280 / WebPKI path validation by ``cryptography``'s
   verifier (CA constraints, path length, intermediates' windows,
   algorithms, unknown critical extensions)                      -> ``cert_chain_invalid``

Steps 2-6 exist to *name* the defect; step 7 is the authority, so a certificate our own checks
would miss is still refused.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from tai_autonomics.trust._parsing import PARSE_ERRORS
from tai_autonomics.trust._time import Clock, aware, utcnow
from tai_autonomics.trust.errors import (
    CertChainInvalid,
    CertExpired,
    CertificateError,
    CertIntermediateMissing,
    CertIssuerMismatch,
    CertMalformed,
    CertNotYetValid,
    CertSignatureInvalid,
    CertUntrustedIssuer,
    CertWrongKeyUsage,
    TrustAnchorInvalid,
)
from tai_autonomics.trust.policy import POLICY_OID, Policy

MAX_CHAIN_DEPTH = 8
"""Longest chain (leaf included, anchor excluded) we try to build; real insurer chains are 1-3."""

_PEM_MARKER = b"-----BEGIN"


@dataclass(frozen=True)
class VerifiedCertificate:
    """A certificate that passed every check at ``verified_at``, with what callers need from it."""

    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...]
    policy: Policy
    not_before: dt.datetime
    not_after: dt.datetime
    fingerprint: str
    verified_at: dt.datetime

    def remaining(self, now: dt.datetime) -> dt.timedelta:
        """Time left until expiry at ``now`` (negative once expired)."""
        return self.not_after - aware(now)

    @property
    def days_left(self) -> int:
        """Whole days of validity left at ``verified_at``."""
        return self.remaining(self.verified_at).days


def load_certificate(data: bytes) -> x509.Certificate:
    """One certificate from DER or PEM bytes (the first, if PEM holds several)."""
    try:
        if data.lstrip().startswith(_PEM_MARKER):
            certificate = x509.load_pem_x509_certificates(data)[0]
        else:
            certificate = x509.load_der_x509_certificate(data)
    except PARSE_ERRORS:
        raise CertMalformed(
            "the data is not an X.509 certificate in DER or PEM form; check that the right file was given"
        ) from None
    if certificate.serial_number <= 0:  # cryptography only warns today and will refuse in a future release
        raise CertMalformed("the certificate's serial number is not positive, which RFC 5280 forbids")
    return certificate


def load_certificates(data: bytes) -> list[x509.Certificate]:
    """Every certificate in a PEM bundle, or the single certificate in DER bytes."""
    if data.lstrip().startswith(_PEM_MARKER):
        try:
            return x509.load_pem_x509_certificates(data)
        except PARSE_ERRORS:
            raise CertMalformed("the PEM bundle contains a block that is not an X.509 certificate") from None
    return [load_certificate(data)]


def fingerprint(certificate: x509.Certificate) -> str:
    """SHA-256 fingerprint of the DER encoding, lowercase hex: the identity used in logs and state files."""
    return certificate.fingerprint(hashes.SHA256()).hex()


def describe(certificate: x509.Certificate, now: dt.datetime) -> dict[str, Any]:
    """What a person wants to see about a certificate, valid or not (no verification implied)."""
    not_after = certificate.not_valid_after_utc
    try:
        policy: dict[str, Any] = Policy.from_certificate(certificate).to_dict()
    except CertificateError as exc:
        policy = {"error": exc.code, "message": exc.message}
    try:
        subject, issuer = certificate.subject.rfc4514_string(), certificate.issuer.rfc4514_string()
    except PARSE_ERRORS as exc:  # names are decoded lazily
        raise CertMalformed(f"the certificate is corrupt: {exc}") from None
    return {
        "subject": subject,
        "issuer": issuer,
        "serial_number": format(certificate.serial_number, "x"),
        "fingerprint_sha256": fingerprint(certificate),
        "not_before": certificate.not_valid_before_utc.isoformat(),
        "not_after": not_after.isoformat(),
        "days_left": (not_after - aware(now)).days,
        "policy": policy,
    }


class CertificateVerifier:
    """Verifies insurance certificates against one configured trust anchor.

    ``intermediates`` are CA certificates offered for path building (the anchor must still be
    reached by signatures; offering a certificate never makes it trusted). ``expected_issuer``,
    if set, is the name of the insurer CA that must have signed the certificate directly — a
    sibling CA under the same root is then refused.
    """

    def __init__(
        self,
        trust_anchor: x509.Certificate,
        *,
        intermediates: Iterable[x509.Certificate] = (),
        expected_issuer: x509.Name | str | None = None,
        clock: Clock = utcnow,
    ) -> None:
        _require_ca(trust_anchor, "trust anchor")
        self.trust_anchor = trust_anchor
        self.intermediates = tuple(intermediates)
        for certificate in self.intermediates:
            _require_ca(certificate, "intermediate")
        self.expected_issuer = _name(expected_issuer) if expected_issuer is not None else None
        self._clock = clock
        self._store = Store([trust_anchor])

    @classmethod
    def from_files(
        cls,
        trust_anchor: str | os.PathLike[str],
        intermediates: Sequence[str | os.PathLike[str]] = (),
        *,
        expected_issuer: x509.Name | str | None = None,
        clock: Clock = utcnow,
    ) -> CertificateVerifier:
        """A verifier from PEM/DER files (each intermediate file may hold a bundle)."""
        anchor = _read_ca_file(trust_anchor, "trust anchor")
        if len(anchor) != 1:
            raise TrustAnchorInvalid(
                f"{trust_anchor}: expected exactly one trust anchor certificate, found {len(anchor)}"
            )
        extra = [certificate for path in intermediates for certificate in _read_ca_file(path, "intermediate")]
        return cls(anchor[0], intermediates=extra, expected_issuer=expected_issuer, clock=clock)

    def verify(
        self,
        certificate: x509.Certificate | bytes,
        *,
        now: dt.datetime | None = None,
        intermediates: Iterable[x509.Certificate] = (),
    ) -> VerifiedCertificate:
        """Verify ``certificate`` (object, DER or PEM) at ``now``; raise the first failure's typed error."""
        moment = aware(now) if now is not None else aware(self._clock())
        leaf = load_certificate(certificate) if isinstance(certificate, bytes) else certificate
        pool = (*intermediates, *self.intermediates)
        try:
            path = self._build_path(leaf, pool)
            self._check_issuer(path)
            not_before, not_after = _check_window(leaf, moment)
            _check_key_usage(leaf)
            policy = Policy.from_certificate(leaf)
            chain = self._validate_strictly(leaf, pool, moment)
        except PARSE_ERRORS as exc:  # a lazily parsed part of the certificate (an extension, a name) is corrupt
            raise CertMalformed(f"the certificate is corrupt: {exc}") from None
        return VerifiedCertificate(
            certificate=leaf,
            chain=chain,
            policy=policy,
            not_before=not_before,
            not_after=not_after,
            fingerprint=fingerprint(leaf),
            verified_at=moment,
        )

    def _build_path(self, leaf: x509.Certificate, pool: Sequence[x509.Certificate]) -> list[x509.Certificate]:
        """Walk issuer links up to the anchor, checking each signature, to name what is wrong if it fails."""
        anchor_name = self.trust_anchor.subject.rfc4514_string()
        path = [leaf]
        current = leaf
        for _ in range(MAX_CHAIN_DEPTH):
            issuers = [self.trust_anchor] if current.issuer == self.trust_anchor.subject else []
            issuers += [c for c in pool if c.subject == current.issuer and c not in path and c not in issuers]
            who, issuer_name = current.subject.rfc4514_string(), current.issuer.rfc4514_string()
            if not issuers:
                if current.issuer == current.subject:
                    raise CertUntrustedIssuer(
                        f"the chain ends at the self-signed '{who}', which is not the trust anchor '{anchor_name}'; "
                        "the certificate was not issued under the insurer CA you configured"
                    )
                raise CertIntermediateMissing(
                    f"'{who}' was issued by '{issuer_name}', which is neither the trust anchor '{anchor_name}' nor a "
                    "supplied intermediate; supply that CA certificate (--intermediate), or check the trust anchor"
                )
            signer = next((c for c in issuers if _signed_by(current, c)), None)
            if signer is None:
                if any(_names_key_of(current, c) for c in issuers):
                    raise CertSignatureInvalid(
                        f"the signature on '{who}' does not verify with the key of its issuer '{issuer_name}': "
                        "the certificate was altered or corrupted; obtain a fresh copy from the insurer"
                    )
                raise CertUntrustedIssuer(
                    f"'{who}' claims the issuer name '{issuer_name}' but was signed by a different key: "
                    "another CA is using the trusted issuer's name; do not use this certificate"
                )
            path.append(signer)
            if signer is self.trust_anchor:
                return path
            current = signer
        raise CertChainInvalid(f"no path to the trust anchor within {MAX_CHAIN_DEPTH} certificates")

    def _check_issuer(self, path: list[x509.Certificate]) -> None:
        issuer = path[1].subject
        if self.expected_issuer is not None and issuer != self.expected_issuer:
            raise CertIssuerMismatch(
                f"the certificate was issued by '{issuer.rfc4514_string()}', not by the configured insurer CA "
                f"'{self.expected_issuer.rfc4514_string()}'; check the insurer configuration or the certificate"
            )

    def _validate_strictly(
        self, leaf: x509.Certificate, pool: Sequence[x509.Certificate], moment: dt.datetime
    ) -> tuple[x509.Certificate, ...]:
        verifier = (
            PolicyBuilder()
            .store(self._store)
            .time(moment)
            .max_chain_depth(MAX_CHAIN_DEPTH)
            .extension_policies(ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=_EE_POLICY)
            .build_client_verifier()
        )
        try:
            return tuple(verifier.verify(leaf, list(pool)).chain)
        except VerificationError as exc:
            raise CertChainInvalid(f"strict path validation refused the chain: {exc}") from None


class _PolicyExtensionType(x509.ExtensionType):
    """Declares our OID to the verifier, so the critical extension counts as understood, not unknown."""

    oid = POLICY_OID

    def public_bytes(self) -> bytes:
        raise NotImplementedError("only used to name the OID in an extension policy")


_EE_POLICY = (
    ExtensionPolicy.webpki_defaults_ee()
    .require_present(_PolicyExtensionType, Criticality.CRITICAL, None)
    .may_be_present(x509.SubjectAlternativeName, Criticality.AGNOSTIC, None)
)


def _check_window(leaf: x509.Certificate, moment: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    not_before, not_after = leaf.not_valid_before_utc, leaf.not_valid_after_utc
    if moment < not_before:
        raise CertNotYetValid(
            f"the certificate is not valid until {not_before.isoformat()} (now {moment.isoformat()}); "
            "wait, or check this machine's clock"
        )
    if moment > not_after:
        raise CertExpired(
            f"the certificate expired at {not_after.isoformat()} (now {moment.isoformat()}); renew it with the insurer"
        )
    return not_before, not_after


def _check_key_usage(leaf: x509.Certificate) -> None:
    """An insurance certificate is an end-entity signing key: not a CA, digitalSignature, client use."""
    extensions = leaf.extensions
    try:
        if extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
            raise CertWrongKeyUsage("the certificate is a CA certificate, not an insurance (end-entity) certificate")
    except x509.ExtensionNotFound:
        pass
    try:
        usage = extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        raise CertWrongKeyUsage(
            "the certificate has no key usage extension; an insurance certificate must allow digitalSignature"
        ) from None
    if not usage.digital_signature or usage.key_cert_sign or usage.crl_sign:
        raise CertWrongKeyUsage(
            "the certificate's key usage must include digitalSignature and exclude keyCertSign and cRLSign; "
            "ask the insurer to reissue it with the insurance certificate profile"
        )
    try:
        purposes = extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return
    if ExtendedKeyUsageOID.CLIENT_AUTH not in purposes and ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE not in purposes:
        raise CertWrongKeyUsage("the certificate's extended key usage does not allow client authentication")


def _signed_by(certificate: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        certificate.verify_directly_issued_by(issuer)
    except (InvalidSignature, TypeError) + PARSE_ERRORS:
        return False
    return True


def _names_key_of(certificate: x509.Certificate, issuer: x509.Certificate) -> bool:
    """True if the authority key identifier names ``issuer``'s key, so a bad signature means tampering."""
    try:
        claimed = certificate.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
        actual = x509.SubjectKeyIdentifier.from_public_key(issuer.public_key()).digest
    except (x509.ExtensionNotFound, TypeError) + PARSE_ERRORS:
        return False
    try:
        declared = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except (x509.ExtensionNotFound,) + PARSE_ERRORS:
        declared = actual
    return claimed is not None and claimed in (actual, declared)


def _require_ca(certificate: x509.Certificate, role: str) -> None:
    try:
        constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
    except (x509.ExtensionNotFound,) + PARSE_ERRORS:
        constraints = None
    if constraints is None or not constraints.ca:
        raise TrustAnchorInvalid(
            f"the {role} '{certificate.subject.rfc4514_string()}' is not a CA certificate (basicConstraints CA:TRUE)"
        )


def _read_ca_file(path: str | os.PathLike[str], role: str) -> list[x509.Certificate]:
    try:
        return load_certificates(Path(path).read_bytes())
    except OSError as exc:
        raise TrustAnchorInvalid(f"cannot read the {role} file {path}: {exc.strerror}") from None
    except CertMalformed as exc:
        raise TrustAnchorInvalid(f"the {role} file {path} is unusable: {exc.message}") from None


def _name(value: x509.Name | str) -> x509.Name:
    if isinstance(value, x509.Name):
        return value
    try:
        return x509.Name.from_rfc4514_string(value)
    except ValueError:
        raise TrustAnchorInvalid(f"the expected issuer {value!r} is not an RFC 4514 distinguished name") from None
