"""Bearer tokens for the gateway: a local token, or a Google-signed ID token on Cloud Run.

The gateway accepts either (docs/gateway.md): a local token per role (``TAI_TOKEN_SERVICE``, ...)
or an ID token Google signed for the service's audience, whose email maps to a role. On Cloud
Run, one service calls another with an ID token fetched from the metadata server (or a service
account key file, ``GOOGLE_APPLICATION_CREDENTIALS``); google-auth does the fetching. A token
lives an hour, so it is kept and fetched again shortly before it expires, never per request.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncGenerator, Callable, Generator

import httpx

REFRESH_MARGIN_S = 300.0


class BearerToken(httpx.Auth):
    """A fixed token (a local token of the dev profile or a release). Never shown in a repr."""

    def __init__(self, token: str) -> None:
        if not token or any(c.isspace() for c in token):
            raise ValueError("a bearer token must be a non-empty string without whitespace")
        self._header = f"Bearer {token}"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = self._header
        yield request

    def __repr__(self) -> str:
        return "BearerToken(<hidden>)"


def _fetch_google_id_token(audience: str) -> str:
    """An ID token for ``audience`` from the environment's Google credentials (google-auth)."""
    import google.auth.transport.requests
    from google.oauth2 import id_token

    return str(id_token.fetch_id_token(google.auth.transport.requests.Request(), audience))


def _expiry(token: str) -> float:
    """The ``exp`` claim of a JWT, read without verifying it (the gateway verifies; we only schedule)."""
    from google.auth import jwt

    claims = jwt.decode(token, verify=False)
    return float(claims.get("exp", 0))


class GoogleIdToken(httpx.Auth):
    """An ID token for ``audience`` (the Cloud Run service URL, or the audience the gateway is
    configured with), fetched again ``refresh_margin_s`` before it expires. ``fetch`` replaces
    google-auth's fetch (a caller with its own credentials); it gets the audience, answers a JWT."""

    def __init__(self, audience: str, *, refresh_margin_s: float = REFRESH_MARGIN_S,
                 fetch: Callable[[str], str] = _fetch_google_id_token) -> None:
        if not audience:
            raise ValueError("a Google ID token needs an audience")
        self.audience = audience
        self._margin = refresh_margin_s
        self._fetch = fetch
        self._token = ""
        self._expires = 0.0
        self._lock = threading.Lock()

    def token(self) -> str:
        """The current token, fetched first if there is none or it expires within the margin."""
        with self._lock:
            if time.time() >= self._expires - self._margin:
                self._token = self._fetch(self.audience)
                self._expires = _expiry(self._token)
            return self._token

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self.token()}"
        yield request

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        token = await asyncio.to_thread(self.token)  # a fetch is blocking HTTP: keep it off the event loop
        request.headers["Authorization"] = f"Bearer {token}"
        yield request

    def __repr__(self) -> str:
        return f"GoogleIdToken(audience={self.audience!r})"
