"""Crash safety: SIGKILL an appending process at arbitrary moments; nothing acknowledged is lost."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

from tai_autonomics.ledger import DB_FILE, Ledger, SQLiteStore, leaf_hash, load_ledger_key, verify_store

CHILD = Path(__file__).with_name("crash_child.py")
REPO = Path(__file__).resolve().parents[2]
KILLS = 22
SIGNED_KILLS = 8


def _kill_mid_stream(tmp_path: Path, round_: int, want: int, *extra: str) -> list[str]:
    """Run the child until it acknowledged ``want`` receipts, SIGKILL it; every id it acknowledged."""
    acked: list[str] = []
    child = subprocess.Popen(
        [sys.executable, str(CHILD), str(tmp_path), str(round_), *extra], stdout=subprocess.PIPE, text=True, cwd=REPO
    )
    try:
        for count, line in enumerate(child.stdout, start=1):
            acked.append(line.strip())
            if count >= want:
                break
        child.kill()
        # acks the child wrote before it died are still in the pipe: they count too
        acked.extend(line.strip() for line in child.stdout)
    finally:
        child.kill()
        child.wait()
        child.stdout.close()
    assert child.returncode == -9, f"round {round_}: child ended by itself ({child.returncode})"
    return acked


def test_sigkill_loses_no_acknowledged_receipt(tmp_path: Path) -> None:
    key = load_ledger_key(data_dir=tmp_path)  # created here, so children only read it
    rng = random.Random(20261125)
    acked: list[str] = []
    for round_ in range(KILLS):
        acked += _kill_mid_stream(tmp_path, round_, rng.randint(1, 60))
        ledger = Ledger.open(SQLiteStore(tmp_path / DB_FILE), key)
        try:
            for receipt_id in acked:
                assert ledger.receipt(receipt_id).id == receipt_id
            verify_store(SQLiteStore(tmp_path / DB_FILE, readonly=True), key.public)
        finally:
            ledger.close()
    assert len(set(acked)) == len(acked) >= KILLS


def test_sigkill_between_appends_and_their_checkpoint_loses_nothing_and_proves_it(tmp_path: Path) -> None:
    """Checkpoints are signed after commits, not in them (docs/specification.md §4): a process
    killed in between leaves receipts no checkpoint covers. Every acknowledged one is there, and
    the next open serves its inclusion proof against a checkpoint it signs on demand."""
    key = load_ledger_key(data_dir=tmp_path)
    rng = random.Random(20261205)
    acked: list[str] = []
    behind = 0
    for round_ in range(SIGNED_KILLS):
        acked += _kill_mid_stream(tmp_path, round_, rng.randint(5, 60), "4")
        store = SQLiteStore(tmp_path / DB_FILE, readonly=True)
        try:
            latest = store.checkpoint()
            behind += store.size() > (latest.size if latest is not None else 0)
        finally:
            store.close()
        ledger = Ledger.open(SQLiteStore(tmp_path / DB_FILE), key)
        try:
            checkpoint = ledger.checkpoint()
            assert checkpoint.size == ledger.size and ledger.unsigned == 0
            for receipt_id in acked:
                receipt = ledger.receipt(receipt_id)
                ledger.inclusion_proof(receipt_id).verify(leaf_hash(receipt.data), checkpoint.root)
        finally:
            ledger.close()
    assert behind >= SIGNED_KILLS // 2, f"only {behind} kills fell between an append and its checkpoint"
    assert verify_store(SQLiteStore(tmp_path / DB_FILE, readonly=True), key.public).tree_size >= len(acked)
