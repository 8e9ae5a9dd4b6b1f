"""Configuration, dev tokens, binding, start errors and the log lines of the gateway."""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
from pathlib import Path

import httpx
import pytest

from tai_autonomics.config import load_release
from tai_autonomics.errors import ConfigError, TaiError
from tai_autonomics.gateway import (
    DEFAULT_ALLOWED,
    ActorBridge,
    GatewayServer,
    GatewayStartError,
    dev_tokens,
    gateway_config,
    resolve_port,
)
from tai_autonomics.gateway.config import resolve_host
from tai_autonomics.httpserve import IDLE_TIMEOUT_S
from tai_autonomics.logs import JsonFormatter
from tai_autonomics.runtime import Node, NodeConfig
from tests.gateway.support import auth, config, serving
from tests.helpers import wait_until


def test_port_comes_from_the_option_then_the_environment_then_8080() -> None:
    assert resolve_port(9001, {"PORT": "9002"}) == 9001
    assert resolve_port(None, {"PORT": "9002"}) == 9002
    assert resolve_port(None, {}) == 8080
    for bad_option, env in ((0, {}), (70000, {}), (None, {"PORT": "http"}), (None, {"PORT": "0"})):
        with pytest.raises(ConfigError):
            resolve_port(bad_option, env)


def test_gateway_section_of_a_release_file() -> None:
    environ = {"TAI_TOKEN_ADMIN": "a" * 32, "TAI_TOKEN_SERVICE": "", "MY_PROJECT": "proj-1"}
    cfg = gateway_config({"host": "0.0.0.0", "max_in_flight": 10, "call_timeout_s": 3, "max_connections": 100,
                          "google_audience": "https://x", "admin_emails": "Ops@x.com, b@x.com",
                          "auditor_emails": "c@x.com", "allow_Pricing": "quote, status",
                          "trace_project_env": "MY_PROJECT"},
                         port=8081, root="root", environ=environ)
    assert (cfg.host, cfg.port, cfg.max_in_flight, cfg.call_timeout_s) == ("0.0.0.0", 8081, 10, 3.0)
    assert cfg.max_connections == 100
    assert cfg.tokens == {"admin": "a" * 32}  # an empty variable is no token
    assert cfg.google_roles == {"ops@x.com": "admin", "b@x.com": "admin", "c@x.com": "auditor"}
    assert cfg.allowed["Pricing"] == ("quote", "status")
    assert cfg.allowed["ReceiptLedger"] == DEFAULT_ALLOWED["ReceiptLedger"]
    assert cfg.trace_project == "proj-1"
    assert "a" * 32 not in repr(cfg)
    assert gateway_config({}, port=8080, root="root", environ={}).host == "127.0.0.1"  # loopback unless configured


def test_address_comes_from_the_option_then_the_environment_then_the_file_then_cloud_run() -> None:
    cloud_run = {"K_SERVICE": "tai-autonomics"}
    assert resolve_host("10.1.2.3", "192.0.2.1", {"TAI_HOST": "0.0.0.0", **cloud_run}) == "10.1.2.3"
    assert resolve_host(None, "192.0.2.1", {"TAI_HOST": "::", **cloud_run}) == "::"
    assert resolve_host(None, "127.0.0.2", cloud_run) == "127.0.0.2"  # an operator can narrow it
    assert resolve_host(None, None, cloud_run) == "0.0.0.0"
    assert resolve_host(None, None, {"TAI_HOST": "", "K_SERVICE": ""}) == "127.0.0.1"  # empty is unset
    assert gateway_config({}, port=8080, root="root", environ={}, host="0.0.0.0").host == "0.0.0.0"


@pytest.mark.parametrize("cli, environ, where", [
    ("localhost", {}, "--host"), (None, {"TAI_HOST": "every"}, "$TAI_HOST"), ("0.0.0.0:80", {}, "--host"),
])
def test_an_address_that_is_not_an_ip_address_names_its_source(cli: str | None, environ: dict, where: str) -> None:
    with pytest.raises(ConfigError) as caught:
        gateway_config({}, port=8080, root="root", environ=environ, host=cli)
    assert caught.value.file == where and "must be an IP address" in caught.value.message


@pytest.mark.parametrize("name", ["dev", "staging", "prod"])
def test_shipped_release_files_leave_the_address_to_the_platform(name: str) -> None:
    release = load_release(Path(__file__).resolve().parents[2] / "rel" / f"{name}.toml")
    section = release.sections["gateway"]
    assert gateway_config(section, port=8080, root="root", environ={}).host == "127.0.0.1"
    assert gateway_config(section, port=8080, root="root", environ={"K_SERVICE": "tai"}).host == "0.0.0.0"


def test_short_tokens_refuse_to_start_and_are_not_quoted() -> None:
    with pytest.raises(ConfigError) as caught:
        gateway_config({}, port=8080, root="root", environ={"TAI_TOKEN_AUDITOR": "hunter2"})
    assert "TAI_TOKEN_AUDITOR" in caught.value.message and "hunter2" not in str(caught.value.to_dict())
    same = "s" * 20
    with pytest.raises(ConfigError, match="its own token"):
        gateway_config({}, port=8080, root="root", environ={"TAI_TOKEN_AUDITOR": same, "TAI_TOKEN_ADMIN": same})


@pytest.mark.parametrize("section, key", [
    ({"hots": "x"}, "gateway.hots"), ({"host": ""}, "gateway.host"), ({"max_in_flight": "10"}, "gateway.max_in_flight"),
    ({"max_in_flight": 0}, "gateway.max_in_flight"), ({"workers": True}, "gateway.workers"),
    ({"max_connections": 0}, "gateway.max_connections"),
    ({"allow_Pricing": "$state"}, "gateway.allow_Pricing"), ({"root_emails": "a@x"}, "gateway.root_emails"),
    ({"call_timeout_s": float("nan")}, "gateway.call_timeout_s"),
    ({"call_timeout_s": float("inf")}, "gateway.call_timeout_s"), ({"call_timeout_s": True}, "gateway.call_timeout_s"),
])
def test_bad_gateway_settings_name_the_key(section: dict, key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        gateway_config(section, port=8080, root="root", environ={}, source="rel/x.toml")
    assert caught.value.key == key and caught.value.file == "rel/x.toml"


def test_dev_tokens_are_made_once_kept_private_and_yield_to_the_environment(tmp_path: Path) -> None:
    first = dev_tokens(tmp_path, {"TAI_TOKEN_SERVICE": "from-env"})
    path = tmp_path / "tokens.env"
    assert path.stat().st_mode & 0o777 == 0o600
    assert first["service"] == "from-env" and "from-env" not in path.read_text()
    assert len(first["admin"]) >= 32 and first["admin"] != first["auditor"]
    assert dev_tokens(tmp_path, {"TAI_TOKEN_SERVICE": "from-env"}) == first  # kept across restarts
    path.chmod(0o644)
    assert dev_tokens(tmp_path, {"TAI_TOKEN_SERVICE": "from-env"}) == first
    assert path.stat().st_mode & 0o777 == 0o600
    second = dev_tokens(tmp_path, {})
    assert second["admin"] == first["admin"] and second["service"] != "from-env"
    assert path.stat().st_mode & 0o777 == 0o600


def test_binds_loopback_by_default_and_another_address_only_when_configured(node: Node) -> None:
    with serving(node) as server:
        assert server.gateway.config.host == "127.0.0.1"
    with serving(node, host="0.0.0.0") as server:
        assert httpx.get(f"http://127.0.0.1:{server.port}/healthz").status_code == 200


def test_a_port_in_use_is_a_clear_start_error(node: Node) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        with pytest.raises(GatewayStartError, match=f"cannot listen on 127.0.0.1:{port}"):
            GatewayServer(node, config(port=port)).start()


def test_the_bridge_needs_a_multiprocess_base() -> None:
    with Node(NodeConfig(base="simpleSystemBase")) as simple, pytest.raises(TaiError, match="multiprocess"):
        ActorBridge(simple, workers=1, max_in_flight=1, call_timeout_s=1)


def test_one_json_log_line_per_request_with_the_cloud_trace(node: Node, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="tai_autonomics.gateway")
    trace = "105445aa7843bc8bf206b12000100000"
    with serving(node, trace_project="my-project") as server:
        httpx.get(f"{server.url}/v1/receipts/r-9", headers={**auth("auditor"), "X-Request-Id": "req-7",
                                                               "X-Cloud-Trace-Context": f"{trace}/1;o=1"})
        httpx.get(f"{server.url}/healthz", headers={"X-Cloud-Trace-Context": "not-a-trace"})
    lines = [json.loads(JsonFormatter().format(r)) for r in caplog.records if r.getMessage() == "request"]
    first, second = lines
    assert first["logging.googleapis.com/trace"] == f"projects/my-project/traces/{trace}"
    expected = {"event": "http_request", "request_id": "req-7", "method": "GET", "route": "/v1/receipts/{id}",
                "status": 404, "subject": "token:auditor", "severity": "INFO"}
    assert {k: first[k] for k in expected} == expected and first["latency_ms"] > 0
    assert "logging.googleapis.com/trace" not in second


def test_a_request_in_flight_when_the_gateway_stops_gets_its_answer(node: Node) -> None:
    outcome: list[int] = []
    with serving(node) as server:
        client = httpx.Client(base_url=server.url, timeout=10, headers=auth("admin"))
        caller = threading.Thread(target=lambda: outcome.append(
            client.post("/v1/actors/worker/call", json={"type": "sleep", "payload": 0.3}).status_code))
        caller.start()
        wait_until(lambda: server.gateway.bridge.in_flight == 1, what="the call in flight")
    caller.join(10)
    client.close()
    assert not caller.is_alive() and outcome == [200]


def test_head_answers_like_get_without_a_body(http: httpx.Client) -> None:
    response = http.head("/healthz")
    assert response.status_code == 200 and response.content == b""


def _gateway_connections(port: int) -> int:
    """This process's accepted connections on the gateway's port, from /proc (issue 14: the
    daemon's main process ran out of descriptors)."""
    local = f":{port:04X}"
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if fields[1].endswith(local) and fields[3] != "0A":  # not the listening socket
                    inodes.add(int(fields[9]))
    held = 0
    for fd in os.listdir("/proc/self/fd"):
        try:  # one by one: another thread may close a descriptor between the listing and this look
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        held += target.startswith("socket:[") and int(target[8:-1]) in inodes
    return held


def test_connections_that_never_send_a_request_are_closed_and_their_descriptors_freed(node: Node) -> None:
    """A client that connects and then goes silent (starved, vanished, or slow on purpose) held
    a descriptor of the gateway's process for ever: uvicorn times out only a kept-alive
    connection after a response, never one that has not sent its first request. Now both close
    after the same idle time, so the gateway's descriptors come back to their level."""
    with serving(node) as server:
        before = _gateway_connections(server.port)
        silent = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(40)]
        try:
            with httpx.Client(base_url=server.url, timeout=10, headers=auth("admin")) as client:
                assert all(client.get("/healthz").status_code == 200 for _ in range(10))
            wait_until(lambda: _gateway_connections(server.port) >= len(silent), timeout=10,
                       what="the silent connections accepted")
            wait_until(lambda: _gateway_connections(server.port) <= before, timeout=IDLE_TIMEOUT_S + 15,
                       what="the silent connections closed by the gateway")
            for sock in silent:  # the gateway closed its end: the client sees end of file
                sock.settimeout(5)
                assert sock.recv(1) == b""
        finally:
            for sock in silent:
                sock.close()


def test_the_gateway_refuses_connections_past_its_configured_cap(node: Node) -> None:
    """``[gateway] max_connections`` reaches the server: one kept-alive connection fills a cap of
    one, the next gets 503 ``too_many_connections`` with ``Retry-After``, and once it closes
    connections are served again (the mechanism itself: tests/test_httpserve.py)."""
    with serving(node, max_connections=1) as server:
        held = socket.create_connection(("127.0.0.1", server.port))
        try:
            held.settimeout(10)
            held.sendall(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
            assert held.recv(4096).startswith(b"HTTP/1.1 200 ")
            refused = httpx.get(f"{server.url}/healthz", timeout=10)
            assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
            assert refused.json()["error"]["code"] == "too_many_connections"
        finally:
            held.close()
        wait_until(lambda: httpx.get(f"{server.url}/healthz", timeout=10).status_code == 200,
                   what="served again once the held connection closed")
