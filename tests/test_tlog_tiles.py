"""The ledger as a C2SP tlog-tiles log, read by a client that is not ours: Go's
``golang.org/x/mod/sumdb/tlog`` (``TileHashReader``) and ``sumdb/note``, from Debian's
``golang-go`` and ``golang-golang-x-mod-dev`` (installed by ``.ci/run``), built offline here.

It reads the gateway's ``/tlog/`` routes of a running daemon and a ``ledger export --tiles``
directory, checks the signed checkpoint, every entry's inclusion and the consistency from an
older signed checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tai_autonomics.cli import main
from tai_autonomics.ledger import DB_FILE, Ledger, ReceiptDraft, SQLiteStore, load_ledger_key
from tests.e2e import as_, dev_daemon

READER = Path(__file__).with_name("tlogreader") / "main.go"
GOPATH = Path("/usr/share/gocode")


@pytest.fixture(scope="module")
def tlogreader(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Go's tile client, built without a network: GOPATH mode on Debian's packaged sources."""
    go = shutil.which("go")
    if go is None or not (GOPATH / "src/golang.org/x/mod/sumdb/tlog").is_dir():
        pytest.fail("Go and golang.org/x/mod are missing: apt-get install golang-go golang-golang-x-mod-dev")
    out = tmp_path_factory.mktemp("go") / "tlogreader"
    env = {**os.environ, "GOPATH": str(GOPATH), "GO111MODULE": "off", "GOFLAGS": "", "GOPROXY": "off",
           "GOCACHE": str(out.parent / "cache")}
    subprocess.run([go, "build", "-o", str(out), str(READER)], check=True, env=env, timeout=600)
    return out


def _read(reader: Path, base: str, verifier_key: str, old_checkpoint: Path, token: str = "") -> dict:
    done = subprocess.run([str(reader), base, verifier_key, str(old_checkpoint)], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "TLOG_TOKEN": token})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _seeded(data_dir: Path, count: int, old_size: int, old: Path) -> str:
    """A dev-profile ledger of ``count`` receipts in ``data_dir``; the signed checkpoint of
    ``old_size`` written to ``old``. Returns the verifier key of its checkpoints."""
    key = load_ledger_key(data_dir=data_dir)
    ledger = Ledger.open(SQLiteStore(data_dir / DB_FILE), key)
    for start in range(0, count, 200):
        ledger.append_batch([ReceiptDraft("deploy.intent", "prod", {"n": n}, chain="policy-1")
                             for n in range(start, min(count, start + 200))])
        if ledger.size == old_size:  # an append signs no checkpoint: a read signs one on demand
            old.write_text(ledger.checkpoint().note)
    ledger.close()
    return key.public.note_verifier_key(ledger.origin)


def test_an_exported_tiles_directory_is_read_and_proven_by_go(tmp_path: Path, tlogreader: Path, capsys) -> None:
    data_dir, old = tmp_path / "var", tmp_path / "old-checkpoint"
    verifier_key = _seeded(data_dir, 600, 200, old)  # two full level-0 tiles, a partial one, a partial level 1
    assert main(["ledger", "export", "--data-dir", str(data_dir)]) == 2  # neither --out nor --tiles
    assert "--tiles" in capsys.readouterr().err
    out = tmp_path / "tiles"
    assert main(["ledger", "export", "--data-dir", str(data_dir), "--tiles", str(out)]) == 0
    assert json.loads(capsys.readouterr().out)["tree_size"] == 600
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert written == ["checkpoint", "tile/0/000", "tile/0/001", "tile/0/002.p/88", "tile/1/000.p/2",
                       "tile/entries/000", "tile/entries/001", "tile/entries/002.p/88"]
    result = _read(tlogreader, str(out), verifier_key, old)
    assert (result["size"], result["entries_checked"], result["consistent_from"]) == (600, 600, 200)


def test_a_running_daemon_serves_its_log_as_tiles_that_go_verifies(tmp_path: Path, tlogreader: Path) -> None:
    old = tmp_path / "old-checkpoint"
    verifier_key = _seeded(tmp_path / "var", 300, 200, old)  # the dev daemon's data directory and key
    with dev_daemon(tmp_path) as d:
        auditor = as_(d, "auditor")
        checkpoint = d.http.get("/tlog/checkpoint", headers=auditor)
        assert checkpoint.headers["cache-control"] == "no-cache"
        size = checkpoint.text.split("\n")[1]
        result = _read(tlogreader, f"http://127.0.0.1:{d.port}/tlog", verifier_key, old, token=d.tokens["auditor"])
        assert result["size"] == result["entries_checked"] == int(size) > 256
        full = d.http.get("/tlog/tile/0/000", headers=auditor)
        assert (full.status_code, len(full.content), full.headers["cache-control"]) == \
            (200, 8192, "public, max-age=31536000, immutable")
        partial = d.http.get(f"/tlog/tile/0/001.p/{int(size) - 256}", headers=auditor)
        assert (partial.status_code, partial.headers["cache-control"]) == (200, "no-cache")
        assert partial.content[:32] == d.http.get("/tlog/tile/0/001.p/1", headers=auditor).content
        for missing in ("0/002", "0/001", "entries/x001/000", "0/x000/001", "0/001.p/0", "9/000"):
            assert d.http.get(f"/tlog/tile/{missing}", headers=auditor).status_code == 404, missing
        assert d.http.get("/tlog/tile/0/000").status_code == 401
        assert d.http.get("/tlog/tile/0/000", headers=as_(d, "service")).status_code == 403
