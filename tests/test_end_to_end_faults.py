"""Faults through the sandbox, seen by a user of the dev-profile daemon over HTTP (issue 5):
the insurer goes down (a fresh cache keeps deploys going; past its TTL the daemon goes
read_only: writes get 503 with the reason, reads still work; the insurer back, prod again), and
coverage runs out (409 with the numbers, and a coverage.exceeded receipt)."""

from __future__ import annotations

import httpx
import pytest

from tests.e2e import DEPLOY, as_, dev_daemon
from tests.runtime.test_supervision import wait_until

# short clocks so the cache goes stale and the mode is re-checked within the test
FAST = """
[workers.InsuranceClient.args]
cache_ttl_s = 2
attempts = 1
timeout_s = 2
breaker_reset_s = 1

[workers.ProdMode.args]
check_interval_s = 0.3
"""


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    with dev_daemon(tmp_path_factory.mktemp("faults"), workers=FAST) as d:
        yield d


def mode(daemon) -> str:
    return daemon.http.get("/v1/mode", headers=as_(daemon, "service")).json()["mode"]


def deploy(daemon, **change) -> httpx.Response:
    return daemon.http.post("/v1/deployments", json={**DEPLOY, **change}, headers=as_(daemon, "service"))


def test_insurer_outage_fresh_cache_then_read_only_then_back(daemon) -> None:
    assert mode(daemon) == "prod"
    fault = httpx.post(f"{daemon.sandbox}/admin/faults", json={"kind": "outage", "endpoint": "insurer.*"}).json()
    assert deploy(daemon, customer_ref="during-outage").status_code == 200  # the cache is still fresh

    wait_until(lambda: mode(daemon) == "read_only", timeout=20, what="read_only past the cache TTL")
    refused = deploy(daemon, customer_ref="read-only")
    assert refused.status_code == 503, refused.text
    error = refused.json()["error"]
    assert error["code"] == "mode_refused" and "insurer" in error["message"]
    assert daemon.http.get("/v1/ledger/checkpoint", headers=as_(daemon, "auditor")).status_code == 200  # reads work
    assert daemon.http.get("/prod-health").status_code == 503

    assert httpx.delete(f"{daemon.sandbox}/admin/faults/{fault['id']}").status_code == 204
    wait_until(lambda: mode(daemon) == "prod", timeout=20, what="prod again")
    assert deploy(daemon, customer_ref="after-outage").status_code == 200


def test_coverage_exhausted_is_409_with_the_numbers_and_a_receipt(daemon) -> None:
    for i in range(3):
        ok = deploy(daemon, sku_id="sku-002", cost=100, customer_ref=f"small-{i}")
        assert ok.status_code == 200, ok.text
    refused = deploy(daemon, sku_id="sku-002", cost=100, customer_ref="one-too-many")
    assert refused.status_code == 409, refused.text
    detail = refused.json()["error"]["detail"]
    assert (refused.json()["error"]["code"], detail["limit_count"], detail["current_count"]) == \
        ("coverage_limit_exceeded", 3, 3)
    receipts = daemon.http.get("/v1/ledger/receipts", params={"chain": "dev-policy-0001", "limit": 1000},
                               headers=as_(daemon, "auditor")).json()
    exceeded = [r for r in receipts if r["kind"] == "coverage.exceeded"]
    assert exceeded and exceeded[-1]["payload"]["sku"] == "sku-002"


def test_metrics_count_operations_refusals_receipts_and_mode(daemon) -> None:
    assert deploy(daemon, customer_ref="metered").status_code == 200
    assert deploy(daemon, sku_id="sku-999", customer_ref="uninsured").status_code == 422
    text = daemon.http.get("/metrics", headers=as_(daemon, "service")).text
    values = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
              if line and not line.startswith("#")}
    assert values['tai_operations_total{operation="deploy",outcome="completed"}'] >= 1
    assert 'tai_operation_duration_seconds_count{operation="deploy"}' in values
    assert values['tai_refusals_total{code="sku_not_authorized"}'] >= 1
    assert values['tai_mode{mode="prod"}'] == 1 and values['tai_mode{mode="read_only"}'] == 0
    assert values["tai_receipts"] >= 2
    assert values["tai_insurance_verified"] in (0, 1) and 'tai_insurer_breaker{state="closed"}' in values

