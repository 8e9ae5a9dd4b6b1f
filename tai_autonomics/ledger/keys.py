"""The ledger's Ed25519 key: loading, signing, and the identifiers customers verify against.

The private key lives only inside :class:`LedgerKey`, whose ``repr`` and error messages show
the public key ID and nothing else, and which refuses to be pickled, so it cannot leak through
logs, receipts, actor messages or crash reports.

Identifiers:

* ``key_id`` (in every contractual receipt): the first 16 lowercase hex digits of
  SHA-256 of the 32-byte raw public key, computable by anyone holding ``public_key.pem``.
* the signed-note key ID (C2SP signed-note): the first 4 bytes of
  SHA-256(name || 0x0A || 0x01 || raw public key), where ``name`` is the checkpoint origin.

``cryptography`` reads and writes the PEM files; signing and verifying go through libsodium
(PyNaCl), whose Ed25519 verification is about 1.7 times faster than OpenSSL's on our machines:
offline verification of an export checks one signature per receipt and is bound by it.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import NoReturn

import nacl.bindings
import nacl.exceptions
import nacl.signing
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from tai_autonomics.ledger.errors import LedgerKeyError

DEV_KEY_FILE = "ledger_key.pem"
_ED25519_ALG = b"\x01"  # C2SP signed-note signature type for Ed25519


class LedgerPublicKey:
    """An Ed25519 public key and the identifiers derived from it."""

    __slots__ = ("_key", "_verifier", "_note_key_ids", "raw", "key_id")

    def __init__(self, key: Ed25519PublicKey) -> None:
        self._key = key
        self.raw: bytes = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self._verifier = nacl.signing.VerifyKey(self.raw)
        self.key_id: str = hashlib.sha256(self.raw).hexdigest()[:16]
        self._note_key_ids: dict[str, bytes] = {}  # by key name: every checkpoint signature needs one

    @classmethod
    def from_raw(cls, raw: bytes) -> LedgerPublicKey:
        """From the 32 raw bytes of an Ed25519 public key."""
        try:
            return cls(Ed25519PublicKey.from_public_bytes(raw))
        except ValueError:
            raise LedgerKeyError("not a 32-byte Ed25519 public key") from None

    @classmethod
    def from_pem(cls, pem: bytes, source: str = "public key") -> LedgerPublicKey:
        """From a SubjectPublicKeyInfo PEM (``public_key.pem`` of an export)."""
        try:
            key = serialization.load_pem_public_key(pem)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            raise LedgerKeyError(f"{source}: not a PEM SubjectPublicKeyInfo") from None
        if not isinstance(key, Ed25519PublicKey):
            raise LedgerKeyError(f"{source}: not an Ed25519 key")
        return cls(key)

    def pem(self) -> bytes:
        """SubjectPublicKeyInfo PEM, as exported for customers."""
        return self._key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    def verify(self, signature: bytes, data: bytes) -> bool:
        """Whether ``signature`` is this key's Ed25519 signature of ``data``."""
        try:
            self._verifier.verify(data, signature)
        except (nacl.exceptions.BadSignatureError, ValueError, TypeError):
            return False
        return True

    def note_key_id(self, name: str) -> bytes:
        """C2SP signed-note key ID for this key under ``name``."""
        key_id = self._note_key_ids.get(name)
        if key_id is None:
            if len(self._note_key_ids) >= 64:  # a ledger uses one name; verifiers are handed a few
                self._note_key_ids.clear()
            digest = hashlib.sha256(name.encode() + b"\n" + _ED25519_ALG + self.raw).digest()
            key_id = self._note_key_ids[name] = digest[:4]
        return key_id

    def note_verifier_key(self, name: str) -> str:
        """The ``name+hash+base64`` verifier key string Go's sumdb/note reads."""
        blob = base64.b64encode(_ED25519_ALG + self.raw).decode()
        return f"{name}+{self.note_key_id(name).hex()}+{blob}"

    def __repr__(self) -> str:
        return f"LedgerPublicKey(key_id={self.key_id})"


class LedgerKey:
    """The ledger's private signing key. Shows only its public key ID; cannot be pickled."""

    __slots__ = ("_private", "_secret", "public")

    def __init__(self, private: Ed25519PrivateKey) -> None:
        self._private = private
        seed = private.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                     serialization.NoEncryption())
        self._secret = nacl.bindings.crypto_sign_seed_keypair(seed)[1]  # libsodium's 64-byte secret key
        self.public = LedgerPublicKey(private.public_key())

    @classmethod
    def generate(cls) -> LedgerKey:
        """A fresh random key (tests, dev profile)."""
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_pem(cls, pem: bytes, source: str) -> LedgerKey:
        """From an unencrypted PKCS#8 PEM; ``source`` names where it came from in errors."""
        try:
            key = serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            raise LedgerKeyError(f"{source}: not an unencrypted PEM private key") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise LedgerKeyError(f"{source}: not an Ed25519 private key")
        return cls(key)

    @property
    def key_id(self) -> str:
        """The public key ID written into contractual receipts."""
        return self.public.key_id

    def sign(self, data: bytes) -> bytes:
        """Ed25519 signature of ``data``: the first 64 bytes of libsodium's signed message (the
        binding itself; ``SigningKey.sign`` wraps the same call in objects, 2 us more a signature)."""
        return nacl.bindings.crypto_sign(data, self._secret)[: nacl.bindings.crypto_sign_BYTES]

    def private_pem(self) -> bytes:
        """PKCS#8 PEM of the private key, only for writing the dev key file."""
        return self._private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    def __repr__(self) -> str:
        return f"LedgerKey(key_id={self.key_id})"

    def __reduce__(self) -> NoReturn:
        raise TypeError("LedgerKey cannot be pickled: the private key must not leave its process")


def load_ledger_key(
    *,
    key_file: str | os.PathLike[str] | None = None,
    key_env: str | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> LedgerKey:
    """Load the ledger key: from ``key_file`` (a PEM), else from the environment variable named
    ``key_env`` (holding a PEM), else the dev key ``DATA_DIR/ledger_key.pem``, generated on first use.

    Production configuration names ``key_file`` or ``key_env``; only the dev profile passes
    ``data_dir`` alone. Errors name the file or variable, never the key.
    """
    environ = os.environ if environ is None else environ
    if key_file is not None:
        path = Path(key_file)
        try:
            pem = path.read_bytes()
        except OSError as exc:
            raise LedgerKeyError(f"ledger key file {path}: {exc.strerror}") from None
        return LedgerKey.from_pem(pem, f"ledger key file {path}")
    if key_env is not None:
        value = environ.get(key_env)
        if not value:
            raise LedgerKeyError(f"environment variable {key_env} (the ledger key) is unset or empty")
        return LedgerKey.from_pem(value.encode(), f"environment variable {key_env}")
    if data_dir is None:
        raise LedgerKeyError("no ledger key configured (key file, environment variable or data dir)")
    return _dev_key(Path(data_dir) / DEV_KEY_FILE)


def _dev_key(path: Path) -> LedgerKey:
    """The dev key at ``path``, created (mode 0600, exclusively) if it does not exist yet."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return load_ledger_key(key_file=path)
    except OSError as exc:
        raise LedgerKeyError(f"cannot create dev ledger key {path}: {exc.strerror}") from None
    key = LedgerKey.generate()
    with os.fdopen(fd, "wb") as out:
        out.write(key.private_pem())
        out.flush()
        os.fsync(out.fileno())
    return key
