"""The production start checks every setting first: every problem in one start, one line each with
its code, nothing started; an unreachable store or insurer named within 10 s."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tai_autonomics import preflight
from tai_autonomics.config import load_release
from tai_autonomics.trust import write_dev_ca
from tests.helpers import free_port

REPO = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "tai_autonomics"]
SETTINGS_ENV = ("GOOGLE_CLOUD_PROJECT", "TAI_LEDGER_KEY_PEM", "TAI_INSURER_URL", "TAI_POLICY_ID",
                "FIRESTORE_EMULATOR_HOST")


def start(rel: Path, data_dir: Path, env: dict[str, str]) -> tuple[subprocess.CompletedProcess, float]:
    """``foreground`` with ``rel``; its result and how long it took."""
    clean = {k: v for k, v in os.environ.items() if k not in SETTINGS_ENV and not k.startswith("TAI_TOKEN_")}
    began = time.monotonic()
    result = subprocess.run([*CLI, "foreground", "--config", str(rel), "--data-dir", str(data_dir),
                             "--port", str(free_port())], cwd=REPO, capture_output=True, text=True, timeout=60,
                            env={**clean, **env}, check=False)
    return result, time.monotonic() - began


def error_lines(result: subprocess.CompletedProcess) -> list[str]:
    lines = result.stderr.splitlines()
    assert all(line.startswith("tai-autonomics: error: [") for line in lines), result.stderr  # no traceback
    return lines


def test_the_production_start_with_nothing_set_names_every_problem_at_once(tmp_path: Path) -> None:
    result, took = start(REPO / "rel" / "prod.toml", tmp_path / "var", {})
    assert result.returncode == 2
    lines = error_lines(result)
    rel = REPO / "rel" / "prod.toml"
    expected = [  # (code, key, what the line says): one line per problem, in one start
        ("config_missing", "ledger.key_env", "environment variable TAI_LEDGER_KEY_PEM"),
        ("config_missing", "ledger.firestore_project_env", "environment variable GOOGLE_CLOUD_PROJECT"),
        ("config_missing", "insurer.url_env", "environment variable TAI_INSURER_URL"),
        ("config_missing", "insurer.policy_id_env", "environment variable TAI_POLICY_ID"),
        ("config_invalid", "insurer.public_key_file", "/etc/tai-autonomics/insurer-signing-key/insurer-signing-key.pem"),
        ("config_invalid", "trust.anchor", "/etc/tai-autonomics/insurer-ca/insurer-ca.pem"),
        # no trust.cert_dir line: beside a Firestore ledger the certificate is in Firestore, whose
        # project is the missing variable above
        ("config_invalid", "customer.url", "placeholder"),
        ("config_invalid", "marketplace.url", "placeholder"),
    ]
    assert len(lines) == len(expected) + 1, result.stderr
    for line, (code, key, says) in zip(lines, expected, strict=False):
        assert line.startswith(f"tai-autonomics: error: [{code}] {rel}: {key}: "), line
        assert says in line
    assert lines[-1] == (f"tai-autonomics: error: [start_checks_failed] 8 problems with {rel} and the environment "
                         f"(above); nothing was started")
    assert result.stdout == "" and took < 10  # nothing started: no actor system, no log line
    assert not (tmp_path / "var").exists()


@pytest.fixture
def materials(tmp_path: Path) -> Path:
    """What a production release points at, made with the dev CA (valid, so only reachability fails)."""
    write_dev_ca(tmp_path / "ca")
    return tmp_path / "ca"


def release_file(tmp_path: Path, ca: Path, store: str, insurer_url: str) -> Path:
    rel = tmp_path / "rel.toml"
    rel.write_text(f'''profile = "staging"
mode = "prod"
[system]
admin_port = {free_port()}
[ledger]
store = "{store}"
firestore_project_env = "GOOGLE_CLOUD_PROJECT"
key_env = "TAI_LEDGER_KEY_PEM"
[insurer]
url = "{insurer_url}"
policy_id_env = "TAI_POLICY_ID"
public_key_file = "{ca / "ledger-key.pub.pem"}"
[trust]
anchor = "{ca / "ca.pem"}"
cert_dir = "{tmp_path / "certs"}"
cert_file = "{ca / "insurance-cert.pem"}"
key_file = "{ca / "insurance-key.pem"}"
[customer]
url = "http://127.0.0.1:9/customer/v1"
[marketplace]
url = "http://127.0.0.1:9/marketplace/v1"
''')
    return rel


def settings_env(ca: Path) -> dict[str, str]:
    return {"TAI_LEDGER_KEY_PEM": (ca / "ledger-key.pem").read_text(), "TAI_POLICY_ID": "dev-policy-0001",
            "GOOGLE_CLOUD_PROJECT": "tai-preflight-test"}


@pytest.fixture
def silent_insurer() -> Iterator[str]:
    """A port that accepts connections and never answers: the worst insurer (a hang, not a refusal)."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        yield f"http://127.0.0.1:{server.getsockname()[1]}"


def test_an_unreachable_store_and_a_silent_insurer_are_named_within_10_s(tmp_path: Path, materials: Path,
                                                                         silent_insurer: str) -> None:
    closed = free_port()  # nothing listens there: the Firestore emulator's address, refused
    rel = release_file(tmp_path, materials, "firestore", silent_insurer)
    result, took = start(rel, tmp_path / "var", {**settings_env(materials),
                                                  "FIRESTORE_EMULATOR_HOST": f"127.0.0.1:{closed}"})
    assert result.returncode == 2
    lines = error_lines(result)
    assert len(lines) == 3, result.stderr  # the two parties, then the summary
    assert lines[0].startswith("tai-autonomics: error: [store_unreachable] Firestore (project tai-preflight-test) "
                               "cannot be reached: ")
    assert lines[1].startswith(f"tai-autonomics: error: [insurer_unreachable] the insurer at {silent_insurer} "
                               f"cannot be reached: ReadTimeout")
    assert took < 10, took
    assert result.stdout == "" and not (tmp_path / "var").exists()


class _Answering(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # the name http.server calls
        self.send_response(404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_a_complete_reachable_release_passes(tmp_path: Path, materials: Path) -> None:
    """No false alarms: a release whose every setting is good, with an insurer that answers."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Answering)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        rel = load_release(release_file(tmp_path, materials, "sqlite", f"http://127.0.0.1:{server.server_port}"))
        assert preflight.check(rel, settings_env(materials)) == []
        env = {**settings_env(materials), "TAI_LEDGER_KEY_PEM": "not a key"}
        [problem] = preflight.check(rel, env)
        assert (problem.code, problem.detail["key"]) == ("config_invalid", "ledger.key_env")
        assert "not a key" not in problem.message  # the value of a secret is never repeated
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
