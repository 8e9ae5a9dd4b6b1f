"""The remote shell's WebSocket on the gateway test tree: who may open it, the frames, recording
before running, and what each kind of bad input gets (an error frame, nothing recorded or run).

The real actors (ProdMode's receipts, restarts, read_only and resume) meet the shell in
tests/test_remote_shell.py, against the dev-profile daemon."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prompt_toolkit.application import create_app_session
from prompt_toolkit.completion import CompleteEvent
from prompt_toolkit.document import Document
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from tai_autonomics.cli import remote_shell
from tai_autonomics.gateway.server import GRACEFUL_SHUTDOWN_S
from tai_autonomics.gateway.shell import MAX_FRAME_BYTES
from tai_autonomics.gateway.shell_client import ShellClient, ShellClientError, shell_url
from tai_autonomics.gateway.shell_commands import COMMANDS
from tests.gateway.support import TOKENS, assert_error, auth, recorded, serving


def open_ws(gateway, role: str = "admin") -> ClientConnection:
    return connect(shell_url(gateway.url), additional_headers=auth(role), open_timeout=10)


def frame(ws: ClientConnection) -> dict:
    return json.loads(ws.recv(timeout=10))


def test_the_session_opens_with_the_command_table_and_the_live_actor_names(gateway) -> None:
    with open_ws(gateway) as ws:
        welcome = frame(ws)
    assert welcome["type"] == "welcome" and welcome["subject"] == "token:admin" and len(welcome["session"]) == 32
    assert [c["name"] for c in welcome["commands"]] == list(COMMANDS)
    assert {"root", "ReceiptLedger", "echo", "ops", "worker", "ProdMode"} <= set(welcome["actors"])


@pytest.mark.parametrize(("headers", "status", "code"), [
    ({}, 401, "unauthorized"),
    ({"Authorization": "Bearer not-a-token-of-ours-at-all"}, 401, "unauthorized"),
    (auth("service"), 403, "forbidden"),
    (auth("auditor"), 403, "forbidden"),
])
def test_only_an_admin_may_open_the_shell_and_a_refusal_is_our_error_body(gateway, headers, status, code) -> None:
    with pytest.raises(InvalidStatus) as refused:
        connect(shell_url(gateway.url), additional_headers=headers, open_timeout=10)
    response = refused.value.response
    assert response.status_code == status
    body = json.loads(response.body)
    assert body["error"]["code"] == code and "Traceback" not in response.body.decode()
    with pytest.raises(ShellClientError, match=f"HTTP {status}"):
        ShellClient(gateway.url, headers.get("Authorization", "Bearer x").removeprefix("Bearer "))


def test_a_plain_get_is_told_to_upgrade(gateway, http: httpx.Client, contract) -> None:
    response = http.get("/v1/shell", headers=auth("admin"))
    assert_error(response, 426, "upgrade_required")
    assert response.headers["upgrade"] == "websocket"
    contract.check("/v1/shell", "GET", response)
    assert_error(http.get("/v1/shell", headers=auth("service")), 403, "forbidden")


def test_each_command_is_recorded_before_it_runs_with_who_and_what(gateway, node, admin) -> None:
    before = len(recorded(node))
    result = admin.run("call echo echo {\"n\": [1, 2.5, \"x\"]}")
    assert result.ok and result.value == {"n": [1, 2.5, "x"]}, result
    records = recorded(node)[before:]
    assert len(records) == 1 and result.receipt == f"shell-{before + 1}"
    assert records[0]["kind"] == "shell.command"
    assert records[0]["payload"] == {"subject": "token:admin", "role": "admin", "session": admin.welcome["session"],
                                     "command": "call", "line": 'call echo echo {"n": [1, 2.5, "x"]}'}


def test_a_command_that_cannot_be_recorded_is_not_run(gateway, node, admin) -> None:
    seen = node.call("echo", "seen")
    result = admin.run('call echo echo "unrecordable"')
    assert not result.ok and result.error["code"] == "shell_not_recorded" and result.receipt is None
    assert result.error["detail"] == {"cause": "ledger_store_error"}
    assert node.call("echo", "seen") == seen
    assert admin.run("call echo echo 1").ok  # the session goes on


@pytest.mark.parametrize("line", [
    "", "   ", "nosuch", "tree extra", "state", "state two words", "state bad/name", "call echo",
    "call echo echo {not json}", "call echo echo NaN", "call echo echo [1,", "call echo bad-type",
    'call echo echo {"a": 1, "a": 2}',  # a key given twice: which one counts would be the parser's choice
    "mode pause", "log_level LOUD", "receipts 0", "receipts 1001", "receipts -3", "receipts x", "help nosuch",
    "x" * 5000, "state \x00",
])
def test_a_line_that_does_not_parse_is_refused_and_neither_recorded_nor_run(gateway, node, admin, line) -> None:
    before = len(recorded(node))
    result = admin.run(line)
    assert not result.ok and result.error["code"] == "invalid_command", result
    assert result.receipt is None and len(recorded(node)) == before


def test_messages_outside_the_allow_list_are_refused_as_on_http(gateway, admin) -> None:
    refused = admin.run("call echo seen")
    assert not refused.ok and refused.error["code"] == "message_not_allowed"
    assert refused.receipt is not None  # it was a command, recorded, then refused by the allow-list
    assert admin.run("cast ReceiptLedger append {}").error["code"] == "message_not_allowed"


@pytest.mark.parametrize(("sent", "code"), [
    (b"\x00binary", "invalid_frame"),
    ("not json", "invalid_frame"),
    (json.dumps([1, 2]), "invalid_frame"),
    (json.dumps({"type": "command", "id": 1}), "invalid_frame"),
    (json.dumps({"type": "command", "id": True, "line": "tree"}), "invalid_frame"),
    (json.dumps({"type": "command", "id": "1", "line": "tree"}), "invalid_frame"),
    (json.dumps({"type": "eval", "id": 1, "line": "tree"}), "invalid_frame"),
    (json.dumps({"type": "command", "id": 1, "line": "tree", "extra": 1}), "invalid_frame"),
    ('{"type": "command", "id": 1, "id": 2, "line": "tree"}', "invalid_frame"),  # which id to answer?
    (json.dumps({"type": "command", "id": 1, "line": 42}), "invalid_command"),  # a frame, but not a line
])
def test_a_malformed_frame_gets_an_error_frame_and_the_session_goes_on(gateway, node, sent, code) -> None:
    before = len(recorded(node))
    with open_ws(gateway) as ws:
        frame(ws)
        ws.send(sent)
        answer = frame(ws)
        assert (answer["ok"], answer["error"]["code"], answer["receipt"]) == (False, code, None), answer
        ws.send(json.dumps({"type": "command", "id": 7, "line": "help quit"}))
        assert frame(ws)["id"] == 7
    assert len(recorded(node)) == before + 1  # only the help


_JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                                  max_size=3),
                     max_leaves=8)
_FRAMES = st.one_of(
    st.binary(max_size=64),
    st.text(max_size=64),
    st.builds(json.dumps, _JSON),
    st.builds(lambda kind, ident, line, extra: json.dumps({"type": kind, "id": ident, "line": line, **extra}),
              st.sampled_from(["command", "eval", ""]), st.integers(-5, 5) | st.text(max_size=3) | st.none(),
              st.text(max_size=40) | st.sampled_from(["tree", "help", "receipts 2", "state echo", "call echo seen"]),
              st.dictionaries(st.sampled_from(["extra", "x"]), _JSON, max_size=1)),
)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(sent=st.lists(_FRAMES, min_size=1, max_size=5))
def test_any_frame_gets_one_answer_and_only_recorded_commands_leave_a_receipt(gateway, node, sent) -> None:
    """Issue 14: whatever frames arrive, each gets one answer frame (its result or a typed error),
    the session goes on, and the ledger grows by exactly the answers that name a receipt."""
    before = len(recorded(node))
    receipts = 0
    with open_ws(gateway) as ws:
        frame(ws)
        for data in sent:
            ws.send(data)
            answer = frame(ws)
            assert isinstance(answer["ok"], bool) and (answer["ok"] or answer["error"]["code"]), answer
            receipts += answer["receipt"] is not None
        ws.send(json.dumps({"type": "command", "id": 99, "line": "help quit"}))
        assert frame(ws)["id"] == 99
    assert len(recorded(node)) == before + receipts + 1


def test_an_oversized_frame_closes_the_session(gateway) -> None:
    with open_ws(gateway) as ws:
        frame(ws)
        ws.send("x" * (MAX_FRAME_BYTES + 1))
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
    assert closed.value.rcvd.code == 1009


def test_quit_answers_then_closes(gateway) -> None:
    with open_ws(gateway) as ws:
        frame(ws)
        ws.send(json.dumps({"type": "command", "id": 1, "line": "quit"}))
        assert frame(ws)["value"] == {"bye": True}
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
    assert closed.value.rcvd.code == 1000


def test_tree_state_receipts_and_log_level_reach_every_actor(gateway, admin) -> None:
    tree = admin.run("tree")
    assert tree.ok and tree.text.splitlines()[0] == "root (supervisor)"
    assert "  ops (supervisor) running" in tree.text and "    worker (worker) running" in tree.text
    assert admin.run("which_children ops").value[0]["name"] == "worker"
    assert [r["id"] for r in admin.run("receipts 2").value] == ["r-2", "r-3"]
    assert admin.run("state echo").ok
    assert admin.run("restart root").error["code"] == "cannot_restart_root"
    assert admin.run("restart nobody").error["code"] == "no_such_actor"
    for line in ("state Nope", "restart Nope"):  # no such actor: said so, not "retry later"
        error = admin.run(line).error
        assert error["code"] == "no_such_actor", error
        assert "no actor 'Nope' in the supervision tree" in error["message"] and "retry" not in error["message"]
    try:
        levels = admin.run("log_level warning")
        assert levels.ok and levels.value["gateway"] == "WARNING"
        assert set(levels.value["actors"].values()) == {"WARNING"} and "worker" in levels.value["actors"]
    finally:
        assert admin.run("log_level INFO").value["gateway"] == "INFO"
    assert "tai_supervision_walk_ok 1.0" in admin.run("metrics").value


def test_commands_and_sessions_are_counted_in_the_metrics(gateway, admin) -> None:
    assert not admin.run("cast ReceiptLedger append {}").ok and not admin.run("no such").ok
    assert admin.run("metrics").ok  # counted once answered: the next scrape shows it
    samples = dict(line.rsplit(" ", 1) for line in admin.run("metrics").value)
    assert float(samples['tai_shell_commands_total{command="cast",outcome="message_not_allowed"}']) >= 1
    assert float(samples['tai_shell_commands_total{command="unparsed",outcome="invalid_command"}']) >= 1
    assert float(samples['tai_shell_commands_total{command="metrics",outcome="ok"}']) >= 1
    assert float(samples["tai_shell_sessions"]) >= 1  # this one (others may still be closing)


def test_the_interactive_shell_completes_from_the_welcome_and_keeps_history(gateway, admin, tmp_path, capsys) -> None:
    history = tmp_path / "state" / "history"
    with create_pipe_input() as keys, create_app_session(input=keys, output=DummyOutput()):
        keys.send_text("which_children ops\r")
        keys.send_text("\x03")  # Ctrl-C drops the line being typed
        keys.send_text("nosuch\r\x04")  # an error, then Ctrl-D: quit
        assert remote_shell.interactive(admin, history) == 0
    out = capsys.readouterr()
    assert "worker (worker) running" in out.out and "bye" in out.out
    assert "error [invalid_command]" in out.err
    assert "which_children ops" in history.read_text() and "nosuch" in history.read_text()

    def complete(text: str) -> list[str]:
        return [c.text for c in remote_shell.completer(admin).get_completions(Document(text), CompleteEvent())]

    assert complete("which_") == ["which_children"]
    assert "ProdMode" in complete("state Pro") and complete("restart wor") == ["worker"]
    assert complete("log_level WA") == ["WARNING"] and complete("mode r") == ["resume"]
    assert complete("help qu") == ["quit"] and complete("tree ") == []


def test_an_open_session_does_not_hold_up_stopping_the_gateway(node) -> None:
    """The daemon must stop within Cloud Run's 10 s with an operator still attached: the session
    is closed (1012, going away) within the graceful period and no thread is left (``serving``)."""
    with serving(node) as server:
        client = ShellClient(server.url, TOKENS["admin"])
        assert client.run("help quit").ok
        started = time.monotonic()
    assert time.monotonic() - started < GRACEFUL_SHUTDOWN_S + 3
    with pytest.raises(ShellClientError, match="closed the shell session"):
        client.run("tree")
    client.close()


def test_a_history_that_cannot_be_written_is_kept_in_memory_and_said(gateway, admin, tmp_path, capsys) -> None:
    (tmp_path / "a-file").write_text("")
    with create_pipe_input() as keys, create_app_session(input=keys, output=DummyOutput()):
        keys.send_text("quit\r")
        assert remote_shell.interactive(admin, tmp_path / "a-file" / "history") == 0
    assert "history not kept: cannot write" in capsys.readouterr().err
