"""Who is calling, and may they: bearer tokens → a role, checked against a route's roles.

Two kinds of bearer token are accepted (docs/specification.md §7):
- **local tokens**, one per role, from ``TAI_TOKEN_SERVICE`` / ``_AUDITOR`` / ``_ADMIN``, compared
  in constant time against every configured token (no early exit tells which one was close);
- **Google-signed ID tokens** (Cloud Run service-to-service), verified with ``google-auth`` for
  the configured audience and issuer, whose verified ``email`` maps to a role by configuration.

Anything else is refused: no token, an unknown one, a Google identity without a role. ``admin``
may do everything. A token never appears in an error, a log line or a repr.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import secrets
import threading
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from google.auth import exceptions as google_exceptions
from google.auth import transport
from google.oauth2 import id_token

from tai_autonomics.gateway.config import GOOGLE_ISSUERS, ROLES, TOKEN_ENV, GatewayConfig
from tai_autonomics.gateway.errors import ApiError

ANY_ROLE = frozenset(ROLES)
TOKENS_FILE = "tokens.env"
CLOCK_SKEW_S = 10
CERTS_TTL_S = 300  # when the certificate endpoint sends no Cache-Control max-age
CERTS_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Identity:
    role: str
    subject: str  # "token:<role>" or the Google identity's email; logged, never secret


class Authenticator:
    """Turns an ``Authorization`` header into an :class:`Identity`, or raises a 401/403/503."""

    def __init__(self, config: GatewayConfig) -> None:
        self._tokens = [(role, _digest(token)) for role, token in config.tokens.items()]
        self._google = _GoogleVerifier(config) if config.google_audience else None

    async def authenticate(self, authorization: str | None) -> Identity:
        token = _bearer(authorization)
        role = self._local_role(_digest(token))
        if role is not None:
            return Identity(role, f"token:{role}")
        if self._google is not None and token.count(".") == 2:
            # may fetch certificates: off the loop, in the loop's default executor (joined when it ends)
            return await asyncio.get_running_loop().run_in_executor(None, self._google.verify, token)
        raise _unauthorized("the bearer token is not valid")

    def _local_role(self, digest: bytes) -> str | None:
        found = None
        for role, expected in self._tokens:  # every comparison runs, whatever matched
            if hmac.compare_digest(digest, expected):
                found = role
        return found


def _digest(token: str) -> bytes:
    """Tokens are compared as SHA-256 digests: equal lengths, so the time tells nothing of the length."""
    return hashlib.sha256(token.encode()).digest()


def authorize(identity: Identity, roles: Collection[str]) -> None:
    """Pass if the identity's role is one of ``roles`` (admin always passes), else 403."""
    if identity.role != "admin" and identity.role not in roles:
        raise ApiError(403, "forbidden", f"the role {identity.role!r} may not use this route",
                       {"role": identity.role, "allowed_roles": sorted({*roles, "admin"})})


def _bearer(authorization: str | None) -> str:
    if not authorization:
        raise _unauthorized("an Authorization: Bearer token is required")
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or not token.isascii():
        raise _unauthorized("the Authorization header must be 'Bearer <token>'")
    return token


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message, headers={"WWW-Authenticate": 'Bearer realm="tai-autonomics"'})


class _GoogleVerifier:
    """Verifies Google-signed ID tokens: signature (certificates cached), expiry, audience, issuer."""

    def __init__(self, config: GatewayConfig) -> None:
        self.audience = config.google_audience
        self.certs_url = config.google_certs_url
        self.roles = dict(config.google_roles)
        self._transport = _CachingTransport()

    def verify(self, token: str) -> Identity:
        try:
            claims = id_token.verify_token(token, self._transport, audience=self.audience,
                                           certs_url=self.certs_url, clock_skew_in_seconds=CLOCK_SKEW_S)
        except google_exceptions.TransportError:
            raise ApiError(503, "auth_unavailable", "Google's signing certificates could not be fetched; retry later",
                           headers={"Retry-After": "5"}) from None
        except (ValueError, TypeError, KeyError, google_exceptions.GoogleAuthError) as exc:
            # the library's reasons (expired, wrong audience, unknown key) name no secret
            raise _unauthorized(f"the ID token is not valid: {_reason(exc)}") from None
        if claims.get("iss") not in GOOGLE_ISSUERS:
            raise _unauthorized("the ID token was not issued by Google")
        email = str(claims.get("email", "")).lower()
        if not email or claims.get("email_verified") is not True:
            raise _unauthorized("the ID token carries no verified email")
        role = self.roles.get(email)
        if role is None:
            raise ApiError(403, "forbidden", "this Google identity has no role here", {"email": email})
        return Identity(role, email)


_REASONS = (("token expired", "it has expired"),
            ("used too early", "it is not valid yet"),
            ("wrong audience", "it is for another audience"),
            ("certificate for key id", "it is signed by an unknown key"),
            ("could not verify token signature", "its signature is wrong"))


def _reason(exc: Exception) -> str:
    """A fixed phrase for why: the library's own text may quote the token back."""
    text = str(exc).lower()
    return next((reason for needle, reason in _REASONS if needle in text), "it is malformed")


class _CachingTransport(transport.Request):
    """google-auth's HTTP seam, over httpx, keeping the certificate document for its max-age.

    ``verify_token`` fetches the certificates on every call; without this cache each request
    with an ID token would wait on Google.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, _Response]] = {}

    def __call__(self, url: str, method: str = "GET", body: Any = None, headers: Mapping[str, str] | None = None,
                 timeout: float | None = None, **kwargs: Any) -> _Response:
        with self._lock:
            hit = self._cache.get(url)
            if method == "GET" and hit is not None and hit[0] > time.monotonic():
                return hit[1]
        try:
            reply = httpx.request(method, url, content=body, headers=headers, timeout=timeout or CERTS_TIMEOUT_S)
        except httpx.HTTPError as exc:
            raise google_exceptions.TransportError(f"cannot fetch {url}: {type(exc).__name__}") from None
        response = _Response(reply.status_code, dict(reply.headers), reply.content)
        if method == "GET" and reply.status_code == 200:
            with self._lock:
                self._cache[url] = (time.monotonic() + _max_age(reply.headers.get("cache-control", "")), response)
        return response


@dataclass(frozen=True)
class _Response:
    """What ``verify_token`` reads of a response (google.auth.transport.Response's shape)."""

    status: int
    headers: Mapping[str, str]
    data: bytes


def _max_age(cache_control: str) -> float:
    for part in cache_control.split(","):
        name, _, value = part.strip().partition("=")
        if name.lower() == "max-age" and value.isdigit():
            return float(value)
    return CERTS_TTL_S


def dev_tokens(data_dir: Path, environ: Mapping[str, str]) -> dict[str, str]:
    """The dev profile's local tokens: the environment's, else those kept in ``tokens.env``,
    else new random ones — the latter two written to ``DATA_DIR/tokens.env`` (mode 0600), so a
    developer can ``. var/tokens.env`` and restarts keep the same tokens."""
    path = data_dir / TOKENS_FILE
    kept = _read_env_file(path)
    tokens, written = {}, {}
    for role, env in TOKEN_ENV.items():
        tokens[role] = environ.get(env) or kept.get(env) or secrets.token_urlsafe(32)
        if not environ.get(env):
            written[env] = tokens[role]
    if written or kept:  # rewritten each start: drops stale entries and restores mode 0600
        data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            os.fchmod(out.fileno(), 0o600)
            out.write("".join(f"{env}={token}\n" for env, token in written.items()))
    return tokens


def _read_env_file(path: Path) -> dict[str, str]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return {}
    pairs = (line.partition("=") for line in lines)
    return {name.strip(): value.strip() for name, sep, value in pairs if sep and value.strip()}
