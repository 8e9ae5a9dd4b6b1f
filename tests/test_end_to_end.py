"""The product as its users meet it: the dev-profile daemon, over HTTP, verified offline.

Starts ``tai-autonomics foreground`` (multiprocess thespian, SQLite, the sandbox as the outside
parties), deploys, publishes and prices through the gateway, reads receipts and proofs and
checks them with only the public key, exports and verifies the ledger with the CLI, then
SIGKILLs the Acquisition actor's process while deploys are in flight.
"""

from __future__ import annotations

import base64
import os
import signal
from concurrent.futures import ThreadPoolExecutor

import pytest

from tai_autonomics.ledger import LedgerPublicKey, open_checkpoint, verify_inclusion
from tai_autonomics.ledger.canonical import canonical_json
from tai_autonomics.ledger.merkle import leaf_hash
from tests.e2e import DEPLOY, as_, dev_daemon
from tests.helpers import wait_until
from tests.test_cli_daemon import run_cli


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    with dev_daemon(tmp_path_factory.mktemp("e2e")) as d:
        yield d


def test_insured_deploy_publish_and_quote_with_verifiable_receipts(daemon) -> None:
    http = daemon.http
    assert http.get("/prod-health").json() == {"status": "insured", "mode": "prod"}
    deployed = http.post("/v1/deployments", json=DEPLOY, headers={**as_(daemon, "service"), "Idempotency-Key": "e2e-1"})
    assert deployed.status_code == 200, deployed.text
    result = deployed.json()
    assert result["status"] == "completed"
    assert [r["kind"] for r in result["receipts"]] == ["deploy.intent", "deploy.completed"]
    again = http.post("/v1/deployments", json=DEPLOY, headers={**as_(daemon, "service"), "Idempotency-Key": "e2e-1"})
    assert again.json()["operation_id"] == result["operation_id"]  # idempotent
    published = http.post("/v1/publications", headers=as_(daemon, "service"), json={
        "work_id": "work-e2e", "sku_id": "sku-001",
        "artifacts": {"code": "print(1)", "tests": "assert 1", "docs": "# doc", "metadata": "{}"}})
    assert published.status_code == 200 and published.json()["status"] == "completed", published.text
    quoted = http.post("/v1/pricing/quotes", headers=as_(daemon, "service"),
                       json={"customer_id": "cust-7", "metrics": {"users": 120, "latency_ms": 35}})
    assert quoted.status_code == 200 and quoted.json()["receipt"]["kind"] == "pricing.quoted"

    # Export while the daemon runs, and verify offline.
    out = daemon.data_dir.parent / "export"
    exported = run_cli("ledger", "export", "--out", str(out), "--data-dir", str(daemon.data_dir))
    assert exported.returncode == 0, exported.stderr
    verified = run_cli("verify", str(out))
    assert verified.returncode == 0, verified.stdout + verified.stderr

    # An auditor checks the intent receipt over HTTP with nothing but the public key.
    intent = result["receipts"][0]
    stored = http.get(f"/v1/receipts/{intent['id']}", headers=as_(daemon, "auditor")).json()
    assert stored == intent and stored["chain"] == "dev-policy-0001" and stored["signature"]
    checkpoint = http.get("/v1/ledger/checkpoint", headers=as_(daemon, "auditor")).json()
    proof = http.get(f"/v1/receipts/{intent['id']}/proof", params={"tree_size": checkpoint["size"]},
                     headers=as_(daemon, "auditor")).json()
    public = LedgerPublicKey.from_pem((out / "public_key.pem").read_bytes())
    signed = open_checkpoint(checkpoint["note"], public)
    verify_inclusion(proof["leaf_index"], signed.size, leaf_hash(canonical_json(stored)),
                     [base64.b64decode(h) for h in proof["hashes"]], signed.root)


def test_sigkill_of_acquisition_mid_stream(daemon) -> None:
    http = daemon.http
    info = http.post("/v1/actors/Acquisition/call", json={"type": "$info"}, headers=as_(daemon, "admin")).json()

    def deploy(i: int) -> int:
        return http.post("/v1/deployments", json={**DEPLOY, "customer_ref": f"burst-{i}"},
                         headers={**as_(daemon, "service"), "Idempotency-Key": f"burst-{i}"}).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        in_flight = [pool.submit(deploy, i) for i in range(16)]
        wait_until(lambda: any(f.done() for f in in_flight), what="the burst under way")
        os.kill(info["pid"], signal.SIGKILL)
        statuses = [f.result(timeout=60) for f in in_flight]  # every request answers: no hang
    assert set(statuses) <= {200, 503}, statuses

    def back() -> bool:
        now = http.post("/v1/actors/Acquisition/call", json={"type": "$info"}, headers=as_(daemon, "admin"))
        return now.status_code == 200 and now.json()["incarnation"] != info["incarnation"]

    wait_until(back, timeout=30, what="Acquisition restarted")
    after = http.post("/v1/deployments", json={**DEPLOY, "customer_ref": "after"}, headers=as_(daemon, "service"))
    assert after.status_code == 200 and after.json()["status"] == "completed", after.text
    supervision = http.get("/v1/supervision", headers=as_(daemon, "admin")).json()
    operations = next(c for c in supervision["children"] if c["name"] == "operations")
    assert next(c for c in operations["children"] if c["name"] == "Acquisition")["restarts"] >= 1
