"""The insurer over time, as the sandbox plays it for the dev-profile daemon (issue 14,
docs/reliability.md "Insurer over time"): flapping faster than the policy-status cache lasts
changes nothing; outages longer than it, repeated, and answers slower than the client's timeout
move prod to read_only and back with exactly one ``mode.changed`` receipt per transition (no storm);
and while deploys stream in throughout, none is lost: each is answered 200 with its intent and its
outcome in the ledger, or refused 503 ``mode_refused`` with nothing recorded under its key.
"""

from __future__ import annotations

import threading
import time

import httpx

from tests.e2e import DEPLOY, as_, dev_daemon, receipts, until

TTL_S = 3
FAST = f"""
[workers.InsuranceClient.args]
cache_ttl_s = {TTL_S}
attempts = 1
timeout_s = 1
breaker_reset_s = 1

[workers.ProdMode.args]
check_interval_s = 0.3
"""


class Deploys(threading.Thread):
    """Deploys with fresh keys, one every ``every`` s, until stopped: (key, status, body) of each."""

    def __init__(self, daemon, every: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.d, self.every, self.answers = daemon, every, []
        self.done = threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=self.d.url, timeout=30) as http:
            i = 0
            while not self.done.wait(self.every):  # the load's own pace
                key = f"over-time-{i}"
                answer = http.post("/v1/deployments", json={**DEPLOY, "customer_ref": key},
                                   headers={**as_(self.d, "service"), "Idempotency-Key": key})
                self.answers.append((key, answer.status_code, answer.json()))
                i += 1


def _fault(d, **fault) -> str:
    made = httpx.post(f"{d.sandbox}/admin/faults", json=fault)
    assert made.status_code == 201, made.text
    return made.json()["id"]


def _clear(d, fault_id: str) -> None:
    assert httpx.delete(f"{d.sandbox}/admin/faults/{fault_id}").status_code == 204


def _mode(d) -> str:
    return d.http.get("/v1/mode", headers=as_(d, "service")).json()["mode"]


def _changes(d) -> list[dict]:
    return [r["payload"] for r in receipts(d) if r["kind"] == "mode.changed"]


def test_flapping_outages_and_slow_answers_one_receipt_per_transition_and_no_deploy_lost(tmp_path) -> None:
    with dev_daemon(tmp_path, workers=FAST) as d:
        load = Deploys(d)
        load.start()
        try:
            start = len(_changes(d))
            # flapping faster than the cache lasts: each "up" lets a check through, the cache stays fresh
            modes = set()
            for _ in range(4):
                fault = _fault(d, kind="outage", endpoint="insurer.*")
                time.sleep(1)  # the flapping schedule itself, shorter than TTL_S
                modes.add(_mode(d))
                _clear(d, fault)
                time.sleep(1)
                modes.add(_mode(d))
            assert modes == {"prod"} and len(_changes(d)) == start

            # outages longer than the cache lasts, twice: read_only and back, each change recorded once
            for _ in range(2):
                fault = _fault(d, kind="outage", endpoint="insurer.*")
                until(lambda: _mode(d) == "read_only", timeout=20, what="read_only past the cache TTL")
                _clear(d, fault)
                until(lambda: _mode(d) == "prod", timeout=20, what="prod once the insurer answers")
            # answers slower than the client's timeout count as none
            fault = _fault(d, kind="latency", endpoint="insurer.*", delay_s=2)
            until(lambda: _mode(d) == "read_only", timeout=20, what="read_only while the insurer is too slow")
            _clear(d, fault)
            until(lambda: _mode(d) == "prod", timeout=20, what="prod once the insurer is quick again")
        finally:
            load.done.set()
            load.join(60)

        changes = _changes(d)[start:]
        assert [(c["from"], c["to"]) for c in changes] == [("prod", "read_only"), ("read_only", "prod")] * 3, changes
        assert all("insurer" in c["reason"] for c in changes[::2]), changes

        stored = receipts(d)
        intents = {r["payload"]["key"]: r["operation_id"] for r in stored if r["kind"] == "deploy.intent"}
        outcomes = {r["operation_id"] for r in stored if r["kind"] == "deploy.completed"}
        statuses = {status for _, status, _ in load.answers}
        assert statuses <= {200, 503} and 200 in statuses and 503 in statuses, statuses
        for key, status, body in load.answers:
            if status == 200:
                assert body["status"] == "completed" and intents.get(key) in outcomes, (key, body)
            else:
                assert body["error"]["code"] == "mode_refused" and key not in intents, (key, body)
