"""The webhook signature: HMAC-SHA256 over ``timestamp + "." + body``, sent as
``X-TAI-Signature: t=<unix seconds>,v1=<lowercase hex>`` (docs/specification.md §12).

A receiver checks it with :func:`verify_signature`, which also refuses a timestamp too far from
its clock, so a captured delivery cannot be replayed later (the signature covers the timestamp,
so it cannot be changed). Several ``v1`` values may be sent while a secret is being rotated; one
match is enough. Comparison is constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time

from tai_autonomics.errors import TaiError

HEADER = "X-TAI-Signature"
DEFAULT_TOLERANCE_S = 300.0
_ITEM = re.compile(r"t=([0-9]{1,12})|v1=([0-9a-f]{1,128})")


class SignatureError(TaiError):
    """A delivery whose signature does not check: ``signature_missing``, ``signature_malformed``,
    ``signature_expired`` (outside the tolerance) or ``signature_mismatch``."""

    code = "signature_invalid"


class SignatureMissing(SignatureError):
    """The delivery carries no signature header."""

    code = "signature_missing"


class SignatureMalformed(SignatureError):
    """The signature header is not ``t=<seconds>,v1=<hex>[,v1=...]``."""

    code = "signature_malformed"


class SignatureExpired(SignatureError):
    """The signature's timestamp is outside the tolerance (a replay, or a clock far off)."""

    code = "signature_expired"


class SignatureMismatch(SignatureError):
    """No ``v1=`` value is the body's HMAC under the secret: altered, or another secret."""

    code = "signature_mismatch"


def _secret(secret: bytes | str) -> bytes:
    key = secret.encode() if isinstance(secret, str) else secret
    if not key:
        raise ValueError("a webhook secret must not be empty")
    return key


def _mac(secret: bytes, timestamp: int, body: bytes) -> str:
    return hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def sign(secret: bytes | str, body: bytes, timestamp: int | None = None) -> str:
    """The header value for ``body`` sent at ``timestamp`` (default: now)."""
    stamp = int(time.time()) if timestamp is None else timestamp
    return f"t={stamp},v1={_mac(_secret(secret), stamp, body)}"


def verify_signature(secret: bytes | str, body: bytes, header: str | None, *,
                     tolerance_s: float = DEFAULT_TOLERANCE_S, now: float | None = None) -> int:
    """Check a delivery: the timestamp it was signed at, or :class:`SignatureError` saying why not.

    ``body`` must be the exact bytes received (not re-serialised JSON).
    """
    key = _secret(secret)
    if not header:
        raise SignatureMissing(f"no {HEADER} header")
    stamps, macs = [], []
    for item in header.split(","):
        match = _ITEM.fullmatch(item.strip())
        if match is None:
            raise SignatureMalformed(f"{HEADER} must be t=<seconds>,v1=<hex>[,v1=...]")
        if match.group(1) is not None:
            stamps.append(match.group(1))
        else:
            macs.append(match.group(2))
    if len(stamps) != 1 or not macs:
        raise SignatureMalformed(f"{HEADER} needs one t= and at least one v1=")
    stamp = int(stamps[0])
    age = (time.time() if now is None else now) - stamp
    if abs(age) > tolerance_s:
        raise SignatureExpired(f"signed {age:.0f} s from now, outside the {tolerance_s:g} s tolerance (a replay?)",
                               detail={"timestamp": stamp})
    expected = _mac(key, stamp, body)
    if not any(hmac.compare_digest(expected, mac) for mac in macs):
        raise SignatureMismatch("the signature does not match the body")
    return stamp
