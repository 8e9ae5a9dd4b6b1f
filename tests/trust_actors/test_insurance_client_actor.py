"""The InsuranceClient actor in a real tree, on both bases, against the sandbox over real sockets."""

from __future__ import annotations

import time

import httpx
import pytest

from tai_autonomics.actors.insurance_client import CALL_TIMEOUT_S
from tai_autonomics.errors import TaiError
from tai_autonomics.runtime import Node, StartError, parse_tree
from tai_autonomics.runtime.messages import Call, Reply
from tests.helpers import listen_for
from tests.trust_actors.support import POLICY_ID, Trust, restart


def call(node: Node, msg_type: str, payload=None):
    return node.call("InsuranceClient", msg_type, payload, timeout=CALL_TIMEOUT_S)


def refusal(node: Node, msg_type: str, payload=None) -> TaiError:
    with pytest.raises(TaiError) as refused:
        call(node, msg_type, payload)
    return refused.value


def cert_manager_checked(admin: httpx.Client, timeout: float = 10) -> None:
    """Wait until CertManager's start-up revocation check (it asks the insurer through
    InsuranceClient at once) has been answered, so that it cannot land inside a test's fault."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        asked = admin.get("/admin/requests", params={"endpoint": "insurer.certificate_status"}).json()["requests"]
        if any(r["status"] is not None for r in asked):
            return
    raise AssertionError("CertManager's start-up revocation check never reached the insurer")


def test_policy_status_is_fetched_and_cached(node: Node, tree, admin: httpx.Client) -> None:
    tree()
    status = call(node, "verify_policy", {})
    assert (status["policy_id"], status["status"], status["from_cache"]) == (POLICY_ID, "active", False)
    assert call(node, "cached_policy_status")["from_cache"] is True
    described = call(node, "status")
    assert described["breaker_state"] == "closed" and described["cache"]["fresh"] is True
    assert described["call_timeout_s"] == CALL_TIMEOUT_S
    assert refusal(node, "policy_status", {"policy_id": "no-such-policy"}).code == "policy_not_found"
    assert refusal(node, "certificate_status", {"serial": "not hex!"}).code == "invalid_request"


def test_an_outage_is_answered_from_a_fresh_cache_and_the_open_breaker_is_visible(
        node: Node, tree, admin: httpx.Client) -> None:
    tree(client={"breaker_fail_max": 2, "breaker_reset_s": 600})
    assert call(node, "policy_status")["from_cache"] is False
    cert_manager_checked(admin)  # its failure would count towards the breaker too
    admin.post("/admin/faults", json={"kind": "outage", "endpoint": "insurer.*"}).raise_for_status()
    cached = call(node, "policy_status")
    assert (cached["status"], cached["from_cache"]) == ("active", True)
    assert call(node, "breaker_state") == {"state": "open"}
    assert refusal(node, "certificate_status", {"serial": "abc"}).code == "insurance_circuit_open"
    assert refusal(node, "renew", {"csr_pem": "x"}).code == "insurance_circuit_open"
    described = call(node, "status")
    assert (described["breaker_state"], described["cache"]["fresh"]) == ("open", True)
    # for /metrics: the one cached answer is a hit (status itself, asked twice, counted nothing);
    # each HTTP attempt is timed (CertManager's revocation check is one more)
    assert described["cache_lookups"] == {"hit": 1, "miss": 0}
    assert described["request_seconds"]["count"] >= 3
    policy_requests = admin.get("/admin/requests", params={"endpoint": "insurer.policy_status"}).json()["requests"]
    assert [r["status"] for r in policy_requests] == [200, 503, 503]  # the breaker opened on the second failure


def test_an_outage_past_the_cache_ttl_is_reported_stale(node: Node, tree, admin: httpx.Client) -> None:
    tree(client={"cache_ttl_s": 0})  # every cached answer is already stale
    assert call(node, "policy_status")["from_cache"] is False
    admin.post("/admin/faults", json={"kind": "outage", "endpoint": "insurer.policy_status"}).raise_for_status()
    stale = refusal(node, "verify_policy")
    assert stale.code == "insurance_cache_stale" and stale.detail["insurer_error"] == "insurance_service_unavailable"
    assert call(node, "status")["cache"]["fresh"] is False


def test_the_actor_answers_other_calls_while_an_operation_waits_to_retry(
        node: Node, tree, admin: httpx.Client) -> None:
    """Retries wait on timers, not in a sleep: ``status`` is answered while a call waits out a Retry-After."""
    tree()
    admin.post("/admin/faults", json={"kind": "outage", "endpoint": "insurer.policy_status", "times": 1,
                                      "retry_after_s": 1.5}).raise_for_status()
    address = node.whereis("InsuranceClient").address
    node._system.tell(address, Call("pending", "policy_status", {}))
    assert node.call("InsuranceClient", "status")["in_flight"] == 1
    reply = listen_for(node, CALL_TIMEOUT_S, lambda m: isinstance(m, Reply))
    assert isinstance(reply, Reply) and reply.ref == "pending" and reply.value["status"] == "active", reply
    policy_requests = admin.get("/admin/requests", params={"endpoint": "insurer.policy_status"}).json()["requests"]
    assert [r["status"] for r in policy_requests] == [503, 200]


def test_a_call_waiting_to_retry_is_answered_with_an_error_when_the_actor_stops(
        node: Node, tree, admin: httpx.Client) -> None:
    tree()
    admin.post("/admin/faults", json={"kind": "outage", "endpoint": "insurer.policy_status",
                                      "retry_after_s": 2.0}).raise_for_status()
    node._system.tell(node.whereis("InsuranceClient").address, Call("pending", "policy_status", {}))
    assert node.call("InsuranceClient", "status")["in_flight"] == 1
    node.call("root", "restart_child", "InsuranceClient")
    reply = listen_for(node, CALL_TIMEOUT_S, lambda m: isinstance(m, Reply))
    assert isinstance(reply, Reply) and reply.ref == "pending" and reply.error.code == "actor_crashed", reply
    assert "stopped before the insurer answered" in reply.error.message


def test_a_crashed_insurance_client_restarts_with_a_fresh_breaker_and_cache(
        node: Node, tree, admin: httpx.Client) -> None:
    tree(client={"breaker_fail_max": 1, "breaker_reset_s": 600})
    admin.post("/admin/faults", json={"kind": "error", "endpoint": "insurer.*"}).raise_for_status()
    assert refusal(node, "policy_status").code == "insurance_circuit_open"
    restart(node, "InsuranceClient")
    described = call(node, "status")
    assert (described["breaker_state"], described["cache"]) == ("closed", None)
    admin.post("/admin/reset").raise_for_status()
    assert call(node, "policy_status")["from_cache"] is False


def test_prod_without_an_insurer_fails_the_start_and_eval_starts_unconfigured(node: Node, trust: Trust,
                                                                              admin: httpx.Client) -> None:
    def spec(mode: str, insurer: dict | None = None):
        context = {"mode": mode, "data_dir": str(trust.data_dir), "insurer": insurer or {}}
        return parse_tree({"root": "root", "supervisors": {"root": {"children": ["InsuranceClient"]}}, "workers": {
            "InsuranceClient": {"actor": "tai_autonomics.actors.insurance_client:InsuranceClient",
                                "args": {"context": context}}}})

    with pytest.raises(StartError) as failed:
        node.start_tree(spec("prod"))
    assert "insurer's url, public_key_file, policy_id" in str(failed.value)
    with pytest.raises(StartError) as unset:
        node.start_tree(spec("prod", {"url_env": "TAI_TEST_UNSET_INSURER_URL", "policy_id": POLICY_ID,
                                      "public_key_file": "k.pem"}))
    assert "url (environment variable TAI_TEST_UNSET_INSURER_URL is not set)" in str(unset.value)
    node.start_tree(spec("eval"))
    try:
        assert call(node, "status")["configured"] is False
        assert refusal(node, "policy_status").code == "insurance_not_configured"
    finally:
        node.stop_tree()


def test_a_retry_schedule_longer_than_callers_wait_fails_the_start(node: Node, tree) -> None:
    with pytest.raises(StartError) as failed:
        tree(client={"timeout_s": 20.0})
    assert "longer than the 35 s callers wait (CALL_TIMEOUT_S)" in str(failed.value)
