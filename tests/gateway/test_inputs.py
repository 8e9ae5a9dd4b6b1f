"""Malformed HTTP gets the right 4xx and our error body, never a 500 (hand-written cases and fuzzing)."""

from __future__ import annotations

import json

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tai_autonomics.gateway.errors import ApiError
from tai_autonomics.gateway.inputs import fields
from tests.gateway.support import assert_error, auth

CALL = "/v1/actors/echo/call"  # its allow-list (echo, crash, refuse) has nothing that blocks
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def post(http: httpx.Client, content: bytes, content_type: str = "application/json", url: str = CALL,
         **headers: str) -> httpx.Response:
    return http.post(url, content=content, headers={**auth("admin"), "Content-Type": content_type, **headers})


@pytest.mark.parametrize("content, code", [
    (b"{", "malformed_json"),
    (b"", "malformed_json"),
    (b'{"type": "echo",}', "malformed_json"),
    (b'{"type": "echo", "type": "sleep"}', "malformed_json"),  # duplicate keys: which one would win?
    (b'{"type": "echo", "payload": NaN}', "malformed_json"),
    (b'{"type": "echo", "payload": Infinity}', "malformed_json"),
    (b'{"type": "echo", "payload": 1e999}', "malformed_json"),  # too large to be finite: read as infinity
    (b"\xff\xfe{}", "malformed_json"),
    (b"[" * 3000 + b"]" * 3000, "malformed_json"),
    (b'{"type": "echo", "payload": ' + b"9" * 5000 + b"}", "malformed_json"),
    (b'["type", "echo"]', "invalid_request"),
    (b'"echo"', "invalid_request"),
    (b"null", "invalid_request"),
    (b'{"payload": 1}', "invalid_request"),
    (b'{"type": 1}', "invalid_request"),
    (b'{"type": null}', "invalid_request"),
    (b'{"type": ["echo"]}', "invalid_request"),
    (b'{"type": "echo", "extra": 1}', "invalid_request"),
])
def test_bad_bodies_are_400(http: httpx.Client, contract, content: bytes, code: str) -> None:
    response = post(http, content)
    assert_error(response, 400, code)
    contract.check("/v1/actors/{name}/call", "POST", response)


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "",
                                          "application/jsonx", "multipart/form-data; boundary=x"])
def test_non_json_bodies_are_415(http: httpx.Client, contract, content_type: str) -> None:
    response = post(http, b'{"type": "echo"}', content_type)
    assert_error(response, 415, "unsupported_media_type")
    contract.check("/v1/actors/{name}/call", "POST", response)


def test_json_with_a_charset_is_fine(http: httpx.Client) -> None:
    assert post(http, b'{"type": "echo", "payload": 5}', "application/json; charset=utf-8").json() == 5


def test_oversized_bodies_are_413_declared_or_streamed(http: httpx.Client, contract) -> None:
    big = json.dumps({"type": "echo", "payload": "x" * 9000}).encode()
    response = post(http, big)
    assert_error(response, 413, "body_too_large")
    contract.check("/v1/actors/{name}/call", "POST", response)

    def chunks():  # no Content-Length: the limit holds while the body streams in
        for _ in range(20):
            yield b" " * 1000
    streamed = http.post(CALL, content=chunks(), headers={**auth("admin"), "Content-Type": "application/json"})
    assert "content-length" not in streamed.request.headers
    assert_error(streamed, 413, "body_too_large")
    assert post(http, json.dumps({"type": "echo", "payload": "x" * 8000}).encode()).status_code == 200


@pytest.mark.parametrize("url", [
    "/v1/ledger/consistency", "/v1/ledger/consistency?from=1", "/v1/ledger/consistency?to=2",
    "/v1/ledger/consistency?from=a&to=2", "/v1/ledger/consistency?from=1&to=-2", "/v1/ledger/consistency?from=0&to=2",
    "/v1/ledger/consistency?from=1&to=2&from=1", "/v1/ledger/consistency?from=1&to=2&extra=1",
    "/v1/ledger/consistency?from=1.5&to=2", "/v1/ledger/consistency?from=1&to=99999999999999999999",
    "/v1/ledger/consistency?from=%201&to=2", "/v1/ledger/receipts", "/v1/ledger/receipts?chain=c&limit=0",
    "/v1/ledger/receipts?chain=c&limit=1001",
    "/v1/ledger/receipts?chain=c&after=-1", "/v1/ledger/receipts?chain=", "/v1/ledger/receipts?chain=a%20b",
    "/v1/ledger/receipts?chain=" + "c" * 129, "/v1/ledger/checkpoint?x=1", "/v1/receipts/r-1/proof?tree_size=0",
    "/v1/receipts/r-1?tree_size=1", "/v1/receipts/r%20weird", "/v1/receipts/" + "r" * 129,
])
def test_bad_query_and_path_parameters_are_400(http: httpx.Client, url: str) -> None:
    assert_error(http.get(url, headers=auth("auditor")), 400, "invalid_request")


def test_unknown_routes_and_methods(http: httpx.Client) -> None:
    assert_error(http.get("/v1/nothing", headers=auth("admin")), 404, "not_found")
    assert_error(http.get("/v1/actors/worker/call", headers=auth("admin")), 405, "method_not_allowed")
    response = http.put("/v1/receipts/r-1", headers=auth("auditor"))
    assert_error(response, 405, "method_not_allowed")
    assert set(response.headers["allow"].split(", ")) == {"GET", "HEAD"}


def test_request_ids_are_echoed_when_sane_and_made_otherwise(http: httpx.Client) -> None:
    assert http.get("/healthz", headers={"X-Request-Id": "abc-123.x"}).headers["x-request-id"] == "abc-123.x"
    for bad in ("a b", "x" * 129, "<script>", ""):
        made = http.get("/healthz", headers={"X-Request-Id": bad}).headers["x-request-id"]
        assert made != bad and len(made) == 32
    error = http.get("/v1/receipts/r-9", headers={**auth("auditor"), "X-Request-Id": "req-42"})
    assert error.json()["request_id"] == "req-42"


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                    max_leaves=12)


@FUZZ
@given(body=st.dictionaries(st.sampled_from(["type", "payload", "extra", ""]) | st.text(max_size=6), JSON, max_size=4))
def test_fuzzed_json_bodies_never_fail_the_server(http: httpx.Client, body: dict) -> None:
    response = post(http, json.dumps(body).encode())
    if response.status_code == 200:
        assert set(body) <= {"type", "payload"} and body.get("type") in ("echo", "$info", "$state")
    else:
        assert_error(response, response.status_code)
        assert response.status_code in (400, 403, 503) and response.status_code != 500


@FUZZ
@given(raw=st.binary(max_size=200))
def test_fuzzed_raw_bodies_never_fail_the_server(http: httpx.Client, raw: bytes) -> None:
    response = post(http, raw)
    assert response.status_code < 500 or response.status_code == 503, response.text
    if response.status_code != 200:
        assert_error(response, response.status_code)


QUERY_NAMES = st.sampled_from(["from", "to", "chain", "after", "limit", "tree_size", "x"])
QUERY_VALUES = st.one_of(st.integers(-5, 2**70).map(str), st.text(max_size=12))


@FUZZ
@given(path=st.sampled_from(["/v1/ledger/consistency", "/v1/ledger/receipts", "/v1/receipts/r-1/proof",
                             "/v1/ledger/checkpoint"]),
       params=st.lists(st.tuples(QUERY_NAMES, QUERY_VALUES), max_size=4))
def test_fuzzed_query_strings_never_fail_the_server(http: httpx.Client, path: str, params: list) -> None:
    response = http.get(path, params=params, headers=auth("auditor"))
    assert response.status_code in (200, 400, 404, 422), response.text
    if response.status_code != 200:
        assert_error(response, response.status_code)


@pytest.mark.parametrize("value", [True, False, 1.0, "1", None])
def test_a_field_declared_an_integer_takes_only_an_integer(value: object) -> None:
    """JSON's ``true`` is not 1: a body field declared ``int`` refuses a boolean as any other non-integer."""
    fields({"n": 3}, {"n": int})
    with pytest.raises(ApiError) as err:
        fields({"n": value}, {"n": int})
    assert (err.value.status, err.value.code, err.value.detail) == (400, "invalid_request", {"field": "n"})
