"""Cloud Run's lifecycle (docs/specification.md §11): SIGTERM with a deploy in flight to a party that never answers.

The dev-profile daemon as a user runs it. After SIGTERM it is ``draining``: ``/readyz`` and new
writes answer 503; the deploy waiting on the customer gets its budget (8 s), then an
interruption receipt and a JSON 503; the process exits 0 within Cloud Run's 10 s. Started again
on the same data, the interrupted deploy is finished, once, and its key answers its result.
"""

from __future__ import annotations

import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from tests.e2e import DEPLOY, as_, dev_daemon, receipts, until

CLOUD_RUN_GRACE_S = 10


def test_sigterm_with_a_deploy_in_flight_drains_and_exits_0_within_10_s(tmp_path: Path) -> None:
    with dev_daemon(tmp_path) as daemon:
        fault = httpx.post(f"{daemon.sandbox}/admin/faults",
                           json={"kind": "timeout", "endpoint": "customer.deploy", "delay_s": 60})
        assert fault.status_code in (200, 201), fault.text
        with ThreadPoolExecutor(1) as pool:
            in_flight = pool.submit(daemon.http.post, "/v1/deployments", json=DEPLOY,
                                    headers={**as_(daemon, "service"), "Idempotency-Key": "rollout-1"})
            until(lambda: httpx.get(f"{daemon.sandbox}/admin/requests",
                                    params={"endpoint": "customer.deploy"}).json()["requests"], 30,
                  "the deploy to reach the customer")
            signalled = time.monotonic()
            daemon.proc.send_signal(signal.SIGTERM)
            until(lambda: daemon.http.get("/readyz").status_code == 503, 5, "/readyz to answer 503")
            ready = daemon.http.get("/readyz")
            assert ready.json()["error"]["code"] == "draining" and ready.headers["Retry-After"]
            refused = daemon.http.post("/v1/deployments", json=DEPLOY, headers=as_(daemon, "service"))
            assert refused.status_code == 503 and refused.json()["error"]["code"] == "draining"
            assert refused.headers["Retry-After"]
            assert daemon.http.get("/v1/mode", headers=as_(daemon, "auditor")).json()["mode"] == "draining"
            answer = in_flight.result(timeout=CLOUD_RUN_GRACE_S)
        code = daemon.proc.wait(CLOUD_RUN_GRACE_S)
        stopped_after = time.monotonic() - signalled
        drained = next(e for e in daemon.lines() if e.get("event") == "drained")
    assert drained["interrupted"] == {"Acquisition": 1, "Publisher": 0} and drained["requests_answered"], drained
    assert code == 0 and stopped_after <= CLOUD_RUN_GRACE_S, stopped_after
    assert answer.status_code == 503 and answer.headers["content-type"] == "application/json", answer.text
    error = answer.json()["error"]
    assert error["code"] == "operation_interrupted" and error["detail"]["key"] == "rollout-1"
    operation_id = error["detail"]["operation_id"]

    with dev_daemon(tmp_path) as again:  # the same data: the next revision's instance
        kinds = [(r["kind"], r.get("operation_id")) for r in receipts(again)]
        assert ("deploy.interrupted", operation_id) in kinds
        interrupted = next(r for r in receipts(again) if r["kind"] == "deploy.interrupted")
        assert interrupted["payload"]["rca"]["classification"] == "shutdown"
        repeat = again.http.post("/v1/deployments", json=DEPLOY,
                                 headers={**as_(again, "service"), "Idempotency-Key": "rollout-1"})
        assert repeat.status_code in (200, 202) and repeat.json()["operation_id"] == operation_id, repeat.text
        until(lambda: again.http.get(f"/v1/deployments/{operation_id}",
                                     headers=as_(again, "service")).json()["status"] == "completed", 30,
              "the interrupted deploy to be finished")
        ours = [k for k, op in ((r["kind"], r.get("operation_id")) for r in receipts(again)) if op == operation_id]
        assert ours == ["deploy.intent", "deploy.interrupted", "deploy.completed"]


def test_sigterm_when_idle_exits_at_once(tmp_path: Path) -> None:
    with dev_daemon(tmp_path) as daemon:
        signalled = time.monotonic()
        daemon.proc.send_signal(signal.SIGTERM)
        assert daemon.proc.wait(CLOUD_RUN_GRACE_S) == 0
        assert time.monotonic() - signalled < 5
        drained = next(e for e in daemon.lines() if e.get("event") == "drained")
        assert drained["interrupted"] == {"Acquisition": 0, "Publisher": 0} and drained["requests_answered"]
