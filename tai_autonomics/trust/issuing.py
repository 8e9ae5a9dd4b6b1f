"""Issuing certificates: a small certificate authority for the sandbox insurer, tests and dev runs.

Production certificates come from the insurer's CA, not from this module. It exists so that the
sandbox insurer can issue and renew real certificates from CSRs, tests can build real chains
(root -> intermediate -> insurance certificate), and ``tai-autonomics cert dev-ca`` can set up a
local run. Everything it issues passes :class:`~tai_autonomics.trust.certificates.CertificateVerifier`:
ECDSA P-256 keys, SHA-256 signatures, CA and key-usage extensions as RFC 5280 path validation
expects, and the policy extension marked critical.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    CertificatePublicKeyTypes,
)
from cryptography.x509.oid import NameOID

from tai_autonomics.trust._files import (
    PRIVATE_FILE_MODE,
    atomic_write,
    private_key_pem,
    public_key_pem,
    same_public_key,
)
from tai_autonomics.trust._time import aware, utcnow
from tai_autonomics.trust.errors import CaStoreInvalid, CsrInvalid, DevCaExists
from tai_autonomics.trust.policy import CoverageLimit, Policy

CA_CERT_FILE = "ca.pem"
CA_KEY_FILE = "ca-key.pem"
CA_CHAIN_FILE = "chain.pem"

_DEFAULT_CA_LIFETIME = dt.timedelta(days=3650)
_BACKDATE = dt.timedelta(minutes=5)  # tolerate clock skew between issuer and verifier

CertificateRequest = x509.CertificateSigningRequest | CertificatePublicKeyTypes | bytes
"""What :meth:`CertificateAuthority.issue` certifies: a CSR (object, PEM or DER) or a bare public key."""


def generate_private_key() -> ec.EllipticCurvePrivateKey:
    """A new key of the one algorithm we issue for (ECDSA P-256: small, fast, accepted by WebPKI path validation)."""
    return ec.generate_private_key(ec.SECP256R1())


def generate_key_and_csr(common_name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.CertificateSigningRequest]:
    """A new key pair and a CSR for it, as sent to the insurer when (re)newing a certificate."""
    key = generate_private_key()
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .sign(key, hashes.SHA256())
    )
    return key, csr


class CertificateAuthority:
    """A CA certificate with its private key (a root, or an intermediate with its chain).

    ``intermediates`` is what a relying party must be given next to a certificate this CA issued
    to build a path to the root: empty for a root, this CA's certificate and its parents' for an
    intermediate. The private key never appears in ``repr``.
    """

    def __init__(
        self,
        certificate: x509.Certificate,
        private_key: CertificateIssuerPrivateKeyTypes,
        intermediates: tuple[x509.Certificate, ...] = (),
    ) -> None:
        if not same_public_key(certificate.public_key(), private_key.public_key()):
            raise CaStoreInvalid("the CA private key does not belong to the CA certificate")
        self.certificate = certificate
        self._key = private_key
        self.intermediates = intermediates

    def __repr__(self) -> str:
        return f"CertificateAuthority(subject={self.certificate.subject.rfc4514_string()!r})"

    @property
    def name(self) -> x509.Name:
        """The CA's subject, which is the issuer name of everything it signs."""
        return self.certificate.subject

    @classmethod
    def generate(
        cls, name: str, *, now: dt.datetime | None = None, valid_for: dt.timedelta = _DEFAULT_CA_LIFETIME
    ) -> CertificateAuthority:
        """A new self-signed root CA named ``CN=<name>``."""
        key = generate_private_key()
        subject = _cn(name)
        start = aware(now or utcnow()) - _BACKDATE
        certificate = (
            _ca_builder(subject, subject, key.public_key(), start, start + valid_for, path_length=None)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        return cls(certificate, key)

    def create_intermediate(
        self, name: str, *, now: dt.datetime | None = None, valid_for: dt.timedelta = _DEFAULT_CA_LIFETIME
    ) -> CertificateAuthority:
        """A new intermediate CA ``CN=<name>`` signed by this CA, allowed to issue end-entity certificates only."""
        key = generate_private_key()
        start = aware(now or utcnow()) - _BACKDATE
        certificate = (
            _ca_builder(_cn(name), self.name, key.public_key(), start, start + valid_for, path_length=0)
            .add_extension(self._authority_key_identifier(), critical=False)
            .sign(self._key, hashes.SHA256())
        )
        return CertificateAuthority(certificate, key, (certificate, *self.intermediates))

    def issue(
        self,
        request: CertificateRequest,
        policy: Policy,
        not_before: dt.datetime,
        not_after: dt.datetime,
        *,
        serial_number: int | None = None,
    ) -> x509.Certificate:
        """An insurance certificate for the requester's key carrying ``policy`` in its critical extension.

        The subject comes from the policy (``CN=customer_name, UID=customer_account``), not from the
        CSR: the insurer, not the requester, decides whom the certificate names. A CSR whose
        self-signature does not verify is refused (:class:`CsrInvalid`), because it proves nothing
        about possession of the key.
        """
        start, end = aware(not_before), aware(not_after)
        if end <= start:
            raise ValueError("not_after must be later than not_before")
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, policy.customer_name),
                x509.NameAttribute(NameOID.USER_ID, policy.customer_account),
            ]
        )
        public_key = _requested_public_key(request)
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.name)
            .public_key(public_key)
            .serial_number(serial_number if serial_number is not None else x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(digital_signature=True), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(self._authority_key_identifier(), critical=False)
            .add_extension(policy.to_extension(), critical=True)
            .sign(self._key, hashes.SHA256())
        )

    def _authority_key_identifier(self) -> x509.AuthorityKeyIdentifier:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key())

    # --- persistence ----------------------------------------------------------------------

    def save(self, directory: str | os.PathLike[str]) -> None:
        """Write ``ca.pem``, ``ca-key.pem`` (mode 0600) and, for an intermediate, ``chain.pem``."""
        target = Path(directory)
        atomic_write(target / CA_CERT_FILE, self.certificate.public_bytes(serialization.Encoding.PEM))
        atomic_write(target / CA_KEY_FILE, private_key_pem(self._key), mode=PRIVATE_FILE_MODE)
        if self.intermediates:
            chain = b"".join(cert.public_bytes(serialization.Encoding.PEM) for cert in self.intermediates)
            atomic_write(target / CA_CHAIN_FILE, chain)
        else:
            (target / CA_CHAIN_FILE).unlink(missing_ok=True)

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> CertificateAuthority:
        """Read a CA written by :meth:`save` (or by hand, in the same layout)."""
        source = Path(directory)
        try:
            certificate = x509.load_pem_x509_certificate((source / CA_CERT_FILE).read_bytes())
            key = serialization.load_pem_private_key((source / CA_KEY_FILE).read_bytes(), password=None)
            chain_path = source / CA_CHAIN_FILE
            intermediates = (
                tuple(x509.load_pem_x509_certificates(chain_path.read_bytes())) if chain_path.exists() else ()
            )
        except OSError as exc:
            raise CaStoreInvalid(f"cannot read the CA in {source}: {exc.strerror} ({exc.filename})") from None
        except (ValueError, TypeError, UnsupportedAlgorithm):
            raise CaStoreInvalid(
                f"the CA in {source} is not PEM in the expected layout ({CA_CERT_FILE}, unencrypted {CA_KEY_FILE})"
            ) from None
        if not isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey, ed25519.Ed25519PrivateKey)):
            raise CaStoreInvalid(f"the key in {source / CA_KEY_FILE} is not a certificate-signing key type")
        return cls(certificate, key, intermediates)


@dataclass(frozen=True)
class DevCaFiles:
    """Where :func:`write_dev_ca` put each file."""

    directory: Path
    ca_certificate: Path
    ca_key: Path
    certificate: Path
    key: Path
    ledger_key: Path
    ledger_public_key: Path


DEV_CERT_FILE = "insurance-cert.pem"
DEV_KEY_FILE = "insurance-key.pem"
DEV_LEDGER_KEY_FILE = "ledger-key.pem"
DEV_LEDGER_PUBLIC_KEY_FILE = "ledger-key.pub.pem"


def sample_policy() -> Policy:
    """The development policy: ``sku-001`` (1,000,000 operations, 1e9 USD a month) and ``sku-002`` (3, 30,000 USD).

    ``sku-002``'s tiny limits make coverage exhaustion easy to reach in local runs and tests.
    """
    return Policy(
        policy_id="dev-policy-0001",
        coverage_limits={
            "sku-001": CoverageLimit(limit_count=1_000_000, limit_cost=Decimal(1_000_000_000)),
            "sku-002": CoverageLimit(limit_count=3, limit_cost=Decimal(30_000)),
        },
        authorized_sku=("sku-001", "sku-002"),
        customer_name="Development Customer",
        customer_account="dev-account-0001",
    )


def write_dev_ca(
    out_dir: str | os.PathLike[str],
    *,
    now: dt.datetime | None = None,
    valid_for: dt.timedelta = dt.timedelta(days=365),
    force: bool = False,
) -> DevCaFiles:
    """Write a development CA, an insurance certificate with :func:`sample_policy`, its key and an Ed25519 ledger key.

    Refuses (:class:`DevCaExists`) to replace an existing CA key unless ``force``: overwriting it
    would silently orphan every certificate issued from it.
    """
    target = Path(out_dir)
    if (target / CA_KEY_FILE).exists() and not force:
        raise DevCaExists(f"{target / CA_KEY_FILE} already exists; pass --force to replace the development CA")
    start = aware(now or utcnow())
    ca = CertificateAuthority.generate("TAI Autonomics Development Insurer CA", now=start)
    ca.save(target)
    key = generate_private_key()
    certificate = ca.issue(key.public_key(), sample_policy(), start - _BACKDATE, start + valid_for)
    ledger_key = ed25519.Ed25519PrivateKey.generate()
    files = DevCaFiles(
        directory=target,
        ca_certificate=target / CA_CERT_FILE,
        ca_key=target / CA_KEY_FILE,
        certificate=target / DEV_CERT_FILE,
        key=target / DEV_KEY_FILE,
        ledger_key=target / DEV_LEDGER_KEY_FILE,
        ledger_public_key=target / DEV_LEDGER_PUBLIC_KEY_FILE,
    )
    atomic_write(files.certificate, certificate.public_bytes(serialization.Encoding.PEM))
    atomic_write(files.key, private_key_pem(key), mode=PRIVATE_FILE_MODE)
    atomic_write(files.ledger_key, private_key_pem(ledger_key), mode=PRIVATE_FILE_MODE)
    atomic_write(files.ledger_public_key, public_key_pem(ledger_key))
    return files


def _requested_public_key(request: CertificateRequest) -> CertificatePublicKeyTypes:
    if isinstance(request, bytes):
        request = _load_csr(request)
    if isinstance(request, x509.CertificateSigningRequest):
        try:  # a mangled CSR may parse and still carry a key or curve that cannot be loaded
            valid = request.is_signature_valid
            public_key = request.public_key()
        except (ValueError, UnsupportedAlgorithm) as exc:
            raise CsrInvalid(f"the CSR's public key cannot be loaded: {exc}") from None
        if not valid:
            raise CsrInvalid("the CSR's signature does not verify; it does not prove possession of the key")
        return public_key
    return request


def _load_csr(data: bytes) -> x509.CertificateSigningRequest:
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_csr(data)
        return x509.load_der_x509_csr(data)
    except (ValueError, UnsupportedAlgorithm):
        raise CsrInvalid("the certificate signing request is not a parseable PEM or DER CSR") from None


def _ca_builder(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: CertificatePublicKeyTypes,
    not_before: dt.datetime,
    not_after: dt.datetime,
    *,
    path_length: int | None,
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(_key_usage(key_cert_sign=True, crl_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def _key_usage(
    *, digital_signature: bool = False, key_cert_sign: bool = False, crl_sign: bool = False
) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=key_cert_sign,
        crl_sign=crl_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _cn(name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
