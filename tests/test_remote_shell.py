"""The remote shell as an operator meets it: ``tai-autonomics remote-shell`` against the
dev-profile daemon (multiprocess thespian, SQLite, the sandbox), over a real WebSocket.

Every command becomes a signed ``shell.command`` receipt on the policy's chain that the ledger
verifies; with ``manual_resume`` the daemon stays ``read_only`` after the insurer is back until
an operator says ``mode resume``; ``restart`` gives an actor a new process; ``log_level``
reaches the actor processes (their lines stop, then come back)."""

from __future__ import annotations

import json
import os
import subprocess

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tai_autonomics.gateway.shell_commands import names_below
from tai_autonomics.ledger.keys import DEV_KEY_FILE
from tests.e2e import DEPLOY, POLICY_ID, as_, dev_daemon, receipts, until
from tests.daemon import CLI, REPO

MANUAL = """
[workers.InsuranceClient.args]
cache_ttl_s = 1
attempts = 1
timeout_s = 2
breaker_reset_s = 1

[workers.ProdMode.args]
check_interval_s = 0.3
manual_resume = true
"""


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    with dev_daemon(tmp_path_factory.mktemp("shell"), workers=MANUAL) as d:
        yield d


def shell(daemon, *lines: str, token: str | None = None, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAI_TOKEN_")}
    env["TAI_TOKEN_ADMIN"] = token or daemon.tokens["admin"]
    args = [a for line in lines for a in ("-c", line)]
    return subprocess.run([*CLI, "remote-shell", "--url", f"http://127.0.0.1:{daemon.port}", "--json", *args],
                          cwd=REPO, env=env, input=stdin, capture_output=True, text=True, timeout=120)


def results(done: subprocess.CompletedProcess) -> list[dict]:
    return [json.loads(line) for line in done.stdout.splitlines()]


def mode(daemon) -> str:
    return daemon.http.get("/v1/mode", headers=as_(daemon, "service")).json()["mode"]


def test_each_command_is_a_signed_shell_command_receipt_that_the_ledger_verifies(daemon) -> None:
    done = shell(daemon, "tree", "state ProdMode", "receipts 3", "insurance")
    assert done.returncode == 0, done.stderr
    answers = results(done)
    assert [a["command"] for a in answers] == ["tree", "state", "receipts", "insurance"]
    assert answers[1]["value"]["mode"] == "prod" and answers[3]["value"]["certificate"]["policy_id"] == POLICY_ID
    # recorded before it runs, the receipts command lists its own receipt last
    assert [r["id"] for r in answers[2]["value"][-2:]] == [answers[1]["receipt"], answers[2]["receipt"]]
    recorded = {r["id"]: r for r in receipts(daemon) if r["kind"] == "shell.command"}
    sessions = set()
    for answer, line in zip(answers, ("tree", "state ProdMode", "receipts 3", "insurance"), strict=True):
        receipt = recorded[answer["receipt"]]
        assert (receipt["authority"], receipt["chain"], receipt["mode"]) == ("contractual", POLICY_ID, "prod")
        assert receipt["signature"] and receipt["key_id"]
        assert {k: receipt["payload"][k] for k in ("subject", "role", "command", "line")} == \
            {"subject": "token:admin", "role": "admin", "command": answer["command"], "line": line}
        sessions.add(receipt["payload"]["session"])
        proof = daemon.http.get(f"/v1/receipts/{receipt['id']}/proof", headers=as_(daemon, "auditor"))
        assert proof.status_code == 200
    assert len(sessions) == 1
    verified = results(shell(daemon, "verify"))[0]
    assert verified["value"]["ok"] is True and verified["value"]["contractual"] >= 5


def test_no_secret_reaches_the_shell(daemon) -> None:
    """docs/specification.md §8: keys and tokens never appear in the shell, whatever an operator looks at."""
    actors = names_below(results(shell(daemon, "tree"))[0]["value"])
    done = shell(daemon, "insurance", "metrics", "receipts 50", *(f"state {name}" for name in actors))
    assert done.returncode == 0, done.stderr
    key = (daemon.data_dir / DEV_KEY_FILE).read_text()
    secrets = [*daemon.tokens.values(), *(line for line in key.splitlines() if line and not line.startswith("-----"))]
    assert not [s for s in secrets if s in done.stdout or s in done.stderr]


def test_lines_from_standard_input_and_refusals_set_the_exit_code(daemon) -> None:
    before = len(receipts(daemon))
    done = shell(daemon, stdin="mode\nno_such_command\n\nhelp mode\n")
    assert done.returncode == 1
    answers = results(done)
    assert [a["ok"] for a in answers] == [True, False, True]
    assert answers[1]["error"]["code"] == "invalid_command" and answers[1]["receipt"] is None
    assert len(receipts(daemon)) == before + 2  # the refused line was not recorded
    refused = shell(daemon, "tree", token=daemon.tokens["service"])
    assert refused.returncode == 2 and refused.stdout == ""
    assert "refused the shell (HTTP 403)" in refused.stderr and daemon.tokens["service"] not in refused.stderr


def test_manual_resume_leaves_read_only_only_when_an_operator_says_so(daemon) -> None:
    assert results(shell(daemon, "mode resume"))[0]["error"]["code"] == "mode_not_read_only"
    fault = httpx.post(f"{daemon.sandbox}/admin/faults", json={"kind": "outage", "endpoint": "insurer.*"}).json()
    until(lambda: mode(daemon) == "read_only", timeout=30, what="read_only once the cache is stale")
    assert httpx.delete(f"{daemon.sandbox}/admin/faults/{fault['id']}").status_code == 204
    seen = len(_policy_checks(daemon))
    # two answered checks after the insurer is back: the first has been taken by ProdMode, and it stayed
    until(lambda: len(_policy_checks(daemon)) >= seen + 2, timeout=30, what="the insurer answering ProdMode again")
    assert mode(daemon) == "read_only"
    assert daemon.http.post("/v1/deployments", json={**DEPLOY, "customer_ref": "before-resume"},
                            headers=as_(daemon, "service")).status_code == 503

    resumed = results(shell(daemon, "mode resume"))[0]
    assert resumed["ok"] and resumed["value"]["mode"] == "prod", resumed
    assert mode(daemon) == "prod"
    changes = [r for r in receipts(daemon) if r["kind"] == "mode.changed"]
    assert (changes[-1]["payload"]["from"], changes[-1]["payload"]["to"]) == ("read_only", "prod")
    # docs/specification.md §4: the insurer's verdicts, one receipt per change (the checks in between record none)
    verdicts = [(r["kind"], r["payload"].get("code")) for r in receipts(daemon) if r["kind"].startswith("insurance.")]
    assert verdicts[0] == ("insurance.verified", None)
    assert verdicts[-2:] == [("insurance.verification_failed", "insurance_cache_stale"), ("insurance.verified", None)]
    assert len(verdicts) < len(_policy_checks(daemon))
    assert daemon.http.post("/v1/deployments", json={**DEPLOY, "customer_ref": "after-resume"},
                            headers=as_(daemon, "service")).status_code == 200


def _policy_checks(daemon) -> list[dict]:
    asked = httpx.get(f"{daemon.sandbox}/admin/requests", params={"endpoint": "insurer.policy_status"}).json()
    return [r for r in asked["requests"] if r["status"] == 200]


def test_restart_gives_the_actor_a_new_process(daemon) -> None:
    before = _child(daemon, "Publisher")
    done = results(shell(daemon, "restart Publisher"))[0]
    assert done["ok"] and done["value"] == {"restarting": "Publisher", "supervisor": "operations"}
    until(lambda: _child(daemon, "Publisher")["incarnation"] != before["incarnation"]
          and _child(daemon, "Publisher")["state"] == "running", timeout=20, what="Publisher restarted")
    after = _child(daemon, "Publisher")
    assert after["pid"] != before["pid"]
    assert after["restarts"] == before["restarts"]  # as OTP's restart_child: an operator's restart is not a crash


def test_log_level_reaches_the_actor_processes(daemon) -> None:
    """The supervisor ``operations`` (an actor process) logs each child start at INFO: at WARNING
    the line of the first restart is not written, back at INFO the second one is (lines of one
    process keep their order, so once the second is out the first would have been); and the
    restarted actor runs at the level set, not the configured one."""
    first = _restarted(daemon, "Pricing", "log_level WARNING")
    info = results(shell(daemon, "call Pricing $info"))[0]["value"]
    assert (info["incarnation"], info["log_level"]) == (first, "WARNING")  # restarted at the live level
    second = _restarted(daemon, "Pricing", "log_level INFO")
    until(lambda: second in _starts(daemon, "Pricing"), timeout=20, what="the second restart's log line")
    assert first not in _starts(daemon, "Pricing")


def _restarted(daemon, name: str, first_line: str) -> str:
    """Run ``first_line`` then ``restart NAME`` in one session; the new incarnation, once running."""
    old = _child(daemon, name)["incarnation"]
    assert all(a["ok"] for a in results(shell(daemon, first_line, f"restart {name}")))
    until(lambda: _child(daemon, name)["incarnation"] != old and _child(daemon, name)["state"] == "running",
          timeout=20, what=f"{name} restarted")
    return _child(daemon, name)["incarnation"]


def _starts(daemon, name: str) -> list[str]:
    return [e["incarnation"] for e in daemon.lines() if e.get("event") == "child_started" and e.get("child") == name]


def _child(daemon, name: str) -> dict:
    tree = daemon.http.get("/v1/supervision", headers=as_(daemon, "admin")).json()
    pending = [tree]
    while pending:
        node = pending.pop()
        for child in node.get("children") or ():
            if child["name"] == name:
                return child
            pending.append(child)
    raise AssertionError(f"{name} is not in the tree")


def test_top_shows_the_real_actors_and_a_killed_one_with_its_restart_and_reason(daemon) -> None:
    """Issue 15 item 7: the observer on the dev-profile daemon. A SIGKILLed actor is shown
    restarted once more, with ``killed`` as its last crash, in top and /v1/supervision alike."""
    looks = results(shell(daemon, "top --once", "top --count 2 --interval 0.2 --sort cpu"))
    assert [(look["ok"], look.get("update", False)) for look in looks] == [(True, False), (True, True), (True, False)]
    rows = {row["actor"]: row for row in looks[0]["value"]}
    assert {"ReceiptLedger", "ProdMode", "Pricing", "operations"} <= set(rows)
    for row in rows.values():
        assert row["stats_error"] is None and row["rss_bytes"] > 1_000_000 and row["messages"] > 0, row
    assert rows["ReceiptLedger"]["messages"] > rows["Pricing"]["messages"]  # every receipt goes through it
    assert all(row["cpu_percent"] is not None for row in looks[2]["value"])  # the second look of that top

    before = _child(daemon, "Pricing")
    os.kill(before["pid"], 9)
    until(lambda: _child(daemon, "Pricing")["incarnation"] != before["incarnation"]
          and _child(daemon, "Pricing")["state"] == "running", timeout=20, what="Pricing restarted")
    pricing = next(row for row in results(shell(daemon, "top --once --sort restarts"))[0]["value"]
                   if row["actor"] == "Pricing")
    assert pricing["restarts"] == before["restarts"] + 1 and pricing["last_crash"]["reason"] == "killed"
    assert pricing["pid"] != before["pid"] and pricing["stats_error"] is None
    assert _child(daemon, "Pricing")["last_crash"]["reason"] == "killed"

    scrape = daemon.http.get("/metrics", headers=as_(daemon, "auditor")).text
    samples = {(s.name, s.labels.get("actor")): s.value
               for family in text_string_to_metric_families(scrape) for s in family.samples}
    assert samples[("tai_actor_restarts_total", "Pricing")] == before["restarts"] + 1
    assert samples[("tai_actor_rss_bytes", "ReceiptLedger")] > 1_000_000
    assert samples[("tai_actor_messages_total", "ReceiptLedger")] > 0
