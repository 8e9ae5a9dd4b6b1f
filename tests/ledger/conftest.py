"""Shared fixtures of the ledger tests: the conformance data, keys, stores and ledgers."""

from __future__ import annotations

from pathlib import Path

import pytest

from tai_autonomics.ledger import Ledger, LedgerKey, SQLiteStore

# CI clones the repository into a folder with shared/ beside it; so does every worktree here.
SHARED = Path(__file__).resolve().parents[2] / ".." / "shared"
CONFORMANCE = SHARED / "conformance"


def conformance_dir(*parts: str) -> Path:
    """A folder of the shared conformance data; fails (never skips) when it is missing."""
    path = CONFORMANCE.joinpath(*parts)
    if not path.is_dir():
        pytest.fail(f"conformance data missing: {path} (expected ../shared/conformance beside the repository)")
    return path


def conformance_files(*parts: str, pattern: str = "*.json") -> list[Path]:
    """Every file under a conformance folder, for parametrising (a missing folder fails at collection)."""
    path = CONFORMANCE.joinpath(*parts)
    files = sorted(path.rglob(pattern))
    if not files:
        raise RuntimeError(f"conformance data missing: no {pattern} under {path}")
    return files


@pytest.fixture(scope="session")
def key() -> LedgerKey:
    return LedgerKey.generate()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "ledger.sqlite3"


@pytest.fixture
def ledger(db_path: Path, key: LedgerKey):
    opened = Ledger.open(SQLiteStore(db_path), key)
    yield opened
    opened.close()
