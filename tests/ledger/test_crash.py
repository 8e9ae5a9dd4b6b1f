"""Crash safety: SIGKILL an appending process at arbitrary moments; nothing acknowledged is lost."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

from tai_autonomics.ledger import DB_FILE, Ledger, SQLiteStore, load_ledger_key, verify_store

CHILD = Path(__file__).with_name("crash_child.py")
REPO = Path(__file__).resolve().parents[2]
KILLS = 22


def test_sigkill_loses_no_acknowledged_receipt(tmp_path: Path) -> None:
    key = load_ledger_key(data_dir=tmp_path)  # created here, so children only read it
    rng = random.Random(20261125)
    acked: list[str] = []
    for round_ in range(KILLS):
        child = subprocess.Popen(
            [sys.executable, str(CHILD), str(tmp_path), str(round_)], stdout=subprocess.PIPE, text=True, cwd=REPO
        )
        try:
            want = rng.randint(1, 60)
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
        ledger = Ledger.open(SQLiteStore(tmp_path / DB_FILE), key)
        try:
            for receipt_id in acked:
                assert ledger.receipt(receipt_id).id == receipt_id
            verify_store(SQLiteStore(tmp_path / DB_FILE, readonly=True), key.public)
        finally:
            ledger.close()
    assert len(set(acked)) == len(acked) >= KILLS
