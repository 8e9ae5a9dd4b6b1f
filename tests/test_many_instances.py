"""Many instances, one truth (docs/specification.md §10): two and three real daemons on one Firestore emulator.

Each daemon is ``tai-autonomics foreground`` (multiprocTCPBase) with a data directory of its own
(one daemon per data dir is enforced) and a release file that puts the ledger in Firestore,
with one ledger key, one development CA and one sandbox shared by all: the setting of Cloud Run
instances of one revision. Coverage, idempotency, the ledger and the insurance certificate (one
renewal, adopted by every instance) must hold across them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from google.cloud import firestore

from tai_autonomics.actors.cert_manager import RENEW_CALL_TIMEOUT_S
from tai_autonomics.sandbox import SandboxConfig, SandboxProcess
from tai_autonomics.trust import write_dev_ca
from tai_autonomics.trust.firestore_cert_store import FirestoreCertStore
from tai_autonomics.trust.issuing import CA_CERT_FILE, DEV_CERT_FILE, DEV_KEY_FILE, DEV_LEDGER_KEY_FILE
from tests.e2e import DEPLOY, POLICY_ID, as_, dev_daemon, kill9, receipts, until
from tests.helpers import EMULATOR_PROJECT
from tests.test_cli_daemon import REPO, Daemon

PROJECT_ENV = "TAI_TEST_FIRESTORE_PROJECT"
WORK = {"sku_id": "sku-001", "artifacts": {"code": "print(1)", "tests": "assert 1", "docs": "# w", "metadata": "{}"}}


class Cluster:
    """Daemons sharing one Firestore ledger, one key, one CA and one sandbox."""

    def __init__(self, tmp: Path, sandbox: str, shared: Path, ledger: str) -> None:
        self.tmp, self.sandbox, self.shared, self.ledger = tmp, sandbox, shared, ledger
        self.release_tables = (
            f'[ledger]\nstore = "firestore"\nfirestore_ledger = "{ledger}"\nfirestore_project_env = "{PROJECT_ENV}"\n'
            f'key_file = "{shared / DEV_LEDGER_KEY_FILE}"\n'
            f'[insurer]\nurl = "{sandbox}"\n'
            f'public_key_file = "{SandboxConfig(shared / "sandbox").insurer_public_key_file}"\n'
            f'[trust]\nanchor = "{shared / "ca" / CA_CERT_FILE}"\ncert_file = "{shared / "ca" / DEV_CERT_FILE}"\n'
            f'key_file = "{shared / "ca" / DEV_KEY_FILE}"\n'
            f'[customer]\nurl = "{sandbox}/customer/v1"\n[marketplace]\nurl = "{sandbox}/marketplace/v1"\n'
            '[gateway]\nallow_CertManager = "status renew_now"\n')  # an operator may force a renewal

    @contextmanager
    def instance(self, name: str) -> Iterator[Daemon]:
        """A daemon of the cluster; its data dir (and so its restart) is ``tmp/name``."""
        (self.tmp / name).mkdir(exist_ok=True)
        with dev_daemon(self.tmp / name, release_tables=self.release_tables) as daemon:
            yield daemon

    def release_file(self) -> Path:
        """A release file reading the cluster's ledger, for ``ledger export|verify --config``."""
        rel = self.tmp / "cluster.toml"
        rel.write_text(f'profile = "staging"\ndata_dir = "{self.tmp / "cli"}"\n' + self.release_tables)
        return rel

    def customer_calls(self, after: int = 0) -> list[dict]:
        return httpx.get(f"{self.sandbox}/admin/requests", params={"endpoint": "customer.deploy",
                                                                     "after": after}).json()["requests"]

    def last_seq(self) -> int:
        entries = httpx.get(f"{self.sandbox}/admin/requests").json()["requests"]
        return entries[-1]["seq"] if entries else 0

    def fault(self, fault: dict) -> str:
        answer = httpx.post(f"{self.sandbox}/admin/faults", json=fault)
        assert answer.status_code in (200, 201), answer.text
        return answer.json()["id"]

    def clear_fault(self, fault_id: str) -> None:
        assert httpx.delete(f"{self.sandbox}/admin/faults/{fault_id}").status_code == 204


@pytest.fixture
def cluster(tmp_path: Path, firestore_emulator: str, monkeypatch) -> Iterator[Cluster]:
    monkeypatch.setenv(PROJECT_ENV, EMULATOR_PROJECT)
    shared = tmp_path / "shared"
    write_dev_ca(shared / "ca")
    (shared / DEV_LEDGER_KEY_FILE).write_bytes((shared / "ca" / DEV_LEDGER_KEY_FILE).read_bytes())
    sandbox = SandboxProcess(shared, ca_dir=shared / "ca", on_line=lambda _line: None)
    url = sandbox.start()
    try:
        yield Cluster(tmp_path, url, shared, f"instances-{uuid.uuid4().hex[:12]}")
    finally:
        sandbox.stop()


def deploy(daemon: Daemon, key: str | None = None, **spec) -> httpx.Response:
    headers = {**as_(daemon, "service"), **({"Idempotency-Key": key} if key else {})}
    return daemon.http.post("/v1/deployments", json={**DEPLOY, **spec}, headers=headers)


def publish(daemon: Daemon, work_id: str) -> httpx.Response:
    return daemon.http.post("/v1/publications", json={**WORK, "work_id": work_id}, headers=as_(daemon, "service"))


def at_once(*calls) -> list[httpx.Response]:
    """Send the calls at the same moment, from threads, and return their answers in order."""
    with ThreadPoolExecutor(len(calls)) as pool:
        return [future.result() for future in [pool.submit(call) for call in calls]]


def usage(daemon: Daemon) -> dict[str, tuple[int, str]]:
    answer = daemon.http.post("/v1/actors/ReceiptLedger/call", json={"type": "usage", "payload": {"chain": POLICY_ID}},
                              headers=as_(daemon, "admin"))
    assert answer.status_code == 200, answer.text
    return {u["sku"]: (u["count"], u["cost"]) for u in answer.json()}


def test_two_instances_never_together_pass_a_skus_limits(cluster: Cluster) -> None:
    with cluster.instance("a") as a, cluster.instance("b") as b:
        # cost: sku-002 insures 30,000 USD a month; 12,000 each fits twice
        answers = at_once(*[lambda d=d: deploy(d, sku_id="sku-002", cost=12_000) for d in (a, b, a, b, a, b)])
        assert sorted(r.status_code for r in answers) == [200, 200, 409, 409, 409, 409], [r.text for r in answers]
        refused = [r.json()["error"] for r in answers if r.status_code == 409]
        assert {e["code"] for e in refused} == {"coverage_limit_exceeded"}
        assert all(e["detail"]["limit_cost"] == "30000" for e in refused)
        # count: 3 operations a month; one is left
        answers = at_once(*[lambda d=d: deploy(d, sku_id="sku-002", cost=1) for d in (a, b, a, b)])
        assert sorted(r.status_code for r in answers) == [200, 409, 409, 409], [r.text for r in answers]
        assert usage(a) == usage(b) and usage(a)["sku-002"] == (3, "24001")


def test_one_key_sent_to_two_instances_at_once_is_one_operation_and_one_customer_call(cluster: Cluster) -> None:
    with cluster.instance("a") as a, cluster.instance("b") as b:
        slow = cluster.fault({"kind": "latency", "endpoint": "customer.deploy", "delay_s": 1.5})
        before = cluster.last_seq()
        first, second = at_once(lambda: deploy(a, "same-key"), lambda: deploy(b, "same-key"))
        cluster.clear_fault(slow)
        answers = [r.json() for r in (first, second)]
        assert {r.status_code for r in (first, second)} <= {200, 202}, [r.text for r in (first, second)]
        assert answers[0]["operation_id"] == answers[1]["operation_id"]
        later = [deploy(d, "same-key") for d in (a, b)]
        done = next(r.json() for r in (first, second) if r.status_code == 200)
        assert all(r.status_code == 200 and r.json() == done for r in later), [r.text for r in later]
        assert all(r.headers.get("Idempotent-Replayed") == "true" for r in later)
        assert len(cluster.customer_calls(before)) == 1
        # the same for a publish's work_id: the marketplace is asked once for the work
        before = cluster.last_seq()
        works = at_once(lambda: publish(a, "work-once"), lambda: publish(b, "work-once"))
        assert {r.status_code for r in works} <= {200, 202}, [r.text for r in works]
        assert works[0].json()["operation_id"] == works[1].json()["operation_id"]
        calls = httpx.get(f"{cluster.sandbox}/admin/requests", params={"endpoint": "marketplace.register_work",
                                                                         "after": before}).json()["requests"]
        assert len(calls) == 1


def test_a_killed_instance_neither_double_counts_nor_repeats_an_operation(cluster: Cluster) -> None:
    with cluster.instance("b") as b:
        with cluster.instance("a") as a:
            stall = cluster.fault({"kind": "latency", "endpoint": "customer.deploy", "delay_s": 3})
            before = cluster.last_seq()
            with ThreadPoolExecutor(1) as pool:
                in_flight = pool.submit(deploy, a, "killed-mid-deploy")
                until_arrived(cluster, before)
                kill9(a)
                with pytest.raises(httpx.TransportError):
                    in_flight.result()
            cluster.clear_fault(stall)
            assert deploy(b, "served-meanwhile").status_code == 200  # the other instance goes on
        with cluster.instance("a") as again:  # same data dir: the restarted instance
            answer = deploy(again, "killed-mid-deploy")
            assert answer.status_code in (200, 202), answer.text
            assert len(cluster.customer_calls(before)) in (2, 3)  # the killed call, b's, at most one re-send
            assert usage(again)["sku-001"][0] == 2 == usage(b)["sku-001"][0]  # reserved once, not again
            intents = [r for r in receipts(again) if r["kind"] == "deploy.intent"
                       and r["payload"]["key"] == "killed-mid-deploy"]
            assert len(intents) == 1


def until_arrived(cluster: Cluster, after: int) -> None:
    until(lambda: len(cluster.customer_calls(after)) >= 1, 30, "the customer call to arrive")


def test_the_firestore_ledger_is_exported_and_verified_and_a_hand_edit_is_named(cluster: Cluster,
                                                                                  tmp_path: Path) -> None:
    with cluster.instance("a") as a, cluster.instance("b") as b, cluster.instance("c") as c:
        answers = at_once(*[lambda d=d, n=n: deploy(d, f"k-{n}") for n, d in enumerate((a, b, c, a, b, c))])
        assert all(r.status_code == 200 for r in answers), [r.text for r in answers]
    rel = cluster.release_file()
    out = tmp_path / "export"
    env = {**os.environ}
    exported = subprocess.run([sys.executable, "-m", "tai_autonomics", "ledger", "export", "--config", str(rel),
                               "--out", str(out)], cwd=REPO, capture_output=True, text=True, timeout=120, env=env)
    assert exported.returncode == 0, exported.stderr
    offline = subprocess.run([sys.executable, "-m", "tai_autonomics", "verify", str(out)], cwd=REPO,
                             capture_output=True, text=True, timeout=120)
    assert offline.returncode == 0 and json.loads(offline.stdout)["ok"], offline.stdout + offline.stderr
    receipts = [json.loads(line) for line in (out / "receipts.jsonl").read_text().splitlines()]
    assert sum(r["kind"] == "deploy.intent" for r in receipts) == 6
    stored = subprocess.run([sys.executable, "-m", "tai_autonomics", "ledger", "verify", "--config", str(rel)],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert stored.returncode == 0, stored.stdout + stored.stderr
    client = firestore.Client(project=EMULATOR_PROJECT)
    counters = list(client.collection("ledgers").document(cluster.ledger).collection("usage").stream())
    assert len(counters) == 1
    counters[0].reference.update({"count": 1})
    client.close()
    edited = subprocess.run([sys.executable, "-m", "tai_autonomics", "ledger", "verify", "--config", str(rel)],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert edited.returncode == 1
    report = json.loads(edited.stdout)
    assert report["where"].startswith("usage sku-001 of dev-policy-0001")
    assert "stored count 1" in report["reason"] and "the receipts give count 6" in report["reason"]


def actor_call(daemon: Daemon, actor: str, msg_type: str, timeout: float = 30) -> dict:
    answer = daemon.http.post(f"/v1/actors/{actor}/call", json={"type": msg_type}, headers=as_(daemon, "admin"),
                              timeout=timeout)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_a_renewal_on_one_instance_is_adopted_by_the_other_within_60_s_with_receipts(cluster: Cluster) -> None:
    with cluster.instance("a") as a, cluster.instance("b") as b:
        first = actor_call(a, "CertManager", "status")["fingerprint"]
        assert actor_call(b, "CertManager", "status")["fingerprint"] == first  # a installed it; b loaded it
        days_before = actor_call(b, "ProdMode", "status")["certificate_seconds_left"] // 86400
        renewed = actor_call(a, "CertManager", "renew_now", timeout=RENEW_CALL_TIMEOUT_S)
        assert renewed["renewed"] and renewed["fingerprint"] != first, renewed
        started = time.monotonic()
        until(lambda: actor_call(b, "CertManager", "status")["fingerprint"] == renewed["fingerprint"], 60,
              "instance b to adopt a's renewal", interval=0.25)
        took = time.monotonic() - started
        # b's ProdMode was told, as after a local renewal: the sandbox renews for 90 days, the first was 365
        until(lambda: actor_call(b, "ProdMode", "status")["certificate_seconds_left"] // 86400 < days_before, 10,
              "b's ProdMode to take the adopted certificate")
        b_instance = actor_call(b, "CertManager", "$state")["instance"]

        def cert_receipts() -> list[dict]:
            return [r for r in receipts(b) if r["kind"] in ("cert.renewed", "cert.adopted")]

        until(lambda: len(cert_receipts()) == 2, 10, "the renewal's and the adoption's receipts")
        made, adopted = sorted(cert_receipts(), key=lambda r: r["kind"], reverse=True)
        assert made["kind"] == "cert.renewed" and made["payload"]["old_fingerprint"] == first
        assert adopted["kind"] == "cert.adopted" and adopted["payload"]["instance"] == b_instance
        assert made["payload"]["fingerprint"] == adopted["payload"]["fingerprint"] == renewed["fingerprint"]
        assert adopted["payload"]["serial"] == made["payload"]["serial"]
        print(f"adopted by the other instance {took:.1f} s after the renewal")  # measured: quoted in the report
        # a gave the lease back: b may renew in its turn, and a adopts that
        again = actor_call(b, "CertManager", "renew_now", timeout=RENEW_CALL_TIMEOUT_S)
        assert again["renewed"], again
        until(lambda: actor_call(a, "CertManager", "status")["fingerprint"] == again["fingerprint"], 60,
              "instance a to adopt b's renewal", interval=0.25)


def test_a_lease_held_elsewhere_and_a_document_edited_into_nonsense_leave_the_instance_its_certificate(
        cluster: Cluster) -> None:
    with cluster.instance("a") as a:
        held = actor_call(a, "CertManager", "status")["fingerprint"]
        other = FirestoreCertStore(cluster.ledger, instance="another-instance", project=EMULATOR_PROJECT)
        assert other.take_lease(60) is None  # another instance is renewing
        elsewhere = actor_call(a, "CertManager", "renew_now", timeout=RENEW_CALL_TIMEOUT_S)
        assert not elsewhere["renewed"] and elsewhere["fingerprint"] == held
        assert elsewhere["error"]["code"] == "cert_renewal_elsewhere"
        assert "another-instance" in elsewhere["error"]["message"]
        other.release_lease()
        other.close()
        client = firestore.Client(project=EMULATOR_PROJECT)
        client.collection("certificates").document(cluster.ledger).update({"bundle": "not a certificate"})
        client.close()
        until(lambda: actor_call(a, "CertManager", "$state")["sync_problem"] is not None, 60,
              "the next sync to find the edit", interval=0.25)
        problem = actor_call(a, "CertManager", "$state")["sync_problem"]
        assert f"Firestore document certificates/{cluster.ledger}" in problem, problem
        assert actor_call(a, "CertManager", "status")["fingerprint"] == held
        assert deploy(a).status_code == 200  # still insured: the held certificate guards the operation
        logged = [e for e in a.lines() if e.get("event") == "cert.adopt_refused"]
        assert len(logged) == 1 and logged[0]["code"] == "cert_malformed", logged
        starts = [e for e in a.lines() if e.get("event") == "child_started" and e.get("child") == "CertManager"]
        assert len(starts) == 1  # no crash, no restart: logged once per reason, retried at every sync


def ledger_status(daemon: Daemon) -> dict:
    answer = daemon.http.post("/v1/actors/ReceiptLedger/call", json={"type": "status"}, headers=as_(daemon, "admin"))
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_kill_9_of_the_sequencers_instance_mid_stream_forks_nothing_and_loses_no_acknowledged_receipt(
        cluster: Cluster, tmp_path: Path) -> None:
    with cluster.instance("a") as a, cluster.instance("b") as b, cluster.instance("c") as c:
        daemons = {"a": a, "b": b, "c": c}
        until(lambda: sum(ledger_status(d)["sequencer"]["holding"] for d in daemons.values()) == 1, 30,
              "one instance to hold the sequencer lease")
        holder = next(name for name, d in daemons.items() if ledger_status(d)["sequencer"]["holding"])
        survivors = [name for name in daemons if name != holder]
        answers: dict[str, list[httpx.Response | Exception]] = {name: [] for name in daemons}

        def send(name: str, n: int) -> None:
            try:
                answers[name].append(deploy(daemons[name], f"stream-{name}-{n}"))
            except httpx.TransportError as exc:
                answers[name].append(exc)

        with ThreadPoolExecutor(6) as pool:
            sent = [pool.submit(send, name, n) for n in range(4) for name in daemons]
            until(lambda: sum(len(v) for v in answers.values()) >= 6, 60, "the stream to get going")
            kill9(daemons[holder])
            sent += [pool.submit(send, name, n) for n in range(4, 10) for name in survivors]
            for future in sent:
                future.result()
        # the survivors went on: one took the lease over, and each caller got its receipt or ledger_busy
        statuses = [ledger_status(daemons[name])["sequencer"] for name in survivors]
        assert sum(s["holding"] for s in statuses) == 1 and sum(s["takeovers"] for s in statuses) == 1, statuses
        for name in survivors:
            for answer in answers[name]:
                assert isinstance(answer, httpx.Response), answer
                assert answer.status_code == 200 or answer.json()["error"]["code"] == "ledger_busy", answer.text
        acknowledged = {r["id"] for v in answers.values() for ans in v
                        if isinstance(ans, httpx.Response) and ans.status_code == 200 for r in ans.json()["receipts"]}
        served = sum(1 for name in survivors for ans in answers[name] if ans.status_code == 200)
        assert served >= 10
        print(f"after kill -9 of the holder: {served} of {sum(len(answers[n]) for n in survivors)} deploys on the "
              "survivors answered 200, the others ledger_busy")  # measured: quoted in the report
    out = tmp_path / "export"
    rel = cluster.release_file()
    exported = subprocess.run([sys.executable, "-m", "tai_autonomics", "ledger", "export", "--config", str(rel),
                               "--out", str(out)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert exported.returncode == 0, exported.stderr
    stored = subprocess.run([sys.executable, "-m", "tai_autonomics", "ledger", "verify", "--config", str(rel)],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert stored.returncode == 0 and json.loads(stored.stdout)["ok"], stored.stdout + stored.stderr
    kept = {json.loads(line)["id"] for line in (out / "receipts.jsonl").read_text().splitlines()}
    assert acknowledged <= kept, acknowledged - kept
