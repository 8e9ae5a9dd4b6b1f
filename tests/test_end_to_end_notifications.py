"""Signed webhooks from the dev daemon to the sandbox's customer, which checks every signature.

The dev CA's certificate is made to live 40 s (and not renewed): at start CertManager warns that
it expires within a day (the closest threshold it crossed), then it expires and prod goes
read_only. Each becomes one signed notification the sandbox verifies; the receiver fails twice on
purpose, so deliveries are retried; each delivery is a notification.sent receipt the ledger verifies.
"""

from __future__ import annotations

import json

import httpx
import pytest

from tai_autonomics.notifications import sign
from tai_autonomics.sandbox.customer import WEBHOOK_PATH
from tests.e2e import as_, client, dev_daemon, receipts, until
from tests.daemon import run_cli

WORKERS = """
[workers.CertManager.args]
renew_before_days = 0

[workers.ProdMode.args]
check_interval_s = 0.5

[workers.Notifier.args]
poll_interval_s = 0.2
backoff_base_s = 0.2
attempts = 6
"""
EXPECTED = {"certificate.expires_in_1d", "certificate.expired", "mode.read_only"}


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    with dev_daemon(tmp_path_factory.mktemp("notify"), workers=WORKERS,
                    release_tables="[sandbox]\ncert_validity_s = 40\n") as d:
        yield d


def webhooks(daemon) -> list[dict]:
    return httpx.get(f"{daemon.sandbox}{WEBHOOK_PATH}").json()["webhooks"]


def test_an_expiring_certificate_gives_signed_webhooks_the_customer_verifies(daemon) -> None:
    fault = {"kind": "error", "endpoint": "customer.webhook", "status": 500, "times": 2}
    assert httpx.post(f"{daemon.sandbox}/admin/faults", json=fault).status_code == 201
    until(lambda: EXPECTED <= {w.get("kind") for w in webhooks(daemon)}, timeout=90, what="every notification")
    verified = [w for w in webhooks(daemon) if w["verified"]]
    assert {w["kind"] for w in verified} == EXPECTED
    assert len(verified) == len(EXPECTED)  # one per (customer, kind) within the hour
    assert {w["customer"] for w in verified} == {"dev-account-0001"}
    expired = next(w["notice"] for w in verified if w["kind"] == "certificate.expired")
    assert expired["detail"]["to"] == "read_only" and expired["policy_id"] == "dev-policy-0001"

    tried = httpx.get(f"{daemon.sandbox}/admin/requests", params={"endpoint": "customer.webhook"}).json()["requests"]
    statuses = [r["status"] for r in tried]
    assert statuses.count(500) == 2 and statuses[-1] == 200  # failed on purpose twice, retried until received

    until(lambda: len([r for r in receipts(daemon) if r["kind"] == "notification.sent"]) == len(EXPECTED),
          timeout=30, what="a receipt per delivery")
    sent = [r["payload"] for r in receipts(daemon) if r["kind"] == "notification.sent"]
    assert {p["notice"] for p in sent} == EXPECTED and max(p["attempts"] for p in sent) >= 2
    assert {p["delivery_id"] for p in sent} == {w["delivery_id"] for w in verified}
    assert all(p["url"].endswith(WEBHOOK_PATH) for p in sent)
    checked = run_cli("ledger", "verify", "--data-dir", str(daemon.data_dir))
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_receiver_refuses_forged_and_replayed_deliveries_and_keeps_why(daemon) -> None:
    body = json.dumps({"kind": "mode.read_only"}).encode()
    forged = sign("not-the-secret", body)
    replayed = sign("x", body, 1_000_000_000)
    for header, code in ((forged, "signature_mismatch"), (replayed, "signature_expired"), (None, "signature_missing")):
        signed = {"X-TAI-Signature": header} if header else {}
        answer = httpx.post(f"{daemon.sandbox}{WEBHOOK_PATH}", content=body,
                            headers={"Content-Type": "application/json", **signed})
        assert (answer.status_code, answer.json()["error"]["code"]) == (401, code)
        assert webhooks(daemon)[-1] | {"received_at": 0, "seq": 0} == {
            "received_at": 0, "seq": 0, "delivery_id": None, "verified": False, "refused": code}
    status = daemon.http.post("/v1/actors/Notifier/call", json={"type": "$state"}, headers=as_(daemon, "admin"))
    assert status.status_code == 200, status.text
    assert (status.json()["enabled"], status.json()["sent"], status.json()["pending"]) == (True, len(EXPECTED), 0)


def test_a_restarted_notifier_reads_the_chain_again_without_notifying_twice(daemon) -> None:
    before = len(webhooks(daemon))
    with client(daemon, "admin") as admin:
        with admin.open_shell() as shell:
            assert shell.run("restart Notifier").ok

        def state() -> dict:
            return admin.call_actor("Notifier", {"type": "$state"})

        # the new incarnation has read the chain again: the settled notices are held back by the throttle
        until(lambda: state()["chain"] is not None and state()["suppressed"] >= len(EXPECTED), timeout=30,
              what="the new Notifier caught up")
        assert (state()["sent"], state()["pending"]) == (0, 0)
    assert len(webhooks(daemon)) == before
