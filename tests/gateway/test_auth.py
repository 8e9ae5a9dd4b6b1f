"""Who may do what: local tokens per role, Google-signed ID tokens verified for real, deny by default.

The Google path runs ``google-auth``'s verifier against RS256 JWTs minted here with a test RSA key,
whose certificate is served from a local HTTP endpoint the gateway is pointed at.
"""

from __future__ import annotations

import datetime
import json
import logging
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from google.auth import crypt, jwt

from tai_autonomics.client import Client, ClientError, GoogleIdToken
from tai_autonomics.gateway import ROLES, ROUTES, Endpoint
from tai_autonomics.logs import JsonFormatter
from tests.gateway.support import TOKENS, assert_error, auth, serving
from tests.helpers import free_port

AUDIENCE = "https://gateway.tai.test"
EMAILS = {"svc@tai-test.iam.gserviceaccount.com": "service", "audit@tai-test.iam.gserviceaccount.com": "auditor",
          "ops@tai-test.iam.gserviceaccount.com": "admin"}
SAMPLE = {"name": "worker", "id": "r-1", "operation_id": "op-1", "work_id": "w-1", "path": "0/000.p/3"}
BODIES = {
    "/v1/deployments": {"sku_id": "sku-001", "target_cloud": "gcp", "customer_ref": "c", "customer_account": "a",
                        "region": "r", "artifacts": {}},
    "/v1/publications": {"work_id": "w-1", "sku_id": "sku-001",
                         "artifacts": {"code": "x", "tests": "x", "docs": "x", "metadata": "x"}},
    "/v1/pricing/quotes": {"customer_id": "c", "metrics": {"m": 1}},
    "/v1/contracts/{id}/events": {"event": "msa_signed", "date": "2026-02-01", "monthly_fee": 5000},
}
QUERY = {"month": "2026-02"}


def request_for(ep: Endpoint) -> dict:
    """A request that passes every check of ``ep`` but auth."""
    params = {name: "1" if param.kind is int else QUERY.get(name, "pol-1") for name, param in ep.query.items()
              if param.required}
    return {"method": ep.method, "url": ep.path.format(**SAMPLE), "params": params,
            "json": BODIES.get(ep.path, {"type": "$info"}) if ep.body else None}


PROTECTED = [ep for ep in ROUTES if ep.roles is not None]


def test_health_routes_are_the_only_public_ones() -> None:
    assert sorted(ep.path for ep in ROUTES if ep.roles is None) == ["/healthz", "/prod-health", "/readyz"]


@pytest.mark.parametrize("ep", PROTECTED, ids=lambda ep: f"{ep.method} {ep.path}")
@pytest.mark.parametrize("header", [None, "Bearer nope", "Bearer", "Basic YWRtaW46YWRtaW4=", "Bearer a.b.c",
                                    f"Token {TOKENS['admin']}", f"Bearer {TOKENS['admin']}x",
                                    f"Bearer {TOKENS['admin'][:-1]}"])
def test_missing_or_wrong_tokens_are_401(http: httpx.Client, ep: Endpoint, header: str | None) -> None:
    response = http.request(**request_for(ep), headers={"Authorization": header} if header else {})
    body = assert_error(response, 401, "unauthorized")
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert TOKENS["admin"][:10] not in json.dumps(body)


@pytest.mark.parametrize("ep", PROTECTED, ids=lambda ep: f"{ep.method} {ep.path}")
@pytest.mark.parametrize("role", ROLES)
def test_each_role_reaches_only_its_routes(http: httpx.Client, contract, ep: Endpoint, role: str) -> None:
    response = http.request(**request_for(ep), headers=auth(role))
    if role == "admin" or role in ep.roles:  # past auth: the shell's WebSocket route answers a plain GET 426
        assert response.status_code in ((426,) if ep.path == "/v1/shell" else (200, 202)), response.text
    else:
        body = assert_error(response, 403, "forbidden")
        assert body["error"]["detail"] == {"role": role, "allowed_roles": sorted({*ep.roles, "admin"})}
    contract.check(ep.path, ep.method, response)


def test_tokens_never_reach_the_log(http: httpx.Client, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    for role in ROLES:
        http.get("/v1/supervision", headers=auth(role))
    http.get("/v1/supervision", headers={"Authorization": "Bearer not-a-token-but-secret"})
    lines = "\n".join(JsonFormatter().format(record) for record in caplog.records)
    assert '"subject":"token:admin"' in lines
    for secret in [*TOKENS.values(), "not-a-token-but-secret"]:
        assert secret not in lines


# -- Google-signed ID tokens -----------------------------------------------------------------

class _Keys:
    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tai test signer")])
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(self.key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
                .not_valid_after(now + datetime.timedelta(days=1)).sign(self.key, hashes.SHA256()))
        self.certs = {"k1": cert.public_bytes(serialization.Encoding.PEM).decode()}

    def token(self, *, key: rsa.RSAPrivateKey | None = None, kid: str = "k1", **claims) -> str:
        now = int(time.time())
        payload = {"iss": "https://accounts.google.com", "aud": AUDIENCE, "sub": "1234",
                   "email": "audit@tai-test.iam.gserviceaccount.com", "email_verified": True,
                   "iat": now, "exp": now + 3600, **claims}
        pem = (key or self.key).private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption())
        return jwt.encode(crypt.RSASigner.from_string(pem, key_id=kid), payload).decode()


class _CertsEndpoint:
    """Serves the test key's certificate as Google's certificate endpoint does, counting fetches."""

    def __init__(self, certs: dict[str, str]) -> None:
        body = json.dumps(certs).encode()
        self.fetches = 0
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                endpoint.fetches += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Cache-Control", "public, max-age=3600")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/oauth2/v1/certs"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture(scope="module")
def keys() -> _Keys:
    return _Keys()


@pytest.fixture(scope="module")
def google(node, keys: _Keys) -> Iterator[tuple[httpx.Client, _CertsEndpoint]]:
    endpoint = _CertsEndpoint(keys.certs)
    try:
        with serving(node, google_audience=AUDIENCE, google_certs_url=endpoint.url, google_roles=EMAILS) as server, \
                httpx.Client(base_url=server.url, timeout=10) as client:
            yield client, endpoint
    finally:
        endpoint.close()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_google_id_tokens_map_verified_emails_to_roles(google, keys: _Keys) -> None:
    client, endpoint = google
    auditor = keys.token()
    assert client.get("/v1/ledger/checkpoint", headers=bearer(auditor)).status_code == 200
    assert_error(client.get("/v1/supervision", headers=bearer(auditor)), 403, "forbidden")
    admin = keys.token(email="OPS@tai-test.iam.gserviceaccount.com")  # emails compare case-insensitively
    assert client.get("/v1/supervision", headers=bearer(admin)).status_code == 200
    service = keys.token(email="svc@tai-test.iam.gserviceaccount.com", iss="accounts.google.com")
    assert_error(client.get("/v1/ledger/checkpoint", headers=bearer(service)), 403, "forbidden")
    assert client.get("/metrics", headers=bearer(service)).status_code == 200
    assert client.get("/v1/supervision", headers=auth("admin")).status_code == 200  # local tokens still work
    assert endpoint.fetches == 1  # the certificates are kept for their max-age, not fetched per request


def test_the_typed_client_authenticates_with_a_google_id_token_it_keeps(google, keys: _Keys) -> None:
    """tai_autonomics.client's GoogleIdToken against the gateway's verifier: the token (here made by
    the test key, as Google's metadata server would answer) is fetched once and sent on each call."""
    client, _ = google
    fetched: list[str] = []

    def fetch(audience: str) -> str:
        fetched.append(audience)
        return keys.token(aud=audience)

    with Client(str(client.base_url), auth=GoogleIdToken(AUDIENCE, fetch=fetch)) as tai:
        assert tai.get_checkpoint()["size"] == 3
        with pytest.raises(ClientError) as refused:
            tai.get_supervision()  # the auditor's email has no admin role
        assert (refused.value.status, refused.value.code) == (403, "forbidden")
    assert fetched == [AUDIENCE]


@pytest.mark.parametrize("case, reason", [
    ("expired", "it has expired"),
    ("wrong_audience", "it is for another audience"),
    ("unknown_key", "it is signed by an unknown key"),
    ("forged", "its signature is wrong"),
    ("not_google", "not issued by Google"),
    ("unverified_email", "no verified email"),
    ("no_email", "no verified email"),
    ("garbage", "it is malformed"),
    ("alg_none", "it is malformed"),
])
def test_bad_google_id_tokens_are_401(google, keys: _Keys, case: str, reason: str) -> None:
    now = int(time.time())
    token = {
        "expired": lambda: keys.token(iat=now - 7200, exp=now - 3600),
        "wrong_audience": lambda: keys.token(aud="https://someone-else.test"),
        "unknown_key": lambda: keys.token(kid="k2"),
        "forged": lambda: keys.token(key=keys.other),
        "not_google": lambda: keys.token(iss="https://evil.test"),
        "unverified_email": lambda: keys.token(email_verified=False),
        "no_email": lambda: keys.token(email=""),
        "garbage": lambda: "eyJhbGciOiJSUzI1NiJ9.bm90IGpzb24.c2ln",
        "alg_none": lambda: _unsigned(keys.token()),
    }[case]()
    client, _ = google
    body = assert_error(client.get("/v1/ledger/checkpoint", headers=bearer(token)), 401, "unauthorized")
    assert reason in body["error"]["message"]
    assert token.split(".")[1] not in json.dumps(body)


def _unsigned(token: str) -> str:
    """The same claims under ``alg: none`` with no signature."""
    header = jwt._helpers.unpadded_urlsafe_b64encode(b'{"alg":"none","typ":"JWT","kid":"k1"}').decode()
    return f"{header}.{token.split('.')[1]}."


def test_a_google_identity_without_a_role_is_403(google, keys: _Keys) -> None:
    client, _ = google
    token = keys.token(email="stranger@example.com")
    assert_error(client.get("/v1/ledger/checkpoint", headers=bearer(token)), 403, "forbidden")


def test_unreachable_google_certificates_are_503(node, keys: _Keys) -> None:
    dead = f"http://127.0.0.1:{free_port()}/certs"
    with serving(node, google_audience=AUDIENCE, google_certs_url=dead, google_roles=EMAILS) as server:
        response = httpx.get(f"{server.url}/v1/ledger/checkpoint", headers=bearer(keys.token()))
    assert_error(response, 503, "auth_unavailable")
