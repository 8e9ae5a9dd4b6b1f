"""Publisher in a real tree against the sandbox's marketplace over real sockets."""

from __future__ import annotations

import hashlib
import os
import signal
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tai_autonomics.errors import InvalidRequest, ModeRefusal, WorkConflict
from tai_autonomics.runtime import CallError
from tests.actors.operation_actors.stubs import POLICY
from tests.actors.operation_actors.support import ARTIFACTS, Ops
from tests.helpers import wait_until

HASHES = {role: hashlib.sha256(text.encode()).hexdigest() for role, text in ARTIFACTS.items()}


@pytest.mark.parametrize("node", ["simpleSystemBase", "multiprocTCPBase"], indirect=True)
def test_a_publish_uploads_registers_and_records_intent_then_completion(ops: Ops) -> None:
    ops.start()
    result = ops.publish("work-1")
    assert result["status"] == "completed"
    intent, outcome = result["receipts"]
    assert (intent["kind"], outcome["kind"], intent["chain"]) == ("publish.intent", "publish.completed", POLICY)
    assert intent["payload"]["artifacts"] == HASHES and intent["payload"]["work_id"] == "work-1"
    listing = outcome["payload"]["listing"]
    assert (listing["work_id"], listing["artifacts"]) == ("work-1", HASHES)
    assert len(ops.requests("marketplace.upload_artifact")) == 4 and len(ops.requests("marketplace.register_work")) == 1
    with httpx.Client(base_url=ops.sandbox_url) as client:
        assert client.get("/marketplace/v1/works/work-1").json()["listing_id"] == listing["listing_id"]
    assert ops.call("Publisher", "get", {"work_id": "work-1"}) == result


@pytest.mark.parametrize(("fault", "classification"), [
    ({"kind": "reject", "endpoint": "marketplace.upload_artifact", "classification": "artifacts_validation_failed"},
     "artifacts_validation_failed"),
    ({"kind": "reject", "endpoint": "marketplace.upload_artifact", "classification": "storage_upload_failed"},
     "storage_upload_failed"),
    ({"kind": "reject", "endpoint": "marketplace.register_work", "classification": "metadata_registration_failed"},
     "metadata_registration_failed"),
    ({"kind": "reject", "endpoint": "marketplace.*", "classification": "permission_denied"}, "permission_denied"),
    ({"kind": "reject", "endpoint": "marketplace.register_work", "classification": "other"}, "other"),
    ({"kind": "outage", "endpoint": "marketplace.register_work"}, "network_error"),
    ({"kind": "error", "endpoint": "marketplace.upload_artifact", "status": 500}, "storage_upload_failed"),
])
def test_each_marketplace_failure_has_its_root_cause(ops: Ops, fault: dict, classification: str) -> None:
    ops.start()
    ops.fault(**fault)
    result = ops.publish()
    assert result["status"] == "failed" and result["rca"]["classification"] == classification
    assert result["receipts"][1]["kind"] == "publish.failed"
    retried = fault["kind"] != "reject"
    assert result["rca"]["context"]["attempts"] == (3 if retried else 1)


def test_a_work_is_published_once_also_after_sigkill(ops: Ops) -> None:
    ops.start()
    first = ops.publish("once")
    assert ops.publish("once") == {**first, "replayed": True}
    info = ops.node.call("Publisher", "$info")
    os.kill(info["pid"], signal.SIGKILL)
    ops.node.whereis("Publisher", wait=10, after=info["incarnation"])
    assert ops.publish("once") == {**first, "replayed": True}
    assert len(ops.requests("marketplace.register_work")) == 1
    with pytest.raises(WorkConflict) as err:
        ops.publish("once", code="print('changed')\n")
    assert err.value.code == "work_conflict" and err.value.detail["operation_id"] == first["operation_id"]


def test_a_publish_cut_by_sigkill_after_its_intent_is_finished_by_its_repeat(ops: Ops) -> None:
    ops.start()
    ops.fault(kind="latency", endpoint="marketplace.register_work", delay_s=2.0, times=1)
    info = ops.node.call("Publisher", "$info")
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(lambda: ops.node.client().call("Publisher", "publish", {
            "work_id": "cut", "sku_id": "sku-001", "artifacts": ARTIFACTS}, timeout=1.5))
        wait_until(lambda: ops.requests("marketplace.register_work"), what="the publish to reach registration")
        assert ops.kinds() == ["publish.intent"]
        os.kill(info["pid"], signal.SIGKILL)
        with pytest.raises(CallError):
            pending.result()
    ops.node.whereis("Publisher", wait=10, after=info["incarnation"])
    assert ops.call("Publisher", "get", {"work_id": "cut"})["status"] == "in_progress"
    result = ops.publish("cut")  # the content is not in the ledger: the repeat brings it back
    assert result["status"] == "completed" and ops.kinds() == ["publish.intent", "publish.completed"]
    assert result["receipts"][1]["payload"]["listing"]["artifacts"] == HASHES


def test_eval_mode_refuses_publishing_with_an_advisory_refusal_receipt(ops: Ops) -> None:
    ops.start(mode="eval")
    with pytest.raises(ModeRefusal) as err:
        ops.publish()
    assert err.value.code == "mode_refused"
    [refusal] = ops.receipts()
    assert (refusal["kind"], refusal["mode"], refusal["payload"]["request"]["artifacts"]) == (
        "refusal", "eval", HASHES)
    assert ops.requests("marketplace.*") == []


@pytest.mark.parametrize("bad", [{"work_id": "w", "sku_id": "sku-001", "artifacts": {"code": "x"}},
                                 {"work_id": "w", "sku_id": "sku-001", "artifacts": {**ARTIFACTS, "docs": ""}},
                                 {"work_id": "bad id", "sku_id": "sku-001", "artifacts": ARTIFACTS}])
def test_bad_input_is_refused_and_nothing_is_recorded(ops: Ops, bad: dict) -> None:
    ops.start()
    with pytest.raises(InvalidRequest) as err:
        ops.call("Publisher", "publish", bad)
    assert err.value.code == "invalid_request"
    assert ops.kinds() == [] and ops.requests("marketplace.*") == []
