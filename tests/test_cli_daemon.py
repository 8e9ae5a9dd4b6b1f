"""The daemon as a user runs it: ``tai-autonomics tree`` and ``foreground`` as subprocesses."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tai_autonomics.runtime import _process, unixbase
from tests.helpers import free_port, wait_until, zombie
from tests.runtime.test_multiprocess import _listening_inodes, _socket_inodes

REPO = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "tai_autonomics"]


def run_cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def release(tmp_path: Path, supervision: Path = REPO / "supervision.toml") -> Path:
    rel = tmp_path / "test.toml"
    rel.write_text(f'profile = "dev"\nsupervision = "{supervision}"\ndata_dir = "{tmp_path / "var"}"\n'
                   f'[system]\nadmin_port = {free_port()}\n')
    return rel


class Daemon:
    """A ``foreground`` subprocess whose output goes to a file (thespian's admin keeps it open).

    ``rel``: its release file; None runs the dev profile's defaults with ``options`` (e.g. ``--data-dir``);
    ``env``: variables set for it on top of this process's (tokens, host and Cloud Run's left out).
    """

    def __init__(self, tmp_path: Path, rel: Path | None, name: str = "daemon", options: tuple[str, ...] = (),
                 env: dict[str, str] | None = None) -> None:
        self.out = tmp_path / f"{name}.out"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        inherited = {k: v for k, v in os.environ.items() if not k.startswith(("TAI_TOKEN_", "TAI_HOST", "K_SERVICE"))}
        env = inherited | (env or {})
        config = ("--config", str(rel)) if rel is not None else ()
        with open(self.out, "w") as out:
            self.proc = subprocess.Popen([*CLI, "foreground", *config, *options, "--port", str(self.port)], cwd=REPO,
                                         stdout=out, stderr=subprocess.STDOUT, env=env)

    def lines(self) -> list[dict]:
        text = self.out.read_text()
        complete = text[:text.rfind("\n") + 1]  # the daemon may be half-way through writing its last line
        return [json.loads(line) for line in complete.splitlines() if line.startswith("{")]

    def wait_for_event(self, event: str, timeout: float = 30) -> None:
        wait_until(lambda: any(e.get("event") == event for e in self.lines()) or self.proc.poll() is not None,
                   timeout, what=event)
        assert any(e.get("event") == event for e in self.lines()), self.out.read_text()[-3000:]

    def wait_ready(self, timeout: float = 60) -> None:
        """Poll ``/readyz`` over HTTP until it answers 200 (fail early if the daemon exits)."""
        def ready() -> bool:
            try:
                return httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200
            except httpx.TransportError:
                return self.proc.poll() is not None
        wait_until(ready, timeout, what="/readyz")
        assert self.proc.poll() is None, self.out.read_text()[-3000:]

    def processes(self) -> list[int]:
        return [self.proc.pid, *_process.descendants(self.proc.pid)]

    def kill(self) -> None:
        for pid in self.processes()[::-1]:
            _process.kill(pid)
        self.proc.wait(10)


@pytest.fixture
def daemons():
    started: list[Daemon] = []
    yield started
    for d in started:
        if d.proc.poll() is None:
            d.kill()


def test_tree_prints_the_configured_tree() -> None:
    result = run_cli("tree", "--config", "supervision.toml")
    assert result.returncode == 0
    assert result.stdout.splitlines()[0] == "root (one_for_one, intensity 10 per 60 s)"
    assert "Acquisition" in result.stdout


def test_tree_reports_a_bad_file_clearly(tmp_path: Path) -> None:
    bad = tmp_path / "supervision.toml"
    bad.write_text((REPO / "supervision.toml").read_text().replace('strategy = "one_for_one"', 'strategy = "all_for_me"', 1))
    result = run_cli("tree", "--config", str(bad))
    assert result.returncode == 2
    assert f"{bad}: supervisors.root.strategy: unknown strategy 'all_for_me'" in result.stderr
    assert "Traceback" not in result.stderr


def test_every_command_has_help() -> None:
    for command in ("tree", "foreground", "ping", "stop", "health"):
        result = run_cli(command, "--help")
        assert result.returncode == 0 and "usage:" in result.stdout


def test_foreground_runs_and_stops_cleanly_on_sigterm(tmp_path: Path, daemons) -> None:
    rel = release(tmp_path)
    daemon = Daemon(tmp_path, rel)
    daemons.append(daemon)
    daemon.wait_for_event("tree_started")
    started = [e["child"] for e in daemon.lines() if e.get("event") == "child_started"]
    assert started == ["ReceiptLedger", "CertManager", "InsuranceClient", "ProdMode", "Notifier",
                       "Pricing", "Publisher", "Acquisition", "operations"]
    pids = daemon.processes()
    assert len(pids) >= 10  # the daemon, the admin, thespian's logger, the registry and the tree

    # Security: nothing of the daemon listens beyond loopback, the gateway included.
    daemon.wait_for_event("gateway_listening")
    addresses = _listening_addresses(pids)
    assert addresses and all(a.split(":")[0] == LOOPBACK for a in addresses), addresses
    assert f"{LOOPBACK}:{daemon.port:04X}" in addresses

    # A second daemon on the same data dir refuses instead of joining the first one's system.
    second = run_cli("foreground", "--config", str(rel))
    assert second.returncode == 2 and "already running" in second.stderr
    assert run_cli("ping", "--config", str(rel)).returncode == 0

    sent = time.monotonic()
    daemon.proc.send_signal(signal.SIGTERM)
    assert daemon.proc.wait(10) == 0
    assert time.monotonic() - sent < 10
    alive = [p for p in pids if os.path.exists(f"/proc/{p}") and not zombie(p)]
    assert alive == []
    events = [e.get("event") for e in daemon.lines()]
    assert events.index("sandbox_started") < events.index("tree_started") < events.index("stopping")
    assert events.index("stopping") < events.index("stopped")
    assert run_cli("ping", "--config", str(rel)).returncode == 1


def _listening_addresses(pids: list[int]) -> set[str]:
    """``ADDR:PORT`` (hex, as in /proc/net/tcp) of every listening socket the processes hold."""
    listening = _listening_inodes()
    return {listening[i] for p in pids for i in _socket_inodes(p) if i in listening}


LOOPBACK, EVERY_INTERFACE = "0100007F", "00000000"  # 127.0.0.1 and 0.0.0.0 as /proc/net/tcp spells them


def test_on_cloud_run_the_gateway_listens_on_every_interface_and_actors_on_loopback(tmp_path: Path, daemons) -> None:
    daemon = Daemon(tmp_path, release(tmp_path), env={"K_SERVICE": "tai-autonomics"})
    daemons.append(daemon)
    daemon.wait_for_event("gateway_listening")
    addresses = _listening_addresses(daemon.processes())
    gateway = f"{EVERY_INTERFACE}:{daemon.port:04X}"
    assert gateway in addresses, addresses
    others = addresses - {gateway}  # the actors talk over Unix sockets (tests/runtime/test_unix_transport.py)
    assert all(a.split(":")[0] == LOOPBACK for a in others), others
    assert httpx.get(f"http://127.0.0.1:{daemon.port}/readyz").status_code == 200

    # The image's HEALTHCHECK: `health` finds the gateway by $PORT, as Cloud Run sets it.
    def health() -> subprocess.CompletedProcess:
        return subprocess.run([*CLI, "health"], capture_output=True, text=True, timeout=30,
                              env={**os.environ, "PORT": str(daemon.port)})

    url = f"http://127.0.0.1:{daemon.port}/healthz"
    alive = health()
    assert (alive.returncode, alive.stdout) == (0, f"healthy: {url}\n"), alive.stderr
    daemon.proc.send_signal(signal.SIGTERM)
    assert daemon.proc.wait(10) == 0
    gone = health()
    assert gone.returncode == 1 and gone.stderr.startswith(f"tai-autonomics: unhealthy: {url}: ConnectError")
    assert len(gone.stderr.splitlines()) == 1


def test_a_host_that_is_not_an_address_is_refused_before_anything_starts(tmp_path: Path) -> None:
    rel = release(tmp_path)
    result = run_cli("foreground", "--config", str(rel), "--host", "every-interface")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        "tai-autonomics: error: [config_invalid] --host: must be an IP address "
        "(e.g. \"127.0.0.1\", or \"0.0.0.0\" for every interface), got 'every-interface'"]
    assert not (tmp_path / "var" / "daemon.pid").exists()


@pytest.mark.parametrize("inside", ["", "not-yet"])
def test_an_unwritable_data_dir_is_one_clear_line(tmp_path: Path, inside: str) -> None:
    read_only = tmp_path / "read-only"
    read_only.mkdir(mode=0o555)
    data_dir = read_only / inside if inside else read_only
    # Root writes anywhere unless it gives up the capabilities that override permission bits.
    as_user = ["setpriv", "--bounding-set=-dac_override,-fowner", "--"] if os.geteuid() == 0 else []
    result = subprocess.run([*as_user, *CLI, "foreground", "--data-dir", str(data_dir)], cwd=REPO,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"tai-autonomics: error: [data_dir_unwritable] the data dir {data_dir} is not writable by uid {os.geteuid()}: "
        f"Permission denied; give that user write access, or choose another (--data-dir, or data_dir in the "
        f"release file)"], result.stderr
    assert list(read_only.iterdir()) == []


def test_stop_command_stops_the_daemon(tmp_path: Path, daemons) -> None:
    rel = release(tmp_path)
    daemon = Daemon(tmp_path, rel)
    daemons.append(daemon)
    daemon.wait_for_event("tree_started")
    result = run_cli("stop", "--config", str(rel))
    assert result.returncode == 0, result.stderr
    assert daemon.proc.wait(10) == 0


def test_root_giving_up_exits_non_zero_with_the_reason(tmp_path: Path, daemons) -> None:
    tree = tmp_path / "crashy.toml"
    tree.write_text('root = "root"\n[supervisors.root]\nintensity = 2\nperiod = 60\nchildren = ["c"]\n'
                    '[workers.c]\nactor = "tests.runtime.actors:Crasher"\n')
    daemon = Daemon(tmp_path, release(tmp_path, tree))
    daemons.append(daemon)
    assert daemon.proc.wait(30) == 1
    gave_up = [e for e in daemon.lines() if e.get("event") == "root_gave_up"]
    assert gave_up and "reached_max_restart_intensity" in gave_up[0]["reason"]
    assert gave_up[0]["severity"] == "CRITICAL"


def test_invalid_tree_starts_nothing(tmp_path: Path) -> None:
    tree = tmp_path / "bad.toml"
    tree.write_text('root = "root"\n[supervisors.root]\nchildren = ["c", "c"]\n[workers.c]\nactor = "x:Y"\n')
    rel = release(tmp_path, tree)
    result = run_cli("foreground", "--config", str(rel))
    assert result.returncode == 2
    assert "workers.c.actor: unknown actor class" in result.stderr
    assert not (tmp_path / "var" / "daemon.pid").exists()


@pytest.mark.parametrize("base", ["multiprocUnixBase", "multiprocTCPBase"])
def test_admin_port_held_by_another_program_is_a_clear_error(tmp_path: Path, base: str) -> None:
    rel = release(tmp_path)
    port = int(rel.read_text().split("admin_port = ")[1])
    rel.write_text(rel.read_text() + f'base = "{base}"\n')
    if base == "multiprocTCPBase":
        squatter, address = socket.socket(), ("127.0.0.1", port)
        expected = f"admin port 127.0.0.1:{port} is already in use"
    else:  # the admin's socket in the node's directory (docs/thespian-base.md)
        address = os.path.join(unixbase.node_directory({"Admin Port": port}), "admin")
        squatter, expected = socket.socket(socket.AF_UNIX), f"actor admin socket {address} is in use"
    try:
        with squatter:
            squatter.bind(address)
            squatter.listen()
            result = run_cli("foreground", "--config", str(rel))
    finally:
        if base != "multiprocTCPBase":
            shutil.rmtree(os.path.dirname(address))
    assert result.returncode == 2
    assert expected in result.stderr


def test_bad_release_file(tmp_path: Path) -> None:
    rel = tmp_path / "r.toml"
    rel.write_text('[system]\nadmin_port = 70000\n')
    result = run_cli("foreground", "--config", str(rel))
    assert result.returncode == 2
    assert "system.admin_port: must be a port number" in result.stderr


def test_foreground_serves_the_gateway_with_dev_tokens(tmp_path: Path, daemons) -> None:
    daemon = Daemon(tmp_path, release(tmp_path))
    daemons.append(daemon)
    daemon.wait_for_event("gateway_listening")
    url = f"http://127.0.0.1:{daemon.port}"
    assert httpx.get(f"{url}/healthz").json() == {"status": "alive"}
    assert httpx.get(f"{url}/readyz").status_code == 200
    assert httpx.get(f"{url}/v1/supervision").status_code == 401

    # The dev profile made the tokens, kept them in DATA_DIR/tokens.env for its owner only, and never logged them.
    tokens_file = tmp_path / "var" / "tokens.env"
    assert tokens_file.stat().st_mode & 0o777 == 0o600
    tokens = dict(line.split("=", 1) for line in tokens_file.read_text().splitlines())
    assert set(tokens) == {"TAI_TOKEN_SERVICE", "TAI_TOKEN_AUDITOR", "TAI_TOKEN_ADMIN"}
    tree = httpx.get(f"{url}/v1/supervision", headers={"Authorization": f"Bearer {tokens['TAI_TOKEN_ADMIN']}"})
    assert tree.status_code == 200
    assert [c["name"] for c in tree.json()["children"]] == ["ReceiptLedger", "CertManager", "InsuranceClient",
                                                            "ProdMode", "Notifier", "operations"]
    daemon.proc.send_signal(signal.SIGTERM)
    assert daemon.proc.wait(10) == 0
    output = daemon.out.read_text()
    assert not any(token in output for token in tokens.values())
    events = [e.get("event") for e in daemon.lines()]
    assert events.index("tree_started") < events.index("gateway_listening")
    assert events.index("stopping") < events.index("gateway_stopped") < events.index("system_stopped")


def test_foreground_with_the_gateway_port_taken_fails_clearly(tmp_path: Path, daemons) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        result = run_cli("foreground", "--config", str(release(tmp_path)), "--port", str(port))
    assert result.returncode == 2
    assert f"the gateway cannot listen on 127.0.0.1:{port}" in result.stderr


def test_ping_and_stop_say_which_data_dir_they_checked(tmp_path: Path) -> None:
    for command in ("ping", "stop"):
        result = run_cli(command, "--data-dir", str(tmp_path / "nowhere"), cwd=tmp_path)
        assert result.returncode == 1
        assert result.stderr.strip() == (f"not running: no tai-autonomics holds the lock on "
                                         f"{tmp_path / 'nowhere' / 'daemon.pid'} (data dir {tmp_path / 'nowhere'}; "
                                         f"another data dir: --data-dir or --config)")
    assert not (tmp_path / "nowhere").exists()  # looking changes nothing


def test_two_dev_daemons_on_two_data_dirs_run_side_by_side(tmp_path: Path, daemons) -> None:
    """The dev profile (no --config) picks a free admin port per data dir and records it there."""
    dirs = [tmp_path / "a", tmp_path / "b"]
    started = [Daemon(tmp_path, None, d.name, ("--data-dir", str(d))) for d in dirs]
    daemons.extend(started)
    for daemon in started:
        daemon.wait_ready()
    ports = [int((d / "admin_port").read_text()) for d in dirs]
    assert ports[0] != ports[1]
    pids = [pid for daemon in started for pid in daemon.processes()]
    for d, daemon, port in zip(dirs, started, ports, strict=True):
        pong = run_cli("ping", "--data-dir", str(d))
        assert pong.returncode == 0
        assert pong.stdout.strip() == f"pong (pid {daemon.proc.pid}, data dir {d}, admin port {port})"
        assert run_cli("stop", "--data-dir", str(d)).returncode == 0
        assert daemon.proc.wait(10) == 0
    assert [p for p in pids if os.path.exists(f"/proc/{p}") and not zombie(p)] == []
    for d in dirs:
        assert run_cli("ping", "--data-dir", str(d)).returncode == 1

    # A restart keeps its data dir's port while it is free.
    again = Daemon(tmp_path, None, "a-again", ("--data-dir", str(dirs[0])))
    daemons.append(again)
    again.wait_for_event("system_started")
    assert [e["admin_port"] for e in again.lines() if e.get("event") == "system_started"] == [ports[0]]
    again.proc.send_signal(signal.SIGTERM)
    assert again.proc.wait(10) == 0


def test_the_tree_file_flag_wins_and_the_packaged_tree_is_the_default(tmp_path: Path) -> None:
    default = run_cli("tree", cwd=tmp_path)  # no ./supervision.toml here: the tree shipped in the package
    assert default.returncode == 0 and default.stdout == run_cli("tree", "--config", "supervision.toml").stdout
    bad = tmp_path / "bad.toml"
    bad.write_text('root = "root"\n[supervisors.root]\nchildren = ["c"]\n[workers.c]\nactor = "x:Y"\n')
    result = run_cli("foreground", "--config", str(release(tmp_path)), "--supervision", str(bad))
    assert result.returncode == 2  # the flag overrides the release file's (valid) tree
    assert f"{bad}: workers.c.actor: unknown actor class" in result.stderr
    assert not (tmp_path / "var" / "daemon.pid").exists()
