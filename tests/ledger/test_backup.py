"""``ledger backup`` / ``ledger restore`` (docs/backup.md), on SQLite and the Firestore emulator:
a restored store is the same ledger (root, checkpoint, counters, records, claims, prices, tiles,
entry bundles: ``ledger verify`` passes), a backup taken while appends go on is consistent, and a
backup with any byte changed, cut short or missing a file is refused, naming the file, with
nothing written."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tai_autonomics.ledger import (
    Ledger,
    LedgerError,
    LedgerKey,
    LedgerStore,
    ReceiptDraft,
    SQLiteStore,
    export,
    verify_consistency,
    verify_store,
)
from tai_autonomics.ledger.backup import (
    BACKUP_FILES,
    MANIFEST_FILE,
    BackupInvalid,
    RestoreRefused,
    backup_ledger,
    check_backup,
    restore_ledger,
)
from tai_autonomics.ledger.firestore_store import FirestoreStore
from tai_autonomics.ledger.keys import DEV_KEY_FILE
from tai_autonomics.ledger.operations import ClaimKey, CloseOperation, Limit, OpenOperation, OperationExists
from tai_autonomics.ledger.tiles import TILE_WIDTH, entry_bundle
from tai_autonomics.ledger.verify import RECEIPTS_FILE
from tests.helpers import EMULATOR_PROJECT

POLICY = "policy-1"
LIMIT = Limit(10_000, Decimal(10_000))


def intent(op: str, key: str = "", sku: str = "sku-1") -> ReceiptDraft:
    """A deploy intent that claims ``key`` and reserves coverage of ``sku``."""
    coverage = {"sku_id": sku, "cost": "1.5", **LIMIT.to_json()}
    return ReceiptDraft("deploy.intent", "prod", {"sku_id": sku, "key": key, "fingerprint": "f", "coverage": coverage},
                        chain=POLICY, operation_id=op, effect=OpenOperation("deploy", key, "f"))


def outcome(op: str, status: str) -> ReceiptDraft:
    return ReceiptDraft(f"deploy.{status}", "prod", {}, chain=POLICY, operation_id=op, effect=CloseOperation(status))


def _fill(ledger: Ledger, operations: int) -> None:
    """Deploys that complete, fail or are interrupted (keys claimed, coverage reserved across
    months' worth of SKUs), quotes (the pricing index) and advisory receipts, in batches."""
    batch: list[ReceiptDraft] = []
    for n in range(operations):
        sku = f"sku-{n % 7}"
        ledger.append(intent(f"op-{n}", key=f"key-{n}" if n % 5 else "", sku=sku))
        batch.append(outcome(f"op-{n}", ("completed", "failed", "interrupted")[n % 3]))
        batch.append(ReceiptDraft("pricing.quoted", "prod", {"customer_id": f"c-{n % 4}", "value": f"{n}.5"},
                                  chain=POLICY))
        batch.append(ReceiptDraft("eval.note", "eval", {"n": n}))
        if len(batch) >= 30:
            ledger.append_batch(batch)
            batch = []
    if batch:
        ledger.append_batch(batch)


def _same_ledger(source: LedgerStore, restored: LedgerStore, key: LedgerKey) -> None:
    """Everything a reader or the daemon reads is the same in both stores."""
    verify_store(restored, key.public)
    assert restored.size() == source.size()
    assert restored.checkpoint().note == source.checkpoint().note
    assert restored.usage() == source.usage() and dict(restored.prices()) == dict(source.prices())
    for n in range(0, source.size(), 7):
        assert restored.operation(f"op-{n}") == source.operation(f"op-{n}")
        assert restored.claim(ClaimKey("deploy", f"key-{n}")) == source.claim(ClaimKey("deploy", f"key-{n}"))
    data = [leaf.data for leaf in restored.leaves()]
    assert data == [leaf.data for leaf in source.leaves()]
    for index in range(len(data) // TILE_WIDTH):  # written by the restore, as the appends wrote them
        assert restored.bundle(index) == entry_bundle(data[index * TILE_WIDTH : (index + 1) * TILE_WIDTH])


@pytest.fixture
def sqlite_source(tmp_path: Path, key: LedgerKey):
    ledger = Ledger.open(SQLiteStore(tmp_path / "source.sqlite3"), key)
    _fill(ledger, 80)
    yield ledger
    ledger.close()


def _kind(ledger: Ledger) -> str:
    return "sqlite" if isinstance(ledger._store, SQLiteStore) else "firestore"


def _fresh(kind: str, tmp_path: Path) -> LedgerStore:
    if kind == "sqlite":
        return SQLiteStore(tmp_path / f"restored-{uuid.uuid4().hex}.sqlite3")
    return FirestoreStore(f"restored-{uuid.uuid4().hex}", project=EMULATOR_PROJECT)


def test_a_restored_store_is_the_same_ledger(open_store, key: LedgerKey, tmp_path: Path) -> None:
    """Over a tile boundary (256 leaves), in batches that are not the original ones."""
    source = Ledger.open(open_store(), key)
    _fill(source, 80)
    kind = _kind(source)
    manifest = backup_ledger(source, tmp_path / "backup", store_kind=kind)
    assert (manifest.size, manifest.store) == (source.size, kind) and manifest.size > 256
    target = _fresh(kind, tmp_path)
    try:
        report = restore_ledger(check_backup(tmp_path / "backup"), target, key)
        assert (report.size, report.root) == (manifest.size, manifest.root) and report.batches >= 1
        _same_ledger(source._store, target, key)
    finally:
        target.close()
        source.close()


def test_a_sqlite_backup_restores_into_firestore_in_batches_firestore_takes(
        sqlite_source: Ledger, key: LedgerKey, tmp_path: Path, firestore_emulator: str) -> None:
    backup_ledger(sqlite_source, tmp_path / "backup", store_kind="sqlite")
    target = _fresh("firestore", tmp_path)
    try:
        report = restore_ledger(check_backup(tmp_path / "backup"), target, key)
        assert report.batches >= 4  # 320 receipts in batches under Firestore's 500 writes
        _same_ledger(sqlite_source._store, target, key)
        # the restored claims still refuse a second deploy with a used key
        restored = Ledger.open(target, key)
        with pytest.raises(OperationExists, match="already names operation op-1"):
            restored.append(intent("op-new", key="key-1"))
    finally:
        target.close()


def test_a_backup_taken_while_appends_go_on_is_a_consistent_prefix(
        open_store, key: LedgerKey, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The backup stops at the checkpoint it read first while another instance appends (on
    Firestore, another daemon); the live log goes on past it, and the restored tree is a prefix
    of the live one (a consistency proof verifies)."""
    def appending(done: int, total: int) -> None:  # the daemon appending while the backup is written
        writer.append(ReceiptDraft("eval.note", "eval", {"during": done}))

    source = Ledger.open(open_store(), key)
    _fill(source, 80)
    writer = Ledger.open(open_store(), key)
    kind = _kind(source)
    size_before = source.size
    monkeypatch.setattr(export, "_PROGRESS_EVERY", 16)  # hear progress (and append) many times
    manifest = backup_ledger(source, tmp_path / "backup", store_kind=kind, progress=appending)
    live = source.checkpoint()
    assert manifest.size == size_before < live.size == writer.size
    target = _fresh(kind, tmp_path)
    try:
        restore_ledger(check_backup(tmp_path / "backup"), target, key)
        verify_store(target, key.public)
        proof = source.consistency_proof(manifest.size, live.size)
        verify_consistency(manifest.size, live.size, manifest.root, live.root, proof.hashes)
    finally:
        target.close()


def test_a_non_empty_store_another_key_or_log_is_refused_and_left_as_it_was(
        sqlite_source: Ledger, key: LedgerKey, tmp_path: Path) -> None:
    backup_ledger(sqlite_source, tmp_path / "backup", store_kind="sqlite")
    checked = check_backup(tmp_path / "backup")
    occupied = Ledger.open(SQLiteStore(tmp_path / "occupied.sqlite3"), key)
    occupied.append(ReceiptDraft("eval.note", "eval", {}))
    before = occupied.checkpoint()
    with pytest.raises(RestoreRefused, match="holds 1 receipts"):
        restore_ledger(checked, occupied._store, key)
    assert occupied._store.size() == 1 and occupied._store.checkpoint() == before
    occupied.close()
    empty = SQLiteStore(tmp_path / "empty.sqlite3")
    with pytest.raises(RestoreRefused, match="did not sign this backup"):
        restore_ledger(checked, empty, LedgerKey.generate())
    with pytest.raises(RestoreRefused, match="the target is configured for 'another/log'"):
        restore_ledger(checked, empty, key, origin="another/log")
    assert empty.size() == 0 and empty.checkpoint() is None
    empty.close()


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, LedgerKey]:
    """A small backup (two tiles' worth of proofs is not needed to catch a byte), taken once."""
    key = LedgerKey.generate()
    base = tmp_path_factory.mktemp("pristine")
    ledger = Ledger.open(SQLiteStore(base / "source.sqlite3"), key)
    _fill(ledger, 6)
    backup_ledger(ledger, base / "backup", store_kind="sqlite")
    ledger.close()
    return base / "backup", key


def _refused_with_nothing_written(backup: Path, key: LedgerKey) -> BackupInvalid:
    with tempfile.TemporaryDirectory(prefix="restore-target-") as target_dir:
        with pytest.raises(BackupInvalid) as refused:
            checked = check_backup(backup)
            store = SQLiteStore(Path(target_dir) / "ledger.sqlite3")
            try:
                restore_ledger(checked, store, key)
            finally:
                store.close()
        assert not (Path(target_dir) / "ledger.sqlite3").exists()
    return refused.value


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_changed_byte_is_refused_naming_the_file_and_nothing_is_written(
        pristine: tuple[Path, LedgerKey], data: st.DataObject) -> None:
    source, key = pristine
    name = data.draw(st.sampled_from([*BACKUP_FILES, MANIFEST_FILE]), label="file")
    with tempfile.TemporaryDirectory(prefix="mutated-") as scratch:
        backup = Path(scratch) / "backup"
        shutil.copytree(source, backup)
        content = (backup / name).read_bytes()
        offset = data.draw(st.integers(0, len(content) - 1), label="offset")
        byte = data.draw(st.integers(0, 255).filter(lambda b: b != content[offset]), label="byte")
        (backup / name).write_bytes(content[:offset] + bytes([byte]) + content[offset + 1:])
        refused = _refused_with_nothing_written(backup, key)
    where = str(refused.detail["where"])
    assert where.split(" ")[0] in (*BACKUP_FILES, MANIFEST_FILE), refused.message
    if name == RECEIPTS_FILE and where.startswith(RECEIPTS_FILE):  # the entry: the line the byte is on
        line = content[:offset].count(b"\n") + 1
        assert where == f"{RECEIPTS_FILE} line {line}", refused.message


@pytest.mark.parametrize("name", [*BACKUP_FILES, MANIFEST_FILE])
def test_a_truncated_or_missing_file_is_refused_and_nothing_is_written(
        pristine: tuple[Path, LedgerKey], tmp_path: Path, name: str) -> None:
    source, key = pristine
    for cut in ("truncated", "missing"):
        backup = tmp_path / f"{cut}-backup"
        shutil.copytree(source, backup)
        if cut == "missing":
            (backup / name).unlink()
        else:
            content = (backup / name).read_bytes()
            (backup / name).write_bytes(content[: len(content) // 2])
        refused = _refused_with_nothing_written(backup, key)
        assert name in refused.message or name in str(refused.detail.get("where")), refused.message


def test_a_backup_goes_into_a_new_directory(sqlite_source: Ledger, tmp_path: Path) -> None:
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "x").write_text("x")
    with pytest.raises(LedgerError, match="not an empty directory"):
        backup_ledger(sqlite_source, tmp_path / "used", store_kind="sqlite")


def test_the_cli_backs_up_beside_a_reader_and_restores_into_a_fresh_data_dir(key: LedgerKey, tmp_path: Path) -> None:
    """``ledger backup --data-dir`` while the ledger is open, then ``ledger restore DIR --data-dir
    NEW`` (the key copied there, as docs/backup.md says), then ``ledger verify``; a second restore
    is refused, and so is a bad backup, before the new data dir is even created."""
    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir()
    new.mkdir()
    (old / DEV_KEY_FILE).write_bytes(key.private_pem())
    shutil.copy(old / DEV_KEY_FILE, new / DEV_KEY_FILE)
    source = Ledger.open(SQLiteStore(old / "ledger.sqlite3"), key)
    _fill(source, 80)

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "tai_autonomics", "ledger", *args], capture_output=True,
                              text=True, timeout=120, cwd=tmp_path)

    backed = cli("backup", "--out", str(tmp_path / "b"), "--data-dir", str(old))
    assert backed.returncode == 0, backed.stderr
    restored = cli("restore", str(tmp_path / "b"), "--data-dir", str(new))
    assert restored.returncode == 0, restored.stderr
    assert "ledger restore: 320/320 receipts" in restored.stderr
    assert cli("verify", "--data-dir", str(new)).returncode == 0
    again = cli("restore", str(tmp_path / "b"), "--data-dir", str(new))
    assert again.returncode == 2 and "[ledger_restore_refused]" in again.stderr
    (tmp_path / "b" / RECEIPTS_FILE).write_bytes(b"{}\n")
    bad = cli("restore", str(tmp_path / "b"), "--data-dir", str(tmp_path / "other"))
    assert bad.returncode == 2 and "[ledger_backup_invalid]" in bad.stderr and RECEIPTS_FILE in bad.stderr
    assert not (tmp_path / "other").exists()
    source.close()


def test_backup_and_restore_have_help() -> None:
    for command in ("backup", "restore"):
        result = subprocess.run([sys.executable, "-m", "tai_autonomics", "ledger", command, "--help"],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0 and "usage:" in result.stdout and "--data-dir" in result.stdout


def test_the_cli_restores_into_a_firestore_ledger_a_release_file_names_and_backs_it_up_again(
        sqlite_source: Ledger, key: LedgerKey, tmp_path: Path, firestore_emulator: str) -> None:
    """SQLite → ``ledger restore --config`` (Firestore) → ``ledger verify --config`` → ``ledger
    backup --config``: the second backup is of the same tree, and says it came from Firestore."""
    backup_ledger(sqlite_source, tmp_path / "from-sqlite", store_kind="sqlite")
    (tmp_path / DEV_KEY_FILE).write_bytes(key.private_pem())
    rel = tmp_path / "restore.toml"
    rel.write_text(f'profile = "staging"\ndata_dir = "{tmp_path / "var"}"\n[ledger]\nstore = "firestore"\n'
                   f'firestore_ledger = "restored-{uuid.uuid4().hex}"\nfirestore_project_env = "TAI_TEST_PROJECT"\n'
                   f'key_file = "{tmp_path / DEV_KEY_FILE}"\n')
    env = {**os.environ, "TAI_TEST_PROJECT": EMULATOR_PROJECT}

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "tai_autonomics", "ledger", *args, "--config", str(rel)],
                              capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env)

    restored = cli("restore", str(tmp_path / "from-sqlite"))
    assert restored.returncode == 0, restored.stderr
    verified = cli("verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    again = cli("backup", "--out", str(tmp_path / "from-firestore"))
    assert again.returncode == 0, again.stderr
    first = check_backup(tmp_path / "from-sqlite").manifest
    second = check_backup(tmp_path / "from-firestore").manifest
    assert (second.size, second.root, second.store) == (first.size, first.root, "firestore")
    receipts = [(tmp_path / name / RECEIPTS_FILE).read_bytes() for name in ("from-sqlite", "from-firestore")]
    assert receipts[0] == receipts[1]


def test_a_batch_that_opens_and_closes_an_operation_keeps_its_claim(open_store, key: LedgerKey) -> None:
    """What a restored batch does all the time (and the ledger may): the key stays claimed on
    both stores, so a second intent with it is refused with the first operation's record."""
    ledger = Ledger.open(open_store(), key)
    ledger.append_batch([intent("op-a", key="k"), outcome("op-a", "completed")])
    assert ledger.claim("deploy", "k").status == "completed"
    with pytest.raises(OperationExists, match="already names operation op-a"):
        ledger.append(intent("op-b", key="k"))
