"""The observer (issue 15 item 7) on the gateway test tree: each actor's process numbers, restarts
and last crash in ``/v1/supervision``, ``/metrics`` and the remote shell's ``top``; an actor that
does not answer is shown as such and holds nothing up."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import pty
import signal
import threading
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prompt_toolkit.application import create_app_session
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput
from websockets.sync.client import connect

from tai_autonomics.cli import remote_shell
from tai_autonomics.gateway import ApiError, observer
from tai_autonomics.gateway.shell_client import shell_url
from tai_autonomics.runtime import CallTimeout, Node
from tests.gateway.support import auth, recorded
from tests.helpers import wait_until

TREE_NAMES = {"root", "ReceiptLedger", "echo", "ops", "worker", "ProdMode", "CertManager", "InsuranceClient",
              "Acquisition", "Publisher", "Pricing"}


def nodes(tree: dict) -> dict[str, dict]:
    found = {tree["name"]: tree}
    for child in tree.get("children") or ():
        found.update(nodes(child))
    return found


def supervision(http: httpx.Client, contract) -> dict[str, dict]:
    response = http.get("/v1/supervision", headers=auth("admin"))
    contract.check("/v1/supervision", "GET", response)
    return nodes(response.json())


def test_supervision_shows_each_actors_process_numbers_and_they_count_up(http, node: Node, contract) -> None:
    before = supervision(http, contract)
    assert set(before) == TREE_NAMES
    for name, actor in before.items():
        stats = actor["stats"]
        assert "stats_error" not in actor, actor
        assert stats["pid"] == node.call(name, "$info")["pid"]
        assert 1_000_000 < stats["rss_bytes"] < 2_000_000_000 and 0 <= stats["cpu_seconds"] < 600
        assert stats["messages"] > 0 and stats["pending_outbound"] >= 0 and stats["messages_per_s"] >= 0
    for n in range(10):
        assert http.post("/v1/actors/echo/call", json={"type": "echo", "payload": n}, headers=auth("admin")).json() == n
    # The rate counts whole seconds only (runtime/stats.py); the actor reads the same system-wide
    # monotonic clock, so once the echoes' second is over they are in it. Read sooner, the rate
    # depends on what else the session's node happened to do in the five seconds before.
    echoed = math.floor(time.monotonic())
    wait_until(lambda: math.floor(time.monotonic()) > echoed, what="the echoes' second over", interval=0.05)
    after = supervision(http, contract)["echo"]
    assert after["incarnation"] == before["echo"]["incarnation"]
    assert after["stats"]["messages"] >= before["echo"]["stats"]["messages"] + 11  # the echoes and one $stats
    assert after["stats"]["messages_per_s"] > 0


def test_a_crashed_actor_shows_its_restart_and_last_crash_reason(http, node: Node, contract) -> None:
    echo = supervision(http, contract)["echo"]
    http.post("/v1/actors/echo/call", json={"type": "crash", "payload": "observed"}, headers=auth("admin"))
    node.whereis("echo", wait=10, after=echo["incarnation"])  # registered; its supervisor may not know yet
    wait_until(lambda: supervision(http, contract)["echo"]["state"] == "running", what="echo running again")
    after = supervision(http, contract)["echo"]
    assert after["restarts"] == echo["restarts"] + 1
    assert after["last_crash"]["reason"] == "ValueError: boom: observed"
    assert after["last_crash"]["exception"] == "ValueError" and after["last_crash"]["message_type"] == "crash"
    assert abs(after["last_crash"]["time"] - time.time()) < 60
    assert after["stats"]["pid"] != echo["stats"]["pid"]  # a fresh process, counting from zero
    assert after["stats"]["messages"] < 10  # its start and this look, not the old process's count


def test_an_actor_that_does_not_answer_is_shown_as_such_without_holding_up_the_route(http, node, contract) -> None:
    sleeping = threading.Thread(target=lambda: node.client().call("worker", "sleep", 4.0, timeout=10))
    sleeping.start()

    def busy() -> bool:
        try:
            node.call("worker", "$stats", timeout=0.2)
        except CallTimeout:
            return True
        return False

    try:
        wait_until(busy, what="the worker busy sleeping")
        started = time.monotonic()
        tree = supervision(http, contract)
        assert time.monotonic() - started < observer.STATS_TIMEOUT_S + 1.5
        assert tree["worker"]["stats"] is None and tree["worker"]["stats_error"] == "call_timeout"
        assert tree["worker"]["state"] == "running" and tree["echo"]["stats"]["rss_bytes"] > 0
        scrape = http.get("/metrics", headers=auth("auditor")).text
        assert 'tai_actor_stats_ok{actor="worker"} 0.0' in scrape
        assert 'tai_actor_rss_bytes{actor="worker"}' not in scrape
    finally:
        sleeping.join()


def test_the_observer_bounds_an_answer_that_never_comes() -> None:
    class Bridge:
        async def call(self, actor: str, msg_type: str, payload=None, timeout_s=None):
            if msg_type == "which_children":
                return [{"name": "hung", "type": "worker", "state": "running"},
                        {"name": "gone", "type": "worker", "state": "stopped"},
                        {"name": "refusing", "type": "worker", "state": "running"}]
            if actor == "hung":
                await asyncio.sleep(3600)
            if actor == "refusing":
                raise ApiError(503, "actor_restarting", "restarting")
            return {"pid": 1, "rss_bytes": 1, "cpu_seconds": 0.0, "messages": 1, "messages_per_s": 0.0,
                    "pending_outbound": 0}

    started = time.monotonic()
    tree = nodes(asyncio.run(observer.observe(Bridge(), "root", timeout_s=0.05)))
    assert time.monotonic() - started < 2
    assert tree["root"]["stats"]["pid"] == 1
    assert (tree["hung"]["stats"], tree["hung"]["stats_error"]) == (None, "call_timeout")
    assert (tree["gone"]["stats"], tree["gone"]["stats_error"]) == (None, "not_running")
    assert (tree["refusing"]["stats"], tree["refusing"]["stats_error"]) == (None, "actor_restarting")


def test_metrics_carry_the_actor_series_and_parse(http) -> None:
    text = http.get("/metrics", headers=auth("auditor")).text
    families = {family.name: family for family in text_string_to_metric_families(text)}
    for name, kind in (("tai_actor_rss_bytes", "gauge"), ("tai_actor_cpu_seconds", "counter"),
                       ("tai_actor_messages", "counter"), ("tai_actor_pending_outbound", "gauge"),
                       ("tai_actor_stats_ok", "gauge"), ("tai_actor_restarts", "counter")):
        assert families[name].type == kind, name
    values = {(s.name, s.labels["actor"]): s.value for f in families.values() for s in f.samples
              if s.name.startswith("tai_actor_")}
    for actor in TREE_NAMES:
        assert values[("tai_actor_stats_ok", actor)] == 1
        assert values[("tai_actor_rss_bytes", actor)] > 1_000_000
        assert values[("tai_actor_cpu_seconds_total", actor)] >= 0
        assert values[("tai_actor_messages_total", actor)] > 0
        assert values[("tai_actor_pending_outbound", actor)] >= 0
    assert ("tai_actor_restarts_total", "worker") in values


def test_top_once_prints_one_table_of_every_actor_sorted_by_memory(gateway, node, admin) -> None:
    before = len(recorded(node))
    result = admin.run("top --once")
    assert result.ok and len(recorded(node)) == before + 1
    lines = result.text.splitlines()
    assert f"{len(TREE_NAMES)} actors" in lines[0] and lines[1].split()[:3] == ["ACTOR", "PID", "RSS"]
    assert {line.split()[0] for line in lines[2:]} == TREE_NAMES
    rows = result.value
    assert {row["actor"] for row in rows} == TREE_NAMES
    rss = [row["rss_bytes"] for row in rows]
    assert rss == sorted(rss, reverse=True) and rss[-1] > 1_000_000
    echo = next(row for row in rows if row["actor"] == "echo")
    assert echo["supervisor"] == "root" and f"{echo['rss_bytes'] / 2**20:.1f}" in next(
        line for line in lines if line.startswith("echo "))


def test_top_json_is_the_rows_and_sorts_as_asked(gateway, admin) -> None:
    result = admin.run("top --once --json --sort restarts")
    assert result.ok and json.loads(result.text) == result.value
    restarts = [row["restarts"] for row in result.value]
    assert restarts == sorted(restarts, reverse=True)
    by_messages = admin.run("top --json --once --sort msgs").value
    rates = [row["messages_per_s"] for row in by_messages]
    assert rates == sorted(rates, reverse=True)


def test_top_refreshes_count_times_under_one_receipt(gateway, node, admin) -> None:
    before = len(recorded(node))
    updates: list = []
    result = admin.run("top --count 3 --interval 0.2", on_update=updates.append)
    assert result.ok and result.command == "top" and len(updates) == 2
    assert all(update.value and update.text.splitlines()[1].startswith("ACTOR") for update in updates)
    assert len(recorded(node)) == before + 1  # one command, one receipt, however many looks
    assert updates[0].value[0]["cpu_percent"] is None or updates[0].value[0]["cpu_percent"] >= 0
    assert all(row["cpu_percent"] is not None for row in result.value)  # a second look: a share of CPU


def test_top_refreshes_until_the_client_stops_it_and_the_session_goes_on(gateway, admin) -> None:
    updates: list = []
    result = admin.run("top --interval 0.2", on_update=updates.append, stop_requested=lambda: len(updates) >= 2)
    assert result.ok and result.text == f"(top stopped after {len(updates)} refreshes)" and len(updates) >= 2
    assert {row["actor"] for row in result.value} == TREE_NAMES
    assert admin.run("help top").ok


@pytest.mark.parametrize("line", [
    "top --count 0", "top --count", "top --count x", "top --sort nosuch", "top --once --once",
    "top --once --count 2", "top --interval 0.1", "top --interval 61", "top --interval nan", "top extra",
    "top --json extra",
])
def test_bad_top_options_are_refused_and_neither_recorded_nor_run(gateway, node, admin, line) -> None:
    before = len(recorded(node))
    result = admin.run(line)
    assert not result.ok and result.error["code"] == "invalid_command", result
    assert len(recorded(node)) == before


def test_the_cli_prints_each_look_of_a_counted_top(gateway, admin, capsys) -> None:
    assert remote_shell._batch(admin, ["top --count 2 --interval 0.2"], as_json=True) == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [p.get("update", False) for p in printed] == [True, False]  # a look, then the result
    assert all({row["actor"] for row in p["value"]} == TREE_NAMES for p in printed)


def test_a_key_press_or_ctrl_c_stops_a_refresh() -> None:
    controller, terminal = pty.openpty()
    try:
        with remote_shell.KeyOrInterrupt(terminal) as stop:
            assert stop.terminal and not stop()
            os.write(controller, b"q")
            wait_until(stop, what="the key press seen")
            assert not stop()  # read: one key, one stop
        with remote_shell.KeyOrInterrupt(None) as stop:
            assert not stop()
            os.kill(os.getpid(), signal.SIGINT)  # caught, not raised as KeyboardInterrupt
            wait_until(stop, what="Ctrl-C seen")
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        os.close(controller)
        os.close(terminal)


def test_a_stop_that_crosses_the_last_look_is_ignored_and_the_session_goes_on(gateway) -> None:
    with connect(shell_url(gateway.url), additional_headers=auth("admin"), open_timeout=10) as ws:
        assert json.loads(ws.recv(timeout=10))["type"] == "welcome"
        ws.send(json.dumps({"type": "command", "id": 1, "line": "top --once"}))
        assert json.loads(ws.recv(timeout=10))["type"] == "result"
        ws.send(json.dumps({"type": "stop", "id": 1}))  # too late: top had answered
        ws.send(json.dumps({"type": "command", "id": 2, "line": "help quit"}))
        answer = json.loads(ws.recv(timeout=10))
    assert (answer["type"], answer["id"], answer["ok"]) == ("result", 2, True)


def test_a_client_gone_during_top_ends_the_session_quietly(gateway, caplog) -> None:
    caplog.set_level(logging.INFO, logger="tai_autonomics.gateway.shell")
    with connect(shell_url(gateway.url), additional_headers=auth("admin"), open_timeout=10) as ws:
        session = json.loads(ws.recv(timeout=10))["session"]
        ws.send(json.dumps({"type": "command", "id": 1, "line": "top --interval 0.2"}))
        assert json.loads(ws.recv(timeout=10))["type"] == "update"

    def events() -> list[tuple[str, str | None]]:
        return [(r.fields["event"], r.fields.get("outcome")) for r in caplog.records
                if getattr(r, "fields", {}).get("session") == session]

    wait_until(lambda: ("shell_closed", None) in events(), what="the session closed")
    assert ("shell_command", "disconnected") in events()
    assert not [event for event in events() if event[0] == "shell_command_failed"]


def test_the_interactive_shell_prints_each_look_of_top(gateway, admin, tmp_path, capsys) -> None:
    with create_pipe_input() as keys, create_app_session(input=keys, output=DummyOutput()):
        keys.send_text("top --count 2 --interval 0.2\r")
        keys.send_text("quit\r")
        assert remote_shell.interactive(admin, tmp_path / "history") == 0
    out = capsys.readouterr().out
    assert out.count("ACTOR ") == 2 and out.count(f"{len(TREE_NAMES)} actors, RSS") == 2
