"""A month of contract events through the dev daemon, with docs/specification.md §12's numbers,
online (GET /v1/revenue, the CLI against the gateway) and offline (the CLI on a verified export).
Bad events and months get our JSON error and record nothing."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tai_autonomics.client import ClientError
from tests.e2e import POLICY_ID, client, dev_daemon, receipts
from tests.daemon import CLI, REPO, run_cli

EVENTS = [
    ("acme", {"event": "eval_start", "date": "2025-12-01"}),
    ("acme", {"event": "msa_signed", "date": "2026-01-05", "monthly_fee": 5000}),
    ("acme", {"event": "insurance_requested", "date": "2026-01-06"}),
    ("acme", {"event": "insurance_received", "date": "2026-01-20"}),
    ("acme", {"event": "insurance_verified", "date": "2026-01-21"}),
    ("acme", {"event": "production_go_live", "date": "2026-01-22"}),
    ("acme", {"event": "insurance_lapsed", "date": "2026-02-14"}),
    ("acme", {"event": "usage_reported", "date": "2026-02-28", "month": "2026-02", "amount": "4000"}),
    ("acme", {"event": "sla_reported", "date": "2026-03-01", "month": "2026-02", "availability_pct": "98.5"}),
    ("globex", {"event": "msa_signed", "date": "2026-01-10", "monthly_fee": "1000.00"}),
    ("initech", {"event": "msa_signed", "date": "2026-01-01", "monthly_fee": 5000}),
    ("initech", {"event": "insurance_verified", "date": "2026-01-01"}),
    ("initech", {"event": "usage_reported", "date": "2026-02-27", "month": "2026-02", "amount": "9000"}),
    ("initech", {"event": "sla_reported", "date": "2026-03-01", "month": "2026-02", "availability_pct": 99.2}),
]


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    with dev_daemon(tmp_path_factory.mktemp("revenue")) as d:
        yield d


def test_a_month_of_contract_events_gives_the_specifications_figures_online_and_offline(daemon) -> None:
    with client(daemon, "service") as service:
        for contract, event in EVENTS:
            receipt = service.create_contract_event(contract, event)
            assert receipt["kind"] == f"contract.{event['event']}" and receipt["chain"] == POLICY_ID
    with client(daemon, "auditor") as auditor:
        february = auditor.get_revenue("2026-02")
    rows = {row["contract_id"]: row for row in february["contracts"]}
    acme, globex, initech = rows["acme"], rows["globex"], rows["initech"]
    # lapsed on the 14th: 15 of 28 days refunded, 13 recognised; usage 4,000 within 125 % of 2,321.43 = 2,901.79
    assert (acme["refund"], acme["base"], acme["days_lapsed"]) == ("2678.57", "2321.43", 15)
    assert (acme["variable_cap"], acme["variable"], acme["sla_credit_pct"]) == ("2901.79", "2901.79", 15)
    assert acme["cure_notices"] == ["2026-02-14"] and acme["paused"]
    assert globex["escalated_on"] == "2026-02-09" and globex["recognised"] == "0.00"  # the 30-day escalation
    assert (initech["variable"], initech["sla_credit"], initech["recognised"]) == ("6250.00", "250.00", "11000.00")
    assert february["contract_receipts"] == len(EVENTS)

    env = {**os.environ, "TAI_TOKEN_AUDITOR": daemon.tokens["auditor"]}
    online = subprocess.run([*CLI, "revenue", "--month", "2026-02", "--url", daemon.url], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=60)
    assert online.returncode == 0, online.stderr
    out = daemon.data_dir.parent / "export"
    assert run_cli("ledger", "export", "--out", str(out), "--data-dir", str(daemon.data_dir)).returncode == 0
    offline = run_cli("revenue", "--month", "2026-02", "--export", str(out))
    assert offline.returncode == 0, offline.stderr
    assert json.loads(online.stdout) == json.loads(offline.stdout) == february
    january = run_cli("revenue", "--month", "2026-01", "--export", str(out))
    assert json.loads(january.stdout)["totals"]["base"] == "6774.19"  # acme 11/31 of 5,000 + initech 5,000


@pytest.mark.parametrize(("contract", "body", "status", "field"), [
    ("acme", {"event": "msa_signed", "date": "2026-02-30", "monthly_fee": 1}, 422, "date"),
    ("acme", {"event": "msa_signed", "date": "2026-02-01"}, 422, "monthly_fee"),
    ("acme", {"event": "msa_signed", "date": "2026-02-01", "monthly_fee": "1.001"}, 400, "monthly_fee"),
    ("acme", {"event": "msa_signed", "date": "2026-02-01", "monthly_fee": -5}, 400, "monthly_fee"),
    ("acme", {"event": "refund_everything", "date": "2026-02-01"}, 400, "event"),
    ("acme", {"event": "eval_start", "date": "2026-02-01", "note": "x"}, 400, "body"),
    ("a b", {"event": "eval_start", "date": "2026-02-01"}, 400, "id"),
])
def test_bad_contract_events_get_our_json_error_and_record_nothing(daemon, contract, body, status, field) -> None:
    before = len(receipts(daemon))
    with client(daemon, "service") as service, pytest.raises(ClientError) as refused:
        service.create_contract_event(contract, body)
    assert (refused.value.status, refused.value.code) == (status, "invalid_request"), refused.value.message
    assert refused.value.detail["field"] == field and refused.value.request_id
    assert len(receipts(daemon)) == before


@pytest.mark.parametrize(("month", "status"), [("2026-13", 400), ("2026-2", 400), ("0000-01", 422), ("", 400)])
def test_a_bad_month_gets_our_json_error_online_and_offline(daemon, month, status) -> None:
    with client(daemon, "auditor") as auditor, pytest.raises(ClientError) as refused:
        auditor.get_revenue(month)
    assert (refused.value.status, refused.value.code) == (status, "invalid_request")
    done = run_cli("revenue", "--month", month, "--export", str(daemon.data_dir))
    assert done.returncode == 2 and "[invalid_request]" in done.stderr and done.stdout == ""
