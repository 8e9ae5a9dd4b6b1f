"""Faults through the sandbox, seen by a user of the dev-profile daemon over HTTP (issue 5):
the insurer goes down (a fresh cache keeps deploys going; past its TTL the daemon goes
read_only: writes get 503 with the reason, reads still work; the insurer back, prod again),
coverage runs out (409 with the numbers, and a coverage.exceeded receipt), and the certificate
gets near expiry because renewal fails (deploys refused by the pre-flight with the reason and
the numbers, nothing recorded, reads and the mode unchanged; renewal back, deploys again)."""

from __future__ import annotations

import httpx
import pytest

from tai_autonomics.gateway.errors import STATUS_BY_CLASS
from tai_autonomics.trust.errors import CertValidityTooShort
from tests.e2e import DEPLOY, as_, dev_daemon, receipts, until
from tests.helpers import wait_until

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
    assert refused.status_code == 503 and refused.headers["retry-after"] == "1", refused.text
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


# The certificate near expiry. The dev profile's insurer issues certificates valid 34 s, and
# CertManager renews them once 30 s are left; a deploy's pre-flight needs Acquisition's deadline_s
# (25 s, the default) plus ProdMode's preflight_buffer_s (1 s). So while renewal works every
# certificate has 29-34 s left and deploys pass; once renewal fails, the one held drops below the
# 26 s a deploy needs within 8 s, and is still 25 s from expiring (prod, not read_only).
# ProdMode's own periodic check never runs during the test (an hour): it sees every renewal through
# CertManager's certificate_changed notice, so a renewed certificate lets deploys through at once.
CERT_VALIDITY_S, RENEW_BEFORE_S, DEADLINE_S, BUFFER_S = 34, 30, 25, 1
NEEDED_S = DEADLINE_S + BUFFER_S
SHORT_CERTIFICATES = f"""
[workers.CertManager.args]
check_interval_s = 0.5
renew_before_days = {RENEW_BEFORE_S / 86400}
renew_retry_base_s = 0.5
renew_retry_cap_s = 1

[workers.InsuranceClient.args]
attempts = 1
timeout_s = 2
breaker_reset_s = 1

[workers.ProdMode.args]
check_interval_s = 3600
preflight_buffer_s = {BUFFER_S}

[workers.Acquisition.args]
deadline_s = {DEADLINE_S}
"""


@pytest.fixture(scope="module")
def expiring(tmp_path_factory):
    with dev_daemon(tmp_path_factory.mktemp("expiry"), workers=SHORT_CERTIFICATES,
                    release_tables=f"[sandbox]\ncert_validity_s = {CERT_VALIDITY_S}\n") as d:
        yield d


def seconds_left(daemon) -> int:
    """How long ProdMode's guard sees the held certificate still valid."""
    status = daemon.http.post("/v1/actors/ProdMode/call", json={"type": "status"}, headers=as_(daemon, "admin"))
    assert status.status_code == 200, status.text
    return status.json()["certificate_seconds_left"]


def certificate(daemon) -> dict:
    return daemon.http.get("/v1/insurance", headers=as_(daemon, "service")).json()["certificate"]


def renewals(daemon, after: int = 0) -> list[dict]:
    """The renewal requests the sandbox insurer received after seq ``after``."""
    answer = httpx.get(f"{daemon.sandbox}/admin/requests", params={"endpoint": "insurer.renew_certificate",
                                                                    "after": after})
    return answer.json()["requests"]


def deploy_keyed(daemon, key: str) -> httpx.Response:
    return daemon.http.post("/v1/deployments", json={**DEPLOY, "customer_ref": key},
                            headers={**as_(daemon, "service"), "Idempotency-Key": key})


def test_certificate_near_expiry_refuses_deploys_with_the_reason_until_renewal_works(expiring) -> None:
    d = expiring
    # Renewal keeps the short-lived certificate fresh, and deploys pass (more than RENEW_BEFORE_S left:
    # ProdMode sees a certificate renewed since the start, not the dev CA's first one).
    first = certificate(d)["fingerprint"]
    until(lambda: certificate(d)["fingerprint"] != first and seconds_left(d) > RENEW_BEFORE_S,
          timeout=CERT_VALIDITY_S, what="an automatic renewal seen by ProdMode")
    before = deploy_keyed(d, "before-the-fault")
    assert before.status_code == 200 and before.json()["status"] == "completed", before.text

    # The insurer's renewal endpoint goes down: every renewal attempt fails and the held certificate ages.
    seen = max([r["seq"] for r in renewals(d)], default=0)
    fault = httpx.post(f"{d.sandbox}/admin/faults", json={"kind": "outage", "endpoint": "insurer.renew_certificate"})
    assert fault.status_code == 201, fault.text
    until(lambda: any(r["status"] == 503 for r in renewals(d, seen)), timeout=20, what="a renewal refused")
    held = certificate(d)  # renewals run one at a time: none can replace it after a refused one
    until(lambda: seconds_left(d) < NEEDED_S, timeout=20, what="the certificate near expiry")

    refused = deploy_keyed(d, "near-expiry")
    error = refused.json()["error"]
    assert refused.status_code == STATUS_BY_CLASS[CertValidityTooShort] == 503, refused.text
    assert refused.headers["retry-after"] == "1"
    assert error["code"] == "cert_validity_too_short" and refused.json()["request_id"]
    left = error["detail"]["seconds_left"]
    assert error["detail"] == {"seconds_left": left, "needed_s": NEEDED_S} and 0 < left < NEEDED_S
    assert error["message"] == (f"the insurance certificate expires in {left} s, before this operation could "
                                f"finish (needs {NEEDED_S} s)")
    assert certificate(d)["fingerprint"] == held["fingerprint"]  # still the one renewal failed to replace
    assert not [r for r in receipts(d) if r["kind"] == "deploy.intent" and r["payload"]["key"] == "near-expiry"]

    # Reads keep working, and the daemon is still insured: only operations that could outlive the
    # certificate are refused.
    assert mode(d) == "prod"
    got = d.http.get(f"/v1/deployments/{before.json()['operation_id']}", headers=as_(d, "auditor"))
    assert got.status_code == 200 and got.json()["status"] == "completed"
    assert d.http.get("/v1/ledger/checkpoint", headers=as_(d, "auditor")).status_code == 200
    metrics = d.http.get("/metrics", headers=as_(d, "service")).text
    assert 'tai_refusals_total{code="cert_validity_too_short"}' in metrics

    # Renewal works again: the next attempt (backoff capped at 1 s) renews, ProdMode is told at once,
    # and the same request passes.
    assert httpx.delete(f"{d.sandbox}/admin/faults/{fault.json()['id']}").status_code == 204
    until(lambda: seconds_left(d) >= NEEDED_S, timeout=10, what="a renewed certificate seen by ProdMode")
    again = deploy_keyed(d, "near-expiry")  # the refused request left nothing behind under its key
    assert again.status_code == 200, again.text
    assert again.json()["status"] == "completed"
    assert [r["kind"] for r in again.json()["receipts"]] == ["deploy.intent", "deploy.completed"]
    renewed = [r for r in receipts(d) if r["kind"] == "cert.renewed"
               and r["payload"]["old_fingerprint"] == held["fingerprint"]]
    assert len(renewed) == 1 and renewed[0]["chain"] == "dev-policy-0001"
