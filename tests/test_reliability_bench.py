"""The short versions of the reliability benchmarks (issue 14, docs/reliability.md): chaos under
load for 30 s (actors SIGKILLed, the sandbox slow, failing, dropping and rate-limiting, the whole
daemon ``kill -9``ed twice and restarted on its data) with every invariant count 0, and a 20 s soak
that fails on a clear leak of memory or descriptors. ``.ci/run`` runs the 60-second chaos after
the suite; the full-length runs are for an idle machine (docs/reliability.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.chaos import unexplained_restarts, unexplained_total
from tests.test_cli_daemon import REPO


def _bench(module: str, *args: str) -> tuple[int, dict, str]:
    done = subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, capture_output=True, text=True,
                          timeout=240)
    assert done.stdout.strip().startswith("{"), done.stdout[-2000:] + done.stderr[-3000:]
    return done.returncode, json.loads(done.stdout), done.stderr


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
