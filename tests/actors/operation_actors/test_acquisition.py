"""Acquisition in a real tree against the sandbox's customer endpoint over real sockets."""

from __future__ import annotations

import os
import signal
import sqlite3
from concurrent.futures import ThreadPoolExecutor

import pytest

from tai_autonomics.actors.operation_api import CALL_TIMEOUT_S
from tai_autonomics.errors import (
    CoverageExceeded,
    IdempotencyKeyReused,
    InvalidRequest,
    ModeRefusal,
    NotFound,
    SkuNotAuthorized,
    StoreCorruptError,
    registered,
)
from tai_autonomics.operations import deploy
from tai_autonomics.runtime import CallError
from tests.actors.operation_actors.stubs import POLICY
from tests.actors.operation_actors.support import Ops, deploy_spec
from tests.helpers import wait_until

BOTH = pytest.mark.parametrize("node", ["simpleSystemBase", "multiprocTCPBase"], indirect=True)


@BOTH
def test_a_deploy_records_intent_then_completion(ops: Ops) -> None:
    ops.start()
    result = ops.deploy(key="k-1")
    assert result["status"] == "completed" and "rca" not in result
    intent, outcome = result["receipts"]
    assert (intent["kind"], outcome["kind"]) == ("deploy.intent", "deploy.completed")
    assert {intent["operation_id"], outcome["operation_id"]} == {result["operation_id"]}
    assert (intent["chain"], intent["mode"], intent["payload"]["sku_id"], intent["payload"]["cost"]) == (
        POLICY, "prod", "sku-001", "100")
    assert intent["seq"] < outcome["seq"]
    assert outcome["payload"]["deployment"]["status"] == "succeeded"
    assert outcome["payload"]["deployment"]["operation_id"] == result["operation_id"]
    assert len(ops.requests("customer.deploy")) == 1
    assert ops.call("Acquisition", "get", {"operation_id": result["operation_id"]}) == result
    # one call from the caller and two ledger appends: ProdMode was only asked for its authority,
    # once per operation actor as it started (docs/performance.md, "fewer hops")
    assert ops.node.call("ProdMode", "calls") == ["authority", "authority"]


@BOTH
def test_each_rejection_is_a_failed_deploy_with_its_root_cause_and_no_retry(ops: Ops) -> None:
    ops.start()
    rejections = ["authentication_error", "insufficient_permissions", "resource_quota_exceeded",
                  "sku_not_supported", "other"]
    for n, classification in enumerate(rejections, 1):
        ops.fault(kind="reject", endpoint="customer.deploy", classification=classification, times=1)
        result = ops.deploy()
        assert result["status"] == "failed"
        rca = result["rca"]
        assert rca["classification"] == classification
        assert rca["severity"] == deploy.CLASSES[classification].severity and rca["mitigation"]
        assert rca["context"]["status"] and rca["context"]["attempts"] == 1
        assert result["receipts"][1]["kind"] == "deploy.failed" and result["receipts"][1]["payload"]["rca"] == rca
        assert len(ops.requests("customer.deploy")) == n


def test_transient_errors_are_retried_with_backoff(ops: Ops) -> None:
    ops.start()
    ops.fault(kind="outage", endpoint="customer.deploy", times=2)
    result = ops.deploy()
    assert result["status"] == "completed"
    assert result["receipts"][1]["payload"]["attempts"] == 3
    arrivals = [r["time"] for r in ops.requests("customer.deploy")]
    assert [r["status"] for r in ops.requests("customer.deploy")] == [503, 503, 201]
    assert arrivals[1] - arrivals[0] >= 0.05 and arrivals[2] - arrivals[1] >= 0.1  # 0.05 s, then 0.1 s


def test_retry_after_is_honoured(ops: Ops) -> None:
    ops.start()
    ops.fault(kind="rate_limit", endpoint="customer.deploy", retry_after_s=0.15, times=1)
    assert ops.deploy()["status"] == "completed"
    first, second = (r["time"] for r in ops.requests("customer.deploy"))
    assert second - first >= 0.15  # not the 0.05 s backoff


def test_concurrent_requests_with_one_key_share_one_deploy(ops: Ops) -> None:
    ops.start()
    ops.fault(kind="latency", endpoint="customer.deploy", delay_s=0.3, times=1)

    def deploy_from_a_thread(_: int) -> dict:
        return ops.node.client().call("Acquisition", "deploy", {"spec": deploy_spec(), "idempotency_key": "shared"},
                                      timeout=CALL_TIMEOUT_S)

    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(deploy_from_a_thread, range(3)))
    assert results[0]["status"] == "completed" and results.count(results[0]) == 3
    assert len(ops.requests("customer.deploy")) == 1 and ops.kinds().count("deploy.intent") == 1


def test_a_slow_customer_endpoint_holds_up_only_its_own_deploy(ops: Ops) -> None:
    """The outside call runs off Acquisition's thread: while one customer's endpoint takes 3 s,
    another deploy is recorded, sent and answered."""
    ops.start(timeout_s=5.0)
    ops.fault(kind="latency", endpoint="customer.deploy", delay_s=3.0, times=1)

    def slow_deploy() -> dict:
        return ops.node.client().call("Acquisition", "deploy", {"spec": deploy_spec(), "idempotency_key": "slow"},
                                      timeout=CALL_TIMEOUT_S)

    with ThreadPoolExecutor(1) as pool:
        slow = pool.submit(slow_deploy)
        wait_until(lambda: "deploy.intent" in ops.kinds(), timeout=10)  # its outside call is under way
        fast = ops.deploy(key="fast")
        assert fast["status"] == "completed"
        assert not slow.done()
        assert slow.result()["status"] == "completed"
    assert [r["status"] for r in ops.requests("customer.deploy")] == [201, 201]


@pytest.mark.parametrize(("fault", "classification"), [
    ({"kind": "outage"}, "network_error"),
    ({"kind": "outage", "mode": "drop"}, "network_error"),
    ({"kind": "error", "status": 502}, "network_error"),
    ({"kind": "timeout", "delay_s": 5}, "timeout"),
])
def test_a_party_that_keeps_failing_is_tried_three_times(ops: Ops, fault: dict, classification: str) -> None:
    ops.start(timeout_s=0.3)
    ops.fault(endpoint="customer.deploy", **fault)
    result = ops.deploy()
    assert result["status"] == "failed" and result["rca"]["classification"] == classification
    assert result["rca"]["insurance_claim_eligible"] is True
    assert len(ops.requests("customer.deploy")) == 3


def test_an_unreachable_endpoint_is_a_network_error(ops: Ops) -> None:
    from tests.helpers import free_port

    ops.start(context={"customer": {"url": f"http://127.0.0.1:{free_port()}/customer/v1"}})
    result = ops.deploy()
    assert result["rca"]["classification"] == "network_error" and result["rca"]["context"]["attempts"] == 3
    assert "could not connect" in result["rca"]["root_cause"]


def test_the_same_idempotency_key_returns_the_first_result(ops: Ops) -> None:
    ops.start()
    first = ops.deploy(key="same")
    assert ops.deploy(key="same") == {**first, "replayed": True}
    assert len(ops.requests("customer.deploy")) == 1
    with pytest.raises(IdempotencyKeyReused) as err:
        ops.deploy(deploy_spec(region="us-east1"), key="same")
    assert err.value.code == "idempotency_key_reused" and err.value.detail["operation_id"] == first["operation_id"]
    assert ops.deploy(key="other")["operation_id"] != first["operation_id"]
    assert ops.deploy()["operation_id"] != ops.deploy()["operation_id"]  # no key: each is its own


@pytest.mark.parametrize("code", ["mode_refused", "sku_not_authorized", "coverage_limit_exceeded",
                                  "cert_validity_too_short", "insurance_not_verified"])
def test_a_guard_refusal_reaches_the_caller_and_nothing_goes_out(ops: Ops, code: str) -> None:
    ops.start(refusal={"code": code, "message": f"refused: {code}", "detail": {"limit_count": 3}})
    with pytest.raises(registered()[code]) as err:
        ops.deploy(key="k")
    assert (err.value.code, err.value.detail["limit_count"]) == (code, 3)
    assert ops.kinds() == [] and ops.requests("customer.deploy") == []
    ops.node.call("ProdMode", "refuse", None)
    assert ops.deploy(key="k")["status"] == "completed"  # a refused key is free to use


def test_eval_mode_refuses_deploys_with_an_advisory_refusal_receipt(ops: Ops) -> None:
    ops.start(mode="eval")
    with pytest.raises(ModeRefusal) as err:
        ops.deploy(key="k")
    assert err.value.code == "mode_refused"
    [refusal] = ops.receipts()
    assert (refusal["kind"], refusal["mode"], refusal["authority"]) == ("refusal", "eval", "advisory")
    assert refusal["chain"] == ops.node.call("ReceiptLedger", "status")["session"] and "session_mac" in refusal
    assert refusal["payload"]["operation"] == "deploy" and refusal["payload"]["request"]["region"] == "europe-west1"
    assert ops.requests("customer.deploy") == []


@pytest.mark.parametrize("bad", [None, {"spec": deploy_spec(target_cloud="mars")}, {"spec": deploy_spec(),
                                                                                    "dry_run": True}])
def test_bad_input_is_refused_and_nothing_is_recorded(ops: Ops, bad) -> None:
    ops.start()
    with pytest.raises(InvalidRequest) as err:
        ops.call("Acquisition", "deploy", bad)
    assert err.value.code == "invalid_request" and err.value.detail["field"]
    assert ops.kinds() == [] and ops.requests("customer.deploy") == []
    with pytest.raises(NotFound) as missing:
        ops.call("Acquisition", "get", {"operation_id": "op-nope"})
    assert missing.value.code == "not_found"


def test_after_sigkill_the_same_key_returns_the_first_result(ops: Ops) -> None:
    ops.start()
    first = ops.deploy(key="k")
    info = ops.node.call("Acquisition", "$info")
    os.kill(info["pid"], signal.SIGKILL)
    ops.node.whereis("Acquisition", wait=10, after=info["incarnation"])  # registered once rebuilt
    assert ops.deploy(key="k") == {**first, "replayed": True}
    assert ops.call("Acquisition", "get", {"operation_id": first["operation_id"]}) == first
    assert len(ops.requests("customer.deploy")) == 1


def test_a_deploy_cut_by_sigkill_after_its_intent_is_finished_by_the_next_incarnation(ops: Ops) -> None:
    ops.start()

    def intent_recorded_only() -> None:
        assert ops.kinds() == ["deploy.intent"]

    _cut_by_sigkill(ops, "cut", intent_recorded_only)
    wait_until(lambda: "deploy.completed" in ops.kinds(), what="the resumed deploy's outcome")
    result = ops.deploy(key="cut")
    assert result["status"] == "completed" and [r["kind"] for r in result["receipts"]] == [
        "deploy.intent", "deploy.completed"]
    assert ops.kinds() == ["deploy.intent", "deploy.completed"]
    assert result["receipts"][1]["payload"]["deployment"]["operation_id"] == result["operation_id"]


def test_under_the_real_prod_mode_coverage_is_counted_from_intents_and_refused(ops: Ops) -> None:
    ops.start(real_prod_mode=True)
    for _ in range(3):  # sku-002 insures 3 operations a month
        assert ops.deploy(deploy_spec(sku_id="sku-002", cost="1000"))["status"] == "completed"
    with pytest.raises(CoverageExceeded) as err:
        ops.deploy(deploy_spec(sku_id="sku-002", cost="1000"))
    assert err.value.code == "coverage_limit_exceeded" and err.value.detail["current_count"] == 3
    assert len(ops.requests("customer.deploy")) == 3
    wait_until(lambda: "coverage.exceeded" in ops.kinds(), what="ProdMode's coverage.exceeded receipt")
    assert ops.kinds().count("deploy.intent") == 3
    with pytest.raises(SkuNotAuthorized) as unknown:
        ops.deploy(deploy_spec(sku_id="sku-999"))
    assert unknown.value.code == "sku_not_authorized"


def test_an_operation_record_edited_into_nonsense_is_named_and_no_crash_loop(ops: Ops) -> None:
    """Bad stored input (docs/specification.md §8, issue 10): a clear error naming the record, the actor serves on,
    and the record's key is refused with that error instead of being run a second time."""
    ops.start()

    def mangle() -> None:  # while it is open, so the next start reads it
        with sqlite3.connect(ops.data_dir / "ledger.sqlite3") as db:
            db.execute("UPDATE operations SET started = 'the other day' WHERE key = 'mangled'")

    info = _cut_by_sigkill(ops, "mangled", mangle)
    again = ops.node.whereis("Acquisition", wait=10, after=info["incarnation"])
    assert ops.node.call("Acquisition", "$info")["incarnation"] == again.incarnation  # started, once
    assert ops.deploy(key="fresh")["status"] == "completed"
    with pytest.raises(StoreCorruptError) as err:
        ops.deploy(key="mangled")
    assert err.value.code == "ledger_store_corrupt" and "operation record" in err.value.message
    assert len(ops.requests("customer.deploy")) == 2


def _cut_by_sigkill(ops: Ops, key: str, meanwhile) -> dict:
    """A deploy whose customer call is under way (slowed by 2 s), ``meanwhile()``, then SIGKILL of
    Acquisition: the caller gets an error, not a hang. The killed incarnation's ``$info``."""
    ops.fault(kind="latency", endpoint="customer.deploy", delay_s=2.0, times=1)
    info = ops.node.call("Acquisition", "$info")
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(lambda: ops.node.client().call("Acquisition", "deploy", {
            "spec": deploy_spec(), "idempotency_key": key}, timeout=1.5))
        wait_until(lambda: ops.requests("customer.deploy"), what="the deploy to reach the customer")
        meanwhile()
        os.kill(info["pid"], signal.SIGKILL)
        with pytest.raises(CallError):  # an outside Client hears at its timeout
            pending.result()
    return info
