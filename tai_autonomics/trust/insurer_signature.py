"""How the insurer signs its HTTP responses, and how we check them.

The insurer signs the exact bytes of every response body with Ed25519 and sends the signature
(standard base64) in ``X-Insurer-Signature`` and the name of the key in ``X-Insurer-Key-Id``.
A key id is derived from the public key itself (``ed25519-`` + the first 16 bytes of
SHA-256 over the raw 32-byte key, hex), so a client configured with the insurer's public key
PEM knows its id without a second setting, and a rotated key gets a new id.

Both sides of the contract live here: the sandbox insurer signs with :func:`sign_body`, the
InsuranceClient checks with :func:`verify_body`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from tai_autonomics.trust.insurer_errors import InsurerKeyInvalidError, InsurerSignatureInvalidError

SIGNATURE_HEADER = "X-Insurer-Signature"
KEY_ID_HEADER = "X-Insurer-Key-Id"


def key_id_for(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "ed25519-" + hashlib.sha256(raw).digest()[:16].hex()


def sign_body(private_key: Ed25519PrivateKey, body: bytes) -> dict[str, str]:
    """The response headers that sign ``body``."""
    return {
        SIGNATURE_HEADER: base64.b64encode(private_key.sign(body)).decode("ascii"),
        KEY_ID_HEADER: key_id_for(private_key.public_key()),
    }


def verify_body(keys: Mapping[str, Ed25519PublicKey], body: bytes, headers: Mapping[str, str]) -> str:
    """Check the signature headers over ``body``; return the key id, or raise InsurerSignatureInvalidError."""
    key_id = headers.get(KEY_ID_HEADER)
    signature_b64 = headers.get(SIGNATURE_HEADER)
    if not key_id or not signature_b64:
        raise InsurerSignatureInvalidError(
            "insurer response is not signed", detail={"key_id": key_id or ""}
        )
    key = keys.get(key_id)
    if key is None:
        raise InsurerSignatureInvalidError(
            f"insurer response is signed by unknown key {key_id!r}",
            detail={"key_id": key_id, "known_key_ids": sorted(keys)},
        )
    try:
        key.verify(base64.b64decode(signature_b64, validate=True), body)
    except (InvalidSignature, binascii.Error, ValueError):
        raise InsurerSignatureInvalidError(
            "insurer response signature does not verify", detail={"key_id": key_id}
        ) from None
    return key_id


def public_key_pem(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_public_keys(pem: bytes) -> dict[str, Ed25519PublicKey]:
    """Load one or more concatenated SubjectPublicKeyInfo PEM blocks into ``{key_id: key}``."""
    marker = b"-----END PUBLIC KEY-----"
    blocks = [chunk + marker for chunk in pem.split(marker) if chunk.strip()]
    keys: dict[str, Ed25519PublicKey] = {}
    for block in blocks:
        try:
            key = serialization.load_pem_public_key(block)
        except ValueError as exc:
            raise InsurerKeyInvalidError(f"insurer public key is not a valid PEM public key: {exc}") from None
        if not isinstance(key, Ed25519PublicKey):
            raise InsurerKeyInvalidError("insurer public key is not an Ed25519 key")
        keys[key_id_for(key)] = key
    if not keys:
        raise InsurerKeyInvalidError("no insurer public key found in the PEM data")
    return keys
