"""Backup and restore through the dev daemon (docs/backup.md): ``ledger backup`` taken while a
stream of insured deploys goes on, restored into a fresh data dir, then ``ledger verify`` passes
there, the restored root is the backup's, and a consistency proof from the backup's checkpoint
to the live log (asked of the daemon's gateway) verifies. A bad backup or a used data dir is
refused with our error and writes nothing. A daemon started on the restored data dir goes on
from it."""

from __future__ import annotations

import json
import shutil
import threading

from tai_autonomics.ledger import SQLiteStore, open_checkpoint, verify_consistency
from tai_autonomics.ledger.backup import MANIFEST_FILE, check_backup
from tai_autonomics.ledger.keys import DEV_KEY_FILE
from tai_autonomics.ledger.proofs import ConsistencyProof
from tai_autonomics.ledger.verify import RECEIPTS_FILE
from tests.e2e import DEPLOY, client, dev_daemon
from tests.daemon import run_cli

MORE_AFTER_BACKUP = 3  # deploys the stream completes after the backup ended, before it stops


def test_a_backup_taken_during_a_deploy_stream_restores_into_a_fresh_data_dir_and_proves_itself(tmp_path) -> None:
    (tmp_path / "live").mkdir()
    with dev_daemon(tmp_path / "live") as daemon:
        completed: list[str] = []
        first_done, backup_done, stop = threading.Event(), threading.Event(), threading.Event()
        errors: list[BaseException] = []

        def stream() -> None:
            after = 0
            try:
                with client(daemon, "service") as service:
                    while not stop.is_set():
                        result = service.create_deployment({**DEPLOY, "customer_ref": f"c-{len(completed)}"})
                        assert result["status"] == "completed", result
                        completed.append(result["operation_id"])
                        first_done.set()
                        if backup_done.is_set():
                            after += 1
                            if after >= MORE_AFTER_BACKUP:
                                return
            except BaseException as exc:  # reported by the test, never lost in the thread
                errors.append(exc)
                first_done.set()

        deployer = threading.Thread(target=stream)
        deployer.start()
        try:
            assert first_done.wait(60), "the first deploy did not complete"
            before = len(completed)
            backup = tmp_path / "backup"
            backed = run_cli("ledger", "backup", "--out", str(backup), "--data-dir", str(daemon.data_dir))
        finally:
            backup_done.set()
            deployer.join(120)
            stop.set()
        assert not errors, errors
        assert backed.returncode == 0, backed.stderr
        assert before >= 1 and len(completed) >= before + MORE_AFTER_BACKUP  # it ran during the stream
        manifest = json.loads((backup / MANIFEST_FILE).read_bytes())
        checked = check_backup(backup)
        assert (checked.checkpoint.size, checked.checkpoint.root.hex()) == (manifest["tree_size"], manifest["root"])

        fresh = tmp_path / "restored" / "var"  # the data dir a daemon in tmp_path / "restored" uses
        fresh.mkdir(parents=True)
        shutil.copy(daemon.data_dir / DEV_KEY_FILE, fresh / DEV_KEY_FILE)  # the key the restored ledger goes on with
        restored = run_cli("ledger", "restore", str(backup), "--data-dir", str(fresh))
        assert restored.returncode == 0, restored.stderr
        assert json.loads(restored.stdout)["tree_size"] == manifest["tree_size"]
        verified = run_cli("ledger", "verify", "--data-dir", str(fresh))
        assert verified.returncode == 0, verified.stdout + verified.stderr
        assert json.loads(verified.stdout)["tree_size"] == manifest["tree_size"]
        store = SQLiteStore(fresh / "ledger.sqlite3", readonly=True)
        try:
            assert store.checkpoint().note == checked.checkpoint.note and store.size() == manifest["tree_size"]
        finally:
            store.close()

        with client(daemon, "auditor") as auditor:  # the live log went on past the backup, and extends it
            live = open_checkpoint(auditor.get_checkpoint()["note"], checked.public)
            assert live.size > checked.checkpoint.size
            proof = ConsistencyProof.from_json(auditor.get_consistency(checked.checkpoint.size, live.size))
        verify_consistency(checked.checkpoint.size, live.size, checked.checkpoint.root, live.root, proof.hashes)

        again = run_cli("ledger", "restore", str(backup), "--data-dir", str(fresh))
        assert again.returncode == 2 and "[ledger_restore_refused]" in again.stderr
        lines = (backup / RECEIPTS_FILE).read_bytes().split(b"\n")
        number = next(n for n, line in enumerate(lines, start=1) if b'"sku-001"' in line)  # a deploy's receipt
        lines[number - 1] = lines[number - 1].replace(b'"sku-001"', b'"sku-002"', 1)
        (backup / RECEIPTS_FILE).write_bytes(b"\n".join(lines))
        other = tmp_path / "other"
        bad = run_cli("ledger", "restore", str(backup), "--data-dir", str(other))
        assert bad.returncode == 2 and "[ledger_backup_invalid]" in bad.stderr
        assert f"{RECEIPTS_FILE} line {number}" in bad.stderr and not other.exists()

    with dev_daemon(tmp_path / "restored") as restored_daemon:  # the daemon goes on from the restored ledger
        with client(restored_daemon, "service") as service:
            assert service.create_deployment({**DEPLOY, "customer_ref": "after-restore"})["status"] == "completed"
        with client(restored_daemon, "auditor") as auditor:
            grown = open_checkpoint(auditor.get_checkpoint()["note"], checked.public)
            proof = ConsistencyProof.from_json(auditor.get_consistency(checked.checkpoint.size, grown.size))
        verify_consistency(checked.checkpoint.size, grown.size, checked.checkpoint.root, grown.root, proof.hashes)
    assert run_cli("ledger", "verify", "--data-dir", str(fresh)).returncode == 0
