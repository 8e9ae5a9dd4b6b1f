"""Two independent certificate makers — the ``openssl`` command-line tool and ``cryptography`` —
behind one interface, and the scenario set both must agree on.

The openssl maker shares no code with ``tai_autonomics.trust``: it writes the policy extension
itself as ``OID=critical,DER:<hex>`` in an extensions section, as an insurer using openssl would.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

NOW = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.timezone.utc)
"""The fixed "now" of every trust test: certificates are made relative to it and verified at it."""
OID = "2.25.164504070593493259471820921850688795775"
ROOT_NAME = "Test Insurer Root"

POLICY_DOC: dict[str, Any] = {
    "policy_id": "pol-42",
    "coverage_limits": {
        "sku-001": {"limit_count": 1000000, "limit_cost": 1000000000},
        "sku-002": {"limit_count": 3, "limit_cost": 30000},
    },
    "authorized_sku": ["sku-001", "sku-002"],
    "customer_name": "Acme Ltd",
    "customer_account": "acct-7",
}


def utf8string(text: str) -> bytes:
    """DER UTF8String, written here independently of the library's encoder."""
    body = text.encode()
    if len(body) < 0x80:
        return b"\x0c" + bytes([len(body)]) + body
    size = len(body).to_bytes((len(body).bit_length() + 7) // 8, "big")
    return b"\x0c" + bytes([0x80 | len(size)]) + size + body


GOOD_VALUE = utf8string(json.dumps(POLICY_DOC))


@dataclass
class LeafSpec:
    not_before: dt.datetime
    not_after: dt.datetime
    policy_value: bytes | None = GOOD_VALUE
    critical: bool = True
    key_usage: str = "digitalSignature"  # openssl spelling; mapped for cryptography


@dataclass
class Issuer:
    certificate_pem: bytes
    key: Any  # a key object (cryptography maker) or a key file path (openssl maker)
    name: str
    chain: list[bytes] = field(default_factory=list)  # intermediates between this issuer and the root


class Maker(Protocol):
    label: str

    def root(self, name: str) -> Issuer: ...

    def intermediate(self, parent: Issuer, name: str) -> Issuer: ...

    def leaf(self, issuer: Issuer, spec: LeafSpec) -> bytes: ...


# --- cryptography ------------------------------------------------------------------------------

_KU_FLAGS = {
    "digitalSignature": "digital_signature",
    "keyEncipherment": "key_encipherment",
    "keyCertSign": "key_cert_sign",
    "cRLSign": "crl_sign",
}


def _ku(names: str) -> x509.KeyUsage:
    flags = dict.fromkeys(
        [
            "digital_signature",
            "content_commitment",
            "key_encipherment",
            "data_encipherment",
            "key_agreement",
            "key_cert_sign",
            "crl_sign",
            "encipher_only",
            "decipher_only",
        ],
        False,
    )
    for name in names.split(","):
        flags[_KU_FLAGS[name.strip()]] = True
    return x509.KeyUsage(**flags)


class CryptographyMaker:
    label = "cryptography"

    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def _ca(self, name: str, parent: Issuer | None, path_length: int | None) -> Issuer:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        signer_key = parent.key if parent else key
        parent_cert = x509.load_pem_x509_certificate(parent.certificate_pem) if parent else None
        certificate = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(parent_cert.subject if parent_cert else subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(self.now - dt.timedelta(days=365))
            .not_valid_after(self.now + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
            .add_extension(_ku("keyCertSign, cRLSign"), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(signer_key.public_key()), critical=False)
            .sign(signer_key, hashes.SHA256())
        )
        pem = certificate.public_bytes(serialization.Encoding.PEM)
        chain = [pem, *parent.chain] if parent else []
        return Issuer(pem, key, name, chain)

    def root(self, name: str) -> Issuer:
        return self._ca(name, None, None)

    def intermediate(self, parent: Issuer, name: str) -> Issuer:
        return self._ca(name, parent, 0)

    def leaf(self, issuer: Issuer, spec: LeafSpec) -> bytes:
        key = ec.generate_private_key(ec.SECP256R1())
        issuer_cert = x509.load_pem_x509_certificate(issuer.certificate_pem)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Acme Ltd")]))
            .issuer_name(issuer_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(spec.not_before)
            .not_valid_after(spec.not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_ku(spec.key_usage), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), critical=False)
        )
        if spec.policy_value is not None:
            builder = builder.add_extension(
                x509.UnrecognizedExtension(x509.ObjectIdentifier(OID), spec.policy_value), critical=spec.critical
            )
        return builder.sign(issuer.key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


# --- openssl -------------------------------------------------------------------------------------


def openssl_binary() -> str:
    found = shutil.which("openssl")
    if found is None:
        raise RuntimeError(
            "the openssl command-line tool is required by the trust tests; install it (apt-get install openssl)"
        )
    return found


_CA_EXT = """
basicConstraints = critical, CA:TRUE{pathlen}
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
"""


class OpensslMaker:
    label = "openssl"

    def __init__(self, workdir: Path, now: dt.datetime) -> None:
        self.dir = workdir
        self.now = now
        self.binary = openssl_binary()
        self._count = 0

    def _run(self, *args: str) -> None:
        subprocess.run([self.binary, *args], check=True, capture_output=True, cwd=self.dir)

    def _fresh(self, stem: str) -> Path:
        self._count += 1
        return self.dir / f"{self._count:03d}-{stem}"

    def _key(self, stem: str) -> Path:
        path = self._fresh(stem).with_suffix(".key")
        self._run("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(path))
        return path

    def _sign(
        self,
        issuer: Issuer | None,
        subject: str,
        key: Path,
        extensions: str,
        not_before: dt.datetime,
        not_after: dt.datetime,
    ) -> bytes:
        """Issue with ``openssl ca`` (self-signed if no issuer): openssl 3.0's one command taking explicit dates."""
        base = self._fresh("ca")
        base.mkdir()
        (base / "index.txt").write_text("")
        (base / "serial").write_text(f"{self._count:04X}\n")
        config = base / "openssl.cnf"
        config.write_text(
            f"""
[ca]
default_ca = ca_section
[ca_section]
database = {base}/index.txt
new_certs_dir = {base}
serial = {base}/serial
default_md = sha256
policy = policy_section
unique_subject = no
email_in_dn = no
[policy_section]
commonName = supplied
[req]
distinguished_name = dn
[dn]
[ext]
{extensions}
"""
        )
        csr, issuer_cert, out = base / "req.csr", base / "issuer.pem", base / "cert.pem"
        self._run("req", "-new", "-config", str(config), "-key", str(key), "-subj", f"/CN={subject}", "-out", str(csr))
        if issuer is None:
            signer = ["-selfsign", "-keyfile", str(key)]
        else:
            issuer_cert.write_bytes(issuer.certificate_pem)
            signer = ["-cert", str(issuer_cert), "-keyfile", str(issuer.key)]
        self._run(
            "ca",
            "-batch",
            "-notext",
            "-config",
            str(config),
            "-extensions",
            "ext",
            *signer,
            "-in",
            str(csr),
            "-out",
            str(out),
            "-startdate",
            not_before.strftime("%Y%m%d%H%M%SZ"),
            "-enddate",
            not_after.strftime("%Y%m%d%H%M%SZ"),
        )
        return out.read_bytes()

    def _ca_dates(self) -> tuple[dt.datetime, dt.datetime]:
        return self.now - dt.timedelta(days=365), self.now + dt.timedelta(days=3650)

    def root(self, name: str) -> Issuer:
        key = self._key("root")
        return Issuer(self._sign(None, name, key, _CA_EXT.format(pathlen=""), *self._ca_dates()), key, name)

    def intermediate(self, parent: Issuer, name: str) -> Issuer:
        key = self._key("intermediate")
        pem = self._sign(parent, name, key, _CA_EXT.format(pathlen=", pathlen:0"), *self._ca_dates())
        return Issuer(pem, key, name, [pem, *parent.chain])

    def leaf(self, issuer: Issuer, spec: LeafSpec) -> bytes:
        extensions = [
            "basicConstraints = critical, CA:FALSE",
            f"keyUsage = critical, {spec.key_usage}",
            "subjectKeyIdentifier = hash",
            "authorityKeyIdentifier = keyid",
        ]
        if spec.policy_value is not None:
            flag = "critical," if spec.critical else ""
            extensions.append(f"{OID} = {flag}DER:{spec.policy_value.hex()}")
        return self._sign(issuer, "Acme Ltd", self._key("leaf"), "\n".join(extensions), spec.not_before, spec.not_after)


# --- scenarios -----------------------------------------------------------------------------------


@dataclass(repr=False)
class Scenario:
    leaf_pem: bytes
    intermediates: list[bytes]
    expected: str | None  # error code, or None for a valid certificate


@dataclass(repr=False)
class World:
    maker_label: str
    anchor_pem: bytes
    anchor_key_pem: bytes  # lets the fuzz tests re-sign mutated certificates so they reach the deeper checks
    scenarios: dict[str, Scenario]


SCENARIOS = [
    "valid",
    "valid_via_intermediate",
    "expired",
    "not_yet_valid",
    "signed_by_impostor_with_trusted_name",
    "signed_by_other_ca_supplied_as_intermediate",
    "intermediate_missing",
    "extension_missing",
    "extension_not_critical",
    "extension_json_malformed",
    "extension_field_missing",
    "extension_not_utf8string",
    "wrong_key_usage",
    "ca_key_usage",
]


def build_world(maker: Maker, now: dt.datetime) -> World:
    """Every scenario made by ``maker``: the same defects, whoever writes the bytes."""
    day = dt.timedelta(days=1)
    good = LeafSpec(now - day, now + 60 * day)
    root = maker.root(ROOT_NAME)
    intermediate = maker.intermediate(root, "Test Insurer Issuing CA")
    impostor = maker.root(ROOT_NAME)
    other = maker.root("Some Other CA")
    missing_field = dict(POLICY_DOC)
    del missing_field["customer_account"]

    def with_(**changes: Any) -> LeafSpec:
        return LeafSpec(**{**good.__dict__, **changes})

    scenarios = {
        "valid": Scenario(maker.leaf(root, good), [], None),
        "valid_via_intermediate": Scenario(maker.leaf(intermediate, good), intermediate.chain, None),
        "expired": Scenario(
            maker.leaf(root, with_(not_before=now - 60 * day, not_after=now - day)), [], "cert_expired"
        ),
        "not_yet_valid": Scenario(
            maker.leaf(root, with_(not_before=now + day, not_after=now + 60 * day)), [], "cert_not_yet_valid"
        ),
        "signed_by_impostor_with_trusted_name": Scenario(maker.leaf(impostor, good), [], "cert_untrusted_issuer"),
        "signed_by_other_ca_supplied_as_intermediate": Scenario(
            maker.leaf(other, good), [other.certificate_pem], "cert_untrusted_issuer"
        ),
        "intermediate_missing": Scenario(maker.leaf(intermediate, good), [], "cert_intermediate_missing"),
        "extension_missing": Scenario(maker.leaf(root, with_(policy_value=None)), [], "cert_policy_extension_missing"),
        "extension_not_critical": Scenario(
            maker.leaf(root, with_(critical=False)), [], "cert_policy_extension_not_critical"
        ),
        "extension_json_malformed": Scenario(
            maker.leaf(root, with_(policy_value=utf8string('{"policy_id": "pol-42",'))), [], "cert_policy_malformed"
        ),
        "extension_field_missing": Scenario(
            maker.leaf(root, with_(policy_value=utf8string(json.dumps(missing_field)))), [], "cert_policy_malformed"
        ),
        "extension_not_utf8string": Scenario(
            maker.leaf(root, with_(policy_value=b"\x04\x02{}")), [], "cert_policy_malformed"
        ),
        "wrong_key_usage": Scenario(maker.leaf(root, with_(key_usage="keyEncipherment")), [], "cert_wrong_key_usage"),
        "ca_key_usage": Scenario(
            maker.leaf(root, with_(key_usage="digitalSignature, keyCertSign")), [], "cert_wrong_key_usage"
        ),
    }
    assert list(scenarios) == SCENARIOS
    return World(maker.label, root.certificate_pem, _key_pem(root.key), scenarios)


def _key_pem(key: Any) -> bytes:
    """The openssl maker holds key files, the cryptography maker key objects."""
    if isinstance(key, Path):
        return key.read_bytes()
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
