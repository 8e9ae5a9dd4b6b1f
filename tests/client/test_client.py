"""The typed client held to the gateway's OpenAPI document, its retry policy and its tokens.

(Driving the dev daemon with it, a 503 retried included: tests/test_end_to_end_client.py.)
"""

from __future__ import annotations

import json
import time
import typing

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.auth import crypt, jwt
from hypothesis import given
from hypothesis import strategies as st

from tai_autonomics.client import OPERATIONS, AsyncClient, BearerToken, Client, GoogleIdToken, RetryPolicy, models
from tai_autonomics.client._client import _Operation, _Operations
from tai_autonomics.gateway import openapi_document


def operation_ids(document: dict) -> set[str]:
    return {op["operationId"] for item in document["paths"].values() for op in item.values() if "operationId" in op}


def client_methods(cls: type) -> set[str]:
    return {name for name in dir(cls) if isinstance(getattr(cls, name), _Operation)}


def test_every_operation_of_the_document_has_a_method_on_both_clients_and_no_method_lacks_one() -> None:
    served = operation_ids(json.loads(openapi_document()))
    assert served == set(OPERATIONS) == client_methods(Client) == client_methods(AsyncClient)
    assert all(getattr(_Operations, name).build is OPERATIONS[name] for name in OPERATIONS)


def test_every_model_has_the_properties_and_required_fields_of_its_schema() -> None:
    schemas = json.loads(openapi_document())["components"]["schemas"]
    assert set(schemas) <= set(dir(models)), set(schemas) - set(dir(models))
    for name, schema in schemas.items():
        model = getattr(models, name)
        assert set(typing.get_type_hints(model)) == set(schema["properties"]), name
        assert model.__required_keys__ == frozenset(schema.get("required", ())), name


def test_a_deploy_gets_a_fresh_idempotency_key_unless_given_one_and_paths_are_escaped() -> None:
    first, second = OPERATIONS["create_deployment"]({}), OPERATIONS["create_deployment"]({})
    assert first.headers["Idempotency-Key"] != second.headers["Idempotency-Key"]
    assert OPERATIONS["create_deployment"]({}, "mine").headers == {"Idempotency-Key": "mine"}
    assert OPERATIONS["get_receipt"]("../v1/mode").path == "/v1/receipts/..%2Fv1%2Fmode"


def _response(status: int, retry_after: str | None = None) -> httpx.Response:
    return httpx.Response(status, headers={} if retry_after is None else {"Retry-After": retry_after})


@given(attempt=st.integers(1, 10), status=st.sampled_from([200, 400, 404, 409, 429, 500, 502, 503]),
       retry_after=st.none() | st.floats(0, 100).map(lambda s: f"{s:.3f}") | st.sampled_from(["soon", "-1", "nan"]))
def test_only_429_and_503_are_retried_waiting_their_retry_after_within_the_bounds(attempt, status, retry_after) -> None:
    policy = RetryPolicy(attempts=4, base_s=0.5, cap_s=8, max_retry_after_s=30)
    wait = policy.wait_s(attempt, _response(status, retry_after))
    if attempt >= 4 or status not in (429, 503):
        assert wait is None
    elif retry_after is not None and retry_after[0].isdigit():
        assert wait == (float(retry_after) if float(retry_after) <= 30 else None)
    else:
        assert wait is not None and min(8, 0.5 * 2 ** (attempt - 1)) <= wait <= 1.1 * min(8, 0.5 * 2 ** (attempt - 1))


def test_an_unconnected_send_is_retried_and_bad_policies_and_tokens_are_refused() -> None:
    assert RetryPolicy(attempts=2).wait_s(1, None) is not None and RetryPolicy(attempts=2).wait_s(2, None) is None
    with pytest.raises(ValueError):
        RetryPolicy(attempts=0)
    for bad in ("", "two words"):
        with pytest.raises(ValueError):
            BearerToken(bad)
    with pytest.raises(ValueError):
        Client("http://127.0.0.1:1", token="t", auth=BearerToken("u"))
    assert "secret" not in repr(BearerToken("secret"))


def test_a_google_id_token_is_fetched_once_and_again_only_near_its_expiry() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    signer = crypt.RSASigner.from_string(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()), "k1")
    fetched: list[str] = []
    lifetime = {"s": 3600}

    def fetch(audience: str) -> str:
        fetched.append(audience)
        return jwt.encode(signer, {"aud": audience, "exp": int(time.time()) + lifetime["s"]}).decode()

    auth = GoogleIdToken("https://tai.example.run.app", fetch=fetch)
    first = auth.token()
    assert auth.token() == first and fetched == ["https://tai.example.run.app"]
    request = next(auth.sync_auth_flow(httpx.Request("GET", "http://x")))
    assert request.headers["Authorization"] == f"Bearer {first}"
    lifetime["s"] = 60  # expires within the margin: every use fetches anew
    auth = GoogleIdToken("aud", fetch=fetch)
    auth.token()
    auth.token()
    assert fetched[1:] == ["aud", "aud"]
