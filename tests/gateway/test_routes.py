"""Every route's happy path over real HTTP, and how actor outcomes become statuses."""

from __future__ import annotations

import asyncio
import json
import threading
from types import SimpleNamespace

import httpx
import pytest

from tai_autonomics.gateway import ApiError, supervision
from tai_autonomics.gateway.context import scrape
from tai_autonomics.gateway.metrics import GatewayMetrics
from tai_autonomics.runtime import Node
from tests.gateway.actors import RECEIPTS
from tests.gateway.support import OPERATION_ACTORS, assert_error, auth, serving
from tests.gateway.test_auth import BODIES
from tests.helpers import wait_until


def test_health_routes_need_no_token(http: httpx.Client, contract) -> None:
    for path, status in (("/healthz", "alive"), ("/readyz", "ready")):
        response = http.get(path)
        assert "server" not in response.headers  # no server software and version to fingerprint
        assert response.json() == {"status": status}
        contract.check(path, "GET", response)


def test_readyz_answers_503_when_the_tree_is_not_ready(http: httpx.Client, gateway, contract) -> None:
    gateway.gateway.ready.clear()
    try:
        response = http.get("/readyz")
        assert_error(response, 503, "not_ready")
        contract.check("/readyz", "GET", response)
    finally:
        gateway.gateway.ready.set()


def test_openapi_document_is_served(http: httpx.Client, contract) -> None:
    response = http.get("/openapi.json", headers=auth("service"))
    assert response.json() == contract.doc


def test_supervision_shows_the_live_tree_with_restarts(http: httpx.Client, node: Node, contract) -> None:
    before = http.get("/v1/supervision", headers=auth("admin")).json()
    echo = next(c for c in before["children"] if c["name"] == "echo")
    crashed = http.post("/v1/actors/echo/call", json={"type": "crash", "payload": "x"}, headers=auth("admin"))
    assert_error(crashed, 503, "actor_crashed")
    node.whereis("echo", wait=10, after=echo["incarnation"])

    response = http.get("/v1/supervision", headers=auth("admin"))
    contract.check("/v1/supervision", "GET", response)
    tree = response.json()
    assert tree["name"] == "root" and [c["name"] for c in tree["children"]] == ["ReceiptLedger", "echo", "ops"]
    after = next(c for c in tree["children"] if c["name"] == "echo")
    assert after["restarts"] == echo["restarts"] + 1 and after["incarnation"] != echo["incarnation"]
    ops = tree["children"][2]
    assert ops["type"] == "supervisor" and [c["name"] for c in ops["children"]] == ["worker", *OPERATION_ACTORS]


def test_actor_crash_answer_names_no_internals(http: httpx.Client, node: Node) -> None:
    incarnation = node.call("echo", "$info")["incarnation"]
    body = assert_error(http.post("/v1/actors/echo/call", json={"type": "crash", "payload": "secret-ish"},
                                  headers=auth("admin")), 503, "actor_crashed")
    assert "secret-ish" not in str(body) and "ValueError" not in str(body)
    assert body["error"]["detail"] == {"actor": "echo", "message_type": "crash"}
    node.whereis("echo", wait=10, after=incarnation)


def test_metrics(http: httpx.Client, contract) -> None:
    http.get("/healthz")
    # odd methods share one label: no unbounded label values (one the parser knows: httptools answers
    # a method outside its list, BREW say, 400 before the app)
    http.request("PROPFIND", "/healthz")
    http.get("/v1/receipts/nope", headers=auth("auditor"))
    response = http.get("/metrics", headers=auth("auditor"))
    contract.check("/metrics", "GET", response)
    text = response.text
    assert 'tai_gateway_requests_total{method="GET",route="/healthz",status="200"}' in text
    assert 'tai_gateway_requests_total{method="GET",route="/v1/receipts/{id}",status="404"}' in text
    assert 'tai_gateway_request_duration_seconds_bucket{le="0.005",method="GET",route="/healthz",status="200"}' in text
    assert "tai_supervision_walk_ok 1.0" in text
    assert 'tai_actor_restarts_total{actor="worker",supervisor="ops"} 0.0' in text
    assert 'tai_actor_running{actor="ReceiptLedger",supervisor="root"} 1.0' in text
    assert 'tai_gateway_requests_total{method="other",route="unmatched",status="405"}' in text
    assert "tai_gateway_actor_calls_in_flight" in text
    # asked of the actors at the scrape (tests/gateway/actors.py answers these numbers)
    assert "tai_certificate_days_left 41.0" in text
    assert 'tai_insurer_cache_lookups_total{result="hit"} 9.0' in text
    assert 'tai_insurer_cache_lookups_total{result="miss"} 1.0' in text
    assert 'tai_insurer_request_duration_seconds_bucket{le="1.0"} 3.0' in text
    assert 'tai_insurer_request_duration_seconds_bucket{le="+Inf"} 5.0' in text
    assert "tai_insurer_request_duration_seconds_sum 7.25" in text


def _samples(http: httpx.Client) -> dict[str, float]:
    text = http.get("/metrics", headers=auth("auditor")).text
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
            if line and not line.startswith("#")}


def test_a_replayed_operation_is_counted_as_replayed_not_completed(http: httpx.Client) -> None:
    completed, replayed = ('tai_operations_total{operation="deploy",outcome="completed"}',
                           'tai_operations_total{operation="deploy",outcome="replayed"}')
    before = _samples(http)
    response = http.post("/v1/deployments", json=BODIES["/v1/deployments"],
                         headers={**auth("service"), "Idempotency-Key": "replayed-1"})
    assert response.status_code == 200 and response.headers["Idempotent-Replayed"] == "true", response.text
    assert "replayed" not in response.json()  # the body is the first answer's, as it was
    after = _samples(http)
    assert after[replayed] == before.get(replayed, 0) + 1
    assert after.get(completed, 0) == before.get(completed, 0)
    http.post("/v1/deployments", json=BODIES["/v1/deployments"], headers={**auth("service"), "Idempotency-Key": "k-9"})
    assert _samples(http)[completed] == after.get(completed, 0) + 1  # a first answer is a completion


def test_an_expired_certificate_is_scraped_from_the_refusal_detail() -> None:
    """CertManager refuses ``status`` once the certificate has expired; the days left are in the detail."""
    class Bridge:
        async def call(self, actor: str, msg_type: str, payload=None):
            if actor == "CertManager":
                raise ApiError(422, "cert_expired", "expired", {"status": {"loaded": True, "days_left": -2}})
            raise ApiError(503, "actor_restarting", "restarting")

    gateway = SimpleNamespace(bridge=Bridge(), config=SimpleNamespace(root="root"), metrics=GatewayMetrics(lambda: 0))
    text = asyncio.run(scrape(gateway)).decode()
    assert "tai_certificate_days_left -2.0" in text and "tai_supervision_walk_ok 0.0" in text
    assert "tai_mode" not in text  # an actor that could not answer is left out, not guessed


def test_actor_call_cast_and_introspection(http: httpx.Client, contract) -> None:
    admin = auth("admin")
    response = http.post("/v1/actors/worker/call", json={"type": "echo", "payload": {"a": [1, None, "x"]}},
                         headers=admin)
    contract.check("/v1/actors/{name}/call", "POST", response)
    assert response.json() == {"a": [1, None, "x"]}
    assert http.post("/v1/actors/worker/call", json={"type": "echo"}, headers=admin).json() is None
    info = http.post("/v1/actors/worker/call", json={"type": "$info"}, headers=admin).json()
    assert info["name"] == "worker" and info["actor"] == "tests.gateway.actors:Worker"
    seen = http.post("/v1/actors/worker/call", json={"type": "$state"}, headers=admin).json()["seen"]
    assert http.post("/v1/actors/root/call", json={"type": "count_children"}, headers=admin).json()["specs"] == 3

    cast = http.post("/v1/actors/worker/cast", json={"type": "echo", "payload": 1}, headers=admin)
    contract.check("/v1/actors/{name}/cast", "POST", cast)
    assert cast.status_code == 202 and cast.json() == {"accepted": True}
    wait_until(lambda: http.post("/v1/actors/worker/call", json={"type": "$state"}, headers=admin).json()["seen"]
               == seen + 1, what="the cast handled")


@pytest.mark.parametrize("actor, msg_type", [("worker", "crash"), ("echo", "$exit"), ("nobody", "echo"),
                                             ("worker", "restart_child"), ("root", "restart_child")])
def test_actor_messages_outside_the_allow_list_are_refused(http: httpx.Client, actor: str, msg_type: str) -> None:
    body = assert_error(http.post(f"/v1/actors/{actor}/call", json={"type": msg_type}, headers=auth("admin")),
                        403, "message_not_allowed")
    assert body["error"]["detail"] == {"actor": actor, "message_type": msg_type}


def test_receipts_and_ledger(http: httpx.Client, contract) -> None:
    auditor = auth("auditor")
    checks = [
        ("/v1/receipts/{id}", "/v1/receipts/r-2", RECEIPTS["r-2"]),
        ("/v1/receipts/{id}/proof", "/v1/receipts/r-2/proof", {"leaf_index": 1, "tree_size": 3, "hashes": ["AAAA"]}),
        ("/v1/receipts/{id}/proof", "/v1/receipts/r-2/proof?tree_size=2",
         {"leaf_index": 1, "tree_size": 2, "hashes": ["AAAA"]}),
        ("/v1/ledger/consistency", "/v1/ledger/consistency?from=1&to=3", {"from": 1, "to": 3, "hashes": ["AAAA"]}),
        ("/v1/ledger/receipts", "/v1/ledger/receipts?chain=pol-1", list(RECEIPTS.values())),
        ("/v1/ledger/receipts", "/v1/ledger/receipts?chain=pol-1&after=1&limit=1", [RECEIPTS["r-2"]]),
        ("/v1/ledger/receipts", "/v1/ledger/receipts?chain=other", []),
    ]
    for template, url, expected in checks:
        response = http.get(url, headers=auditor)
        assert response.status_code == 200 and response.json() == expected, (url, response.text)
        contract.check(template, "GET", response)
    checkpoint = http.get("/v1/ledger/checkpoint", headers=auditor)
    contract.check("/v1/ledger/checkpoint", "GET", checkpoint)
    assert checkpoint.json()["size"] == 3


@pytest.mark.parametrize("url, status, code", [
    ("/v1/receipts/r-9", 404, "ledger_not_found"),
    ("/v1/receipts/r-9/proof", 404, "ledger_not_found"),
    ("/v1/ledger/consistency?from=1&to=9", 404, "not_found"),
    ("/v1/ledger/consistency?from=3&to=1", 422, "invalid_range"),
])
def test_ledger_refusals(http: httpx.Client, contract, url: str, status: int, code: str) -> None:
    response = http.get(url, headers=auth("auditor"))
    body = assert_error(response, status, code)
    contract.check(url.split("?")[0].replace("r-9", "{id}"), "GET", response)
    assert "exception" not in body["error"]["detail"]


@pytest.mark.parametrize("msg_type, status, code", [
    ("opaque", 502, "invalid_actor_reply"),
    ("overloaded", 429, "rate_limited"),
    ("conflicting", 409, "conflict"),
    ("refused", 422, "sku_not_authorized"),
])
def test_actor_refusals_map_to_statuses(http: httpx.Client, contract, msg_type: str, status: int, code: str) -> None:
    response = http.post("/v1/actors/ReceiptLedger/call", json={"type": msg_type}, headers=auth("admin"))
    assert_error(response, status, code)
    contract.check("/v1/actors/{name}/call", "POST", response)


def test_a_failing_store_is_503_and_its_internals_stay_in_the_log(http: httpx.Client, caplog) -> None:
    body = assert_error(http.post("/v1/actors/ReceiptLedger/call", json={"type": "broken_store"},
                                  headers=auth("admin")), 503, "ledger_store_error")
    assert "/srv/tai" not in json.dumps(body)
    logged = [r for r in caplog.records if getattr(r, "fields", {}).get("event") == "actor_call_failed"]
    assert logged and "/srv/tai" in logged[-1].fields["reason"]


def test_timeouts_missing_actors_and_overload_answer_503(node: Node, contract) -> None:
    with serving(node, call_timeout_s=0.3, max_in_flight=2, workers=2) as server, \
            httpx.Client(base_url=server.url, timeout=10, headers=auth("admin")) as client:
        timed_out = client.post("/v1/actors/worker/call", json={"type": "sleep", "payload": 0.6})
        assert_error(timed_out, 503, "call_timeout")
        assert timed_out.headers["retry-after"] == "1"
        assert_error(client.post("/v1/actors/ghost/call", json={"type": "$info"}), 503, "no_such_actor")

        # Two calls hold both places in flight: a third is shed at once, then places free up.
        results: list[int] = []
        calls = [threading.Thread(target=lambda: results.append(
            client.post("/v1/actors/worker/call", json={"type": "sleep", "payload": 0.1}).status_code))
            for _ in range(2)]
        for call in calls:
            call.start()
        wait_until(lambda: server.gateway.bridge.in_flight == 2, what="two calls in flight")
        shed = client.post("/v1/actors/worker/call", json={"type": "echo"})
        assert_error(shed, 503, "overloaded")
        contract.check("/v1/actors/{name}/call", "POST", shed)
        for call in calls:
            call.join()
        wait_until(lambda: server.gateway.bridge.in_flight == 0, what="places released")
        assert client.post("/v1/actors/worker/call", json={"type": "echo", "payload": 2}).json() == 2


def test_a_tree_that_cannot_be_walked(node: Node) -> None:
    with serving(node, root="ghost", call_timeout_s=0.3) as server, \
            httpx.Client(base_url=server.url, timeout=10) as client:
        assert_error(client.get("/v1/supervision", headers=auth("admin")), 503, "no_such_actor")
        scrape = client.get("/metrics", headers=auth("admin"))
        assert scrape.status_code == 200 and "tai_supervision_walk_ok 0.0" in scrape.text
        assert "tai_actor_restarts_total" not in scrape.text


def test_a_subtree_that_cannot_answer_is_shown_as_such() -> None:
    class Bridge:  # the root answers; its sub-supervisor is restarting
        async def call(self, actor: str, msg_type: str, payload=None):
            if actor == "ops":
                raise ApiError(503, "actor_restarting", "restarting")
            return [{"name": "a", "type": "worker", "state": "running"},
                    {"name": "ops", "type": "supervisor", "state": "running"},
                    {"name": "down", "type": "supervisor", "state": "restarting"}]

    tree = asyncio.run(supervision.walk(Bridge(), "root"))
    assert tree["children"] == [{"name": "a", "type": "worker", "state": "running"},
                                {"name": "ops", "type": "supervisor", "state": "running", "children": None,
                                 "error": "actor_restarting"},
                                {"name": "down", "type": "supervisor", "state": "restarting"}]


@pytest.mark.parametrize(("method", "path", "template", "body"), [
    ("POST", "/v1/deployments", "/v1/deployments", BODIES["/v1/deployments"]),
    ("GET", "/v1/deployments/op-7", "/v1/deployments/{operation_id}", None),
    ("POST", "/v1/publications", "/v1/publications", BODIES["/v1/publications"]),
    ("GET", "/v1/publications/w-1", "/v1/publications/{work_id}", None),
    ("POST", "/v1/pricing/quotes", "/v1/pricing/quotes", {"customer_id": "c", "metrics": {"m": 1}}),
    ("GET", "/v1/mode", "/v1/mode", None),
    ("GET", "/v1/insurance", "/v1/insurance", None),
])
def test_operation_routes_reach_their_actors(http: httpx.Client, contract, method, path, template, body) -> None:
    response = http.request(method, path, json=body, headers={**auth("service"), "Idempotency-Key": "key-1"})
    assert response.status_code == 200, response.text
    contract.check(template, method, response)
    if path == "/v1/deployments":
        assert response.json()["operation_id"] == "key-1"  # the Idempotency-Key reached Acquisition


def test_prod_health_is_public_and_says_insured(http: httpx.Client) -> None:
    response = http.get("/prod-health")
    assert response.status_code == 200 and response.json() == {"status": "insured", "mode": "prod"}


def test_a_malformed_idempotency_key_is_refused(http: httpx.Client) -> None:
    response = http.post("/v1/deployments", json=BODIES["/v1/deployments"],
                         headers={**auth("service"), "Idempotency-Key": "no spaces"})
    assert_error(response, 400, "invalid_request")


@pytest.mark.parametrize(("change", "field"), [
    ({"cost": -1}, "cost"), ({"target_cloud": "mars"}, "target_cloud"), ({"surprise": 1}, "body"),
])
def test_operation_bodies_are_checked_against_the_contract(http: httpx.Client, change: dict, field: str) -> None:
    response = http.post("/v1/deployments", json={**BODIES["/v1/deployments"], **change}, headers=auth("service"))
    assert_error(response, 400, "invalid_request")
    assert response.json()["error"]["detail"]["field"] == field
