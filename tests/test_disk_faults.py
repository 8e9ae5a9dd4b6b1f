"""The ledger's disk fails under the dev-profile daemon (issue 14, docs/reliability.md): its data
directory is a small file system this test mounts (we run as root), which then fills up or turns
read-only. Appends are refused with ``ledger_unavailable``, the mode goes to ``read_only`` (its
``mode.changed`` receipt stored once the disk allows), no half-written receipt is ever stored, and
appends resume when space returns. A corrupt or truncated database file stops the start, naming it.
"""

from __future__ import annotations

import errno
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import httpx
import pytest

from tai_autonomics.ledger import DB_FILE
from tests.e2e import DEPLOY, as_, dev_daemon, receipts, until
from tests.daemon import CLI, Daemon, release

FAST_RETRY = """
[workers.ProdMode.args]
ledger_retry_s = 0.2
"""
ATTEMPTS = 400  # deploys tried on the full disk before the WAL's slack is used up (a few dozen in practice)


def _run(*command: str) -> str:
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"{' '.join(command)}: {result.stderr}"
    return result.stdout.strip()


@contextmanager
def _mounted(point: Path, *command: str) -> Iterator[Path]:
    """``command`` mounts a file system on ``point``; it is unmounted on the way out."""
    assert os.geteuid() == 0, "these tests mount file systems: they run as root (CI does)"
    point.mkdir(exist_ok=True)
    _run(*command, str(point))
    try:
        yield point
    finally:
        subprocess.run(["umount", str(point)], capture_output=True, timeout=60)


def _fill(directory: Path) -> Path:
    """Write a file until the file system is full; returns it (delete it to give space back)."""
    filler = directory / "filler"
    with open(filler, "wb") as out:
        try:
            while True:
                out.write(b"\0" * 65536)
                out.flush()
                os.fsync(out.fileno())
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
    return filler


def _deploy(d: Daemon, key: str) -> httpx.Response:
    return d.http.post("/v1/deployments", json={**DEPLOY, "customer_ref": key},
                       headers={**as_(d, "service"), "Idempotency-Key": key})


def _mode(d: Daemon) -> dict:
    return d.http.get("/v1/mode", headers=as_(d, "service")).json()


def _verified(d: Daemon) -> None:
    """``ledger verify`` over the data directory (beside the running daemon): every receipt whole."""
    result = subprocess.run([*CLI, "ledger", "verify", "--data-dir", str(d.data_dir)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def _deploys_until_refused(d: Daemon, prefix: str) -> tuple[list[str], httpx.Response, str]:
    """Deploy until one is refused; returns the keys answered 200, the refusal and its key."""
    done = []
    for i in range(ATTEMPTS):
        key = f"{prefix}-{i}"
        answer = _deploy(d, key)
        if answer.status_code != 200:
            return done, answer, key
        done.append(key)
    raise AssertionError(f"{ATTEMPTS} deploys all stored on a disk with no space left")


def _check_every_acknowledged_deploy(d: Daemon, keys: list[str]) -> None:
    """Each deploy answered 200 has its intent and its outcome in the ledger."""
    kinds: dict[str, list[str]] = {}
    for receipt in receipts(d):
        if receipt["kind"].startswith("deploy."):
            kinds.setdefault(receipt["payload"].get("key") or receipt["operation_id"], []).append(receipt["kind"])
    intents = {r["operation_id"]: r["payload"]["key"] for r in receipts(d) if r["kind"] == "deploy.intent"}
    outcomes = {intents.get(r["operation_id"]) for r in receipts(d) if r["kind"] == "deploy.completed"}
    missing = [key for key in keys if key not in set(intents.values()) or key not in outcomes]
    assert not missing, f"acknowledged deploys without both receipts: {missing}"


def test_full_disk_refuses_appends_goes_read_only_and_resumes_when_space_returns(tmp_path: Path) -> None:
    with _mounted(tmp_path / "var", "mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs") as var, \
            dev_daemon(tmp_path, workers=FAST_RETRY) as d:
        assert _deploy(d, "before").status_code == 200
        size = d.http.get("/v1/ledger/checkpoint", headers=as_(d, "auditor")).json()["size"]
        filler = _fill(var)

        done, refused, refused_key = _deploys_until_refused(d, "full")
        assert refused.status_code == 503 and refused.headers["retry-after"] == "1", refused.text
        assert refused.json()["error"]["code"] == "ledger_unavailable", refused.text
        assert str(var) not in refused.text  # the file's path stays in the daemon's log
        until(lambda: _mode(d)["mode"] == "read_only", timeout=10, what="read_only while the disk is full")
        assert _mode(d)["reason"] == "ledger: the disk is full"
        again = _deploy(d, "while-full")
        assert (again.status_code, again.json()["error"]["code"]) == (503, "mode_refused"), again.text
        # reads work, and what is stored is whole: every acknowledged deploy, no half-written receipt
        assert d.http.get("/v1/ledger/checkpoint", headers=as_(d, "auditor")).json()["size"] >= size
        _check_every_acknowledged_deploy(d, ["before", *done])
        _verified(d)
        assert not [r for r in receipts(d) if r["kind"] == "mode.changed" and r["payload"]["to"] == "read_only"]

        filler.unlink()
        until(lambda: _mode(d)["mode"] == "prod", timeout=10, what="prod once space returns")
        changes = [r["payload"] for r in receipts(d) if r["kind"] == "mode.changed"][-2:]
        assert changes == [{"from": "prod", "to": "read_only", "reason": "ledger: the disk is full"},
                           {"from": "read_only", "to": "prod", "reason": "the ledger stores receipts again"}]
        # the refused deploy's key finishes it (or, if nothing of it was stored, runs it afresh)
        finished = _deploy(d, refused_key)
        assert finished.status_code == 200 and finished.json()["status"] == "completed", finished.text
        assert _deploy(d, "after").status_code == 200
        _check_every_acknowledged_deploy(d, ["before", *done, refused_key, "after"])
        _verified(d)


def _ext4(tmp_path: Path) -> list[str]:
    assert shutil.which("mkfs.ext4"), "mkfs.ext4 is missing (Debian: e2fsprogs)"
    image = tmp_path / "disk.img"
    with open(image, "wb") as out:
        out.truncate(32 * 2**20)
    _run("mkfs.ext4", "-q", "-F", str(image))
    return ["mount", "-o", "loop,errors=remount-ro", str(image)]


def test_disk_turning_read_only_refuses_appends_and_a_restart_after_repair_has_every_receipt(tmp_path: Path) -> None:
    """ext4 remounts itself read-only on an error (errors=remount-ro): the kernel's own trigger
    for one. It does not come back read-write while mounted, so the operator stops the daemon,
    repairs the disk and starts it again: everything acknowledged is there and appends work."""
    mount = _ext4(tmp_path)
    with _mounted(tmp_path / "var", *mount) as var:
        device = Path(_run("findmnt", "-no", "SOURCE", str(var))).name
        with dev_daemon(tmp_path, workers=FAST_RETRY) as d:
            done = [key for key in ("one", "two") if _deploy(d, key).status_code == 200]
            assert done == ["one", "two"]
            Path(f"/sys/fs/ext4/{device}/trigger_fs_error").write_text("1")
            assert "ro" in _run("findmnt", "-no", "OPTIONS", str(var)).split(",") or \
                "emergency_ro" in _run("findmnt", "-no", "OPTIONS", str(var))
            refused = _deploy(d, "read-only-disk")
            assert refused.status_code == 503 and refused.json()["error"]["code"] == "ledger_unavailable", \
                refused.text
            until(lambda: _mode(d)["mode"] == "read_only", timeout=10, what="read_only on a read-only disk")
            assert _mode(d)["reason"] == "ledger: the file system is read-only"
            _check_every_acknowledged_deploy(d, done)
    repair = subprocess.run(["e2fsck", "-fy", str(tmp_path / "disk.img")], capture_output=True, timeout=60)
    assert repair.returncode in (0, 1), repair.stdout  # 1: errors were corrected
    with _mounted(tmp_path / "var", *mount), dev_daemon(tmp_path, workers=FAST_RETRY) as d:
        assert _mode(d)["mode"] == "prod"
        _verified(d)
        _check_every_acknowledged_deploy(d, done)
        assert _deploy(d, "after-repair").status_code == 200


@pytest.mark.parametrize(("damage", "why"), [
    (lambda data: b"not a database at all" * 100, "file is not a database"),
    (lambda data: data[:len(data) // 2], "database disk image is malformed"),
])
def test_a_corrupt_or_truncated_database_stops_the_start_naming_the_file(tmp_path: Path, damage, why) -> None:
    with dev_daemon(tmp_path) as d:
        for i in range(40):
            assert _deploy(d, f"k{i}").status_code == 200
        database = d.data_dir / DB_FILE
    with closing(sqlite3.connect(database)) as db:  # everything in the main file, the WAL empty
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    database.write_bytes(damage(database.read_bytes()))
    for side in ("-wal", "-shm"):
        Path(f"{database}{side}").unlink(missing_ok=True)

    daemon = Daemon(tmp_path, release(tmp_path), name="again")
    try:
        code = daemon.proc.wait(60)
    finally:
        daemon.kill()
    output = daemon.out.read_text()
    assert code != 0, output[-2000:]
    assert str(database) in output and why in output, output[-2000:]
    assert "Traceback" not in output, output[-3000:]
