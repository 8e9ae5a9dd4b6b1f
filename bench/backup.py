"""Backup and restore benchmark (docs/backup.md): prints one JSON object.

Builds a SQLite ledger of N receipts in a temporary directory (deploys that open and close
operations with idempotency keys and coverage, as the daemon writes them, in batches of 256),
then measures in the same run:
  * ``backup_ledger`` (the export plus the manifest's digests), receipts/s;
  * SQLite's own online backup of the same file (``sqlite3.Connection.backup``), the baseline a
    copy of the database alone costs;
  * ``check_backup`` (every signature, proof and digest) and ``restore_ledger`` into a fresh
    SQLite store (the writes, the recomputed indexes, the final open), receipts/s;
  * the extrapolation of backup + restore to 1,000,000 receipts (the plan: restore < 1 h), and
    the process's peak RSS (building, backing up and restoring in one process).

Usage: python bench/backup.py [--receipts N] [--workers W]
"""

from __future__ import annotations

import argparse
import json
import resource
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

from tai_autonomics.ledger import Ledger, LedgerKey, ReceiptDraft, SQLiteStore
from tai_autonomics.ledger.backup import backup_ledger, check_backup, restore_ledger
from tai_autonomics.ledger.operations import CloseOperation, OpenOperation

_BATCH = 256
_COVERAGE = {"sku_id": "sku-001", "cost": "12.5", "limit_count": 10_000_000, "limit_cost": "1000000000"}


def _deploys(start: int, count: int) -> list[ReceiptDraft]:
    """``count`` receipts from operation ``start // 2`` on: each operation an intent then its outcome."""
    drafts = []
    for n in range(start, start + count):
        op, chain, key = f"op-{n // 2}", f"policy-{n // 2 % 4}", f"key-{n // 2}"
        if n % 2 == 0:
            drafts.append(ReceiptDraft("deploy.intent", "prod", {"key": key, "fingerprint": "f", "coverage": _COVERAGE,
                                                                  "region": "europe-west1"},
                                       chain=chain, operation_id=op, effect=OpenOperation("deploy", key, "f")))
        else:
            drafts.append(ReceiptDraft("deploy.completed", "prod", {"status": "ok"}, chain=chain, operation_id=op,
                                       effect=CloseOperation("completed")))
    return drafts


def _build(path: Path, key: LedgerKey, receipts: int) -> Ledger:
    ledger = Ledger.open(SQLiteStore(path), key)
    for start in range(0, receipts, _BATCH):
        ledger.append_batch(_deploys(start, min(_BATCH, receipts - start)))
    return ledger


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--receipts", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=None, help="processes checking the backup (default: per CPU)")
    args = parser.parse_args()
    key = LedgerKey.generate()
    with tempfile.TemporaryDirectory(prefix="bench-backup-") as scratch:
        base = Path(scratch)
        started = time.perf_counter()
        ledger = _build(base / "source.sqlite3", key, args.receipts)
        built = time.perf_counter() - started

        started = time.perf_counter()
        manifest = backup_ledger(ledger, base / "backup", store_kind="sqlite")
        backup_s = time.perf_counter() - started

        started = time.perf_counter()
        source = sqlite3.connect(base / "source.sqlite3")
        copy = sqlite3.connect(base / "copy.sqlite3")
        source.backup(copy)
        copy.close()
        source.close()
        sqlite_backup_s = time.perf_counter() - started
        ledger.close()

        started = time.perf_counter()
        checked = check_backup(base / "backup", workers=args.workers)
        check_s = time.perf_counter() - started
        target = SQLiteStore(base / "restored.sqlite3")
        started = time.perf_counter()
        report = restore_ledger(checked, target, key)
        write_s = time.perf_counter() - started
        target.close()
        assert report.root == manifest.root
        backup_bytes = sum(entry["bytes"] for entry in manifest.files.values())

    n = args.receipts
    restore_s = check_s + write_s
    print(json.dumps({
        "receipts": n,
        "build_s": round(built, 2),
        "backup_s": round(backup_s, 2), "backup_receipts_per_s": round(n / backup_s),
        "backup_mb": round(backup_bytes / 1e6, 1),
        "sqlite_backup_s": round(sqlite_backup_s, 2), "backup_vs_sqlite_backup": round(backup_s / sqlite_backup_s, 1),
        "restore_check_s": round(check_s, 2), "restore_write_s": round(write_s, 2),
        "restore_s": round(restore_s, 2), "restore_receipts_per_s": round(n / restore_s),
        "restore_batches": report.batches,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "restore_1m_extrapolated_min": round(restore_s * 1_000_000 / n / 60, 1),
        "backup_1m_extrapolated_min": round(backup_s * 1_000_000 / n / 60, 1),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
