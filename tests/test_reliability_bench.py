"""The short versions of the reliability benchmarks (issue 14, docs/reliability.md): chaos under
load for 30 s (actors SIGKILLed, the sandbox slow, failing, dropping and rate-limiting, the whole
daemon ``kill -9``ed twice and restarted on its data) with every invariant count 0, the same on two
daemons sharing one ledger on the Firestore emulator (each ``kill -9``ed once while the other
serves), and a 20 s soak that fails on a clear leak of memory or descriptors. ``.ci/run`` runs the
60-second chaos after the suite; the full-length runs are for an idle machine (docs/reliability.md)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.chaos import unexplained_restarts, unexplained_total
from tai_autonomics.runtime._process import descendants
from tests.daemon import REPO


def _bench(module: str, *args: str, timeout: float = 240) -> tuple[int, dict, str]:
    """The benchmark's exit code, JSON and stderr; one past ``timeout`` is sent SIGTERM first, so it
    stops what it started (daemons, the emulator), and killed if that takes more than 60 s."""
    bench = subprocess.Popen([sys.executable, "-m", module, *args], cwd=REPO, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        out, err = bench.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        bench.terminate()
        try:
            out, err = bench.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            bench.kill()
            out, err = bench.communicate()
        pytest.fail(f"{module} took more than {timeout} s:\n{out[-2000:]}{err[-3000:]}")
    assert out.strip().startswith("{"), out[-2000:] + err[-3000:]
    return bench.returncode, json.loads(out), err


@pytest.mark.timeout(300)
def test_short_chaos_keeps_every_invariant(tmp_path: Path) -> None:
    kept = tmp_path / "run"
    code, report, errors = _bench("bench.chaos", "--seconds", "30", "--rate", "20", "--every", "2", "--calm", "4",
                                  "--keep", str(kept))
    assert report["invariants"] == dict.fromkeys(report["invariants"], 0) and len(report["invariants"]) == 7, report
    assert report["daemon_restarts"] == 2 and code == 0, (report, errors[-2000:])
    assert report["operations"].get("deploy:2xx", 0) > 100, report  # the load did run, before and after the kills
    # --keep: the data directory and the output of the daemon's three incarnations stay
    assert (kept / "var" / "ledger.sqlite3").is_file()
    assert (kept / "daemon.out").read_text().count('"sandbox_started"') == 3


def test_unexplained_restarts_are_the_restarts_beyond_the_kills() -> None:
    restarts = {"Acquisition": 12, "ReceiptLedger": 8, "Pricing": 4, "operations": 1}
    applied = {"sigkill:Acquisition": 8, "sigkill:ReceiptLedger": 8, "sigkill:Pricing": 5, "sigkill:Notifier": 1,
               "daemon_kill9": 2, "latency@customer.*": 3}
    unexplained = unexplained_restarts(restarts, applied)
    assert unexplained == {"Acquisition": 4, "Notifier": -1, "Pricing": -1, "operations": 1}
    # a count short of its kills is no credit for another's crash; a supervisor's restart is not counted
    assert unexplained_total(unexplained, {"operations"}) == 4


def test_short_soak_shows_no_clear_leak() -> None:
    code, report, errors = _bench("bench.soak", "--seconds", "20", "--rate", "20", "--sample", "2")
    assert report["leak"] is False and report["thespian_tx_only_entries"] == 0 and code == 0, (report, errors[-2000:])
    assert report["samples"] >= 8 and not report["errors"], report
    peak = report["peak_pending_outbound"]  # read from /v1/supervision at (nearly) every sample
    assert type(peak) is int and peak >= 0 and report["peak_pending_outbound_actor"], report
    assert 0 < report["pending_outbound_samples"] <= report["samples"], report
    assert report["pending_outbound_samples"] + sum(report["observer_errors"].values()) == report["samples"], report


@pytest.mark.timeout(400)
def test_short_chaos_on_two_daemons_sharing_the_firestore_emulator_keeps_every_invariant() -> None:
    code, report, errors = _bench("bench.chaos", "--store", "firestore", "--instances", "2", "--seconds", "30",
                                  "--rate", "10", "--every", "2", "--calm", "4", timeout=360)
    assert report["invariants"] == dict.fromkeys(report["invariants"], 0) and len(report["invariants"]) == 7, report
    assert report["daemon_restarts_by_instance"] == {"a": 1, "b": 1} and code == 0, (report, errors[-2000:])
    by_instance = report["operations_by_instance"]
    for name in ("a", "b"):  # each instance took new deploys and the repeats of keys first sent to the other
        assert by_instance[name].get("deploy:2xx", 0) > 20 and by_instance[name].get("repeat:2xx", 0) > 0, report
    assert report["served_while_other_down"] > 0, report  # one daemon killed, the other went on serving


@pytest.mark.timeout(300)
def test_soak_stops_and_fails_when_the_daemon_dies_mid_run() -> None:
    """Issue 14: the daemon's main process died and the soak span on for 45 minutes without a
    report. Killed once load has started, the soak must stop well before its end, exit 1 with
    the death named in its JSON (with the samples taken before it), and leave none of the daemon's processes behind."""
    soak = subprocess.Popen([sys.executable, "-m", "bench.soak", "--seconds", "120", "--rate", "20", "--sample", "1"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    left: list[int] = []
    try:
        assert soak.stderr is not None
        line = ""
        while "load started" not in line:  # blocks on the soak's own output; the pytest timeout bounds it
            line = soak.stderr.readline()
            assert line, "the soak ended before its load started"
        daemon = int(line.rsplit(" ", 1)[1])
        while "soak: sample" not in line:  # one sample taken, so the report has something to show
            line = soak.stderr.readline()
            assert line, "the soak ended before its first sample"
        left = descendants(daemon)
        started = time.monotonic()
        os.kill(daemon, signal.SIGKILL)
        out, err = soak.communicate(timeout=90)
        assert time.monotonic() - started < 60, "the soak ran on after its daemon died"
        report = json.loads(out)
        assert soak.returncode == 1, (out[-2000:], err[-2000:])
        assert report["daemon_died"]["exit_code"] == -signal.SIGKILL and report["samples"] >= 1, report
        assert "the daemon exited" in err
        deadline = time.monotonic() + 30
        while [pid for pid in left if _alive(pid)] and time.monotonic() < deadline:
            time.sleep(0.1)  # polling /proc for processes SIGKILLed by the soak, with a deadline
        assert not [pid for pid in left if _alive(pid)], "the dead daemon's actors were left running"
    finally:
        if soak.poll() is None:
            soak.kill()
            soak.communicate()
        for pid in left:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    """Running, not a zombie waiting for its (new) parent."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
