"""``bench.scale`` in two runs, at tiny sizes: ``--build-only`` builds (and resumes building) a data
dir's var that ``--data`` measures later, as a 10^7 ledger is built once and measured on an idle
machine (docs/performance.md). The full-size runs are for an idle machine, not the suite."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tai_autonomics.actors.names import WORKERS
from tai_autonomics.ledger import SQLiteStore, load_ledger_key, verify_store
from tests.test_cli_daemon import REPO


def _scale(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bench.scale", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=240)


def _size(var: Path) -> int:
    store = SQLiteStore(var / "ledger.sqlite3", readonly=True)
    try:
        return store.size()
    finally:
        store.close()


def test_build_only_resumes_and_refuses_to_shrink(tmp_path: Path) -> None:
    var = tmp_path / "var"
    first = _scale("--build-only", str(var), "--size", "600")
    assert first.returncode == 0 and json.loads(first.stdout)["build"]["resumed_from"] == 0, first.stderr[-2000:]
    again = _scale("--build-only", str(var), "--size", "1000")
    assert again.returncode == 0 and json.loads(again.stdout)["build"]["resumed_from"] == 600, again.stderr[-2000:]
    store = SQLiteStore(var / "ledger.sqlite3", readonly=True)
    try:  # the resumed build is one valid ledger: every receipt, chain link and checkpoint
        assert verify_store(store, load_ledger_key(data_dir=var).public).tree_size == 1000
    finally:
        store.close()
    smaller = _scale("--build-only", str(var), "--size", "10")
    assert smaller.returncode != 0 and "already holds 1000 receipts" in smaller.stderr, smaller.stderr[-2000:]
    assert _size(var) == 1000
    assert _scale("--build-only", str(var)).returncode == 2  # no --size: a usage error


@pytest.mark.timeout(300)
def test_data_measures_a_built_dir_with_the_full_read_skipped(tmp_path: Path) -> None:
    var = tmp_path / "var"
    assert _scale("--build-only", str(var), "--size", "1000").returncode == 0
    done = _scale("--data", str(var), "--deploys", "20", "--proofs", "10", "--full-read-max", "999",
                  "--export-max", "100000")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    row = json.loads(done.stdout)
    assert row["receipts"] == 1000 and row["open"]["full_read"].startswith("skipped: 1000 receipts"), row
    assert "full_read_s" not in row["open"] and row["open"]["ours_s"] > 0, row
    daemon = row["daemon"]
    assert 0 < daemon["ready_s"] <= daemon["first_deploy_s"] and daemon["deploy_errors"] == 0, daemon
    assert daemon["first_start_on_dir"] is True, daemon
    assert set(WORKERS) <= set(daemon["rss_mb_growth_by_role_halves"]), daemon
    assert all(len(halves) == 2 for halves in daemon["rss_mb_growth_by_role_halves"].values()), daemon
    assert set(row["proofs"]) == {"cold", "warm"} and row["export"]["tiles_receipts_per_s"] > 0, row
    assert _size(var) >= 1000 + 2 * 21  # the daemon ran on the built dir: the first deploy and 20 more
    skipped = _scale("--data", str(var), "--deploys", "0", "--proofs", "5", "--export-max", "10")
    assert skipped.returncode == 0, skipped.stderr[-3000:]
    again = json.loads(skipped.stdout)
    assert again["open"]["full_read_s"] >= 0 and again["export"].startswith("skipped:"), again
    assert again["receipts"] > 1000 and again["daemon"]["deploys"] == 0, again
    assert again["daemon"]["first_start_on_dir"] is False, again


def test_data_without_a_ledger_or_with_quick_is_a_usage_error(tmp_path: Path) -> None:
    done = _scale("--data", str(tmp_path))
    assert done.returncode == 2 and "no ledger.sqlite3" in done.stderr, done.stderr
    assert list(tmp_path.iterdir()) == []  # nothing created there
    assert _scale("--quick", "--data", str(tmp_path)).returncode == 2  # --quick builds its own sizes
