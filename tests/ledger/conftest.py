"""Shared fixtures of the ledger tests: keys, stores and ledgers (the conformance data is in tests/helpers.py,
the Firestore emulator in tests/fixtures/firestore.py)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tai_autonomics.ledger import Ledger, LedgerKey, LedgerStore, SQLiteStore
from tai_autonomics.ledger.firestore_store import FirestoreStore
from tests.helpers import EMULATOR_PROJECT


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


@pytest.fixture(params=["sqlite", "firestore"])
def open_store(request, tmp_path: Path) -> Iterator[Callable[[], LedgerStore]]:
    """Opens connections to one fresh ledger store (call it again for a second instance)."""
    opened: list[LedgerStore] = []
    if request.param == "sqlite":
        def make() -> LedgerStore:
            opened.append(SQLiteStore(tmp_path / "ledger.sqlite3"))
            return opened[-1]
    else:
        request.getfixturevalue("firestore_emulator")
        name = f"test-{uuid.uuid4().hex}"

        def make() -> LedgerStore:
            opened.append(FirestoreStore(name, project=EMULATOR_PROJECT))
            return opened[-1]
    yield make
    for store in opened:
        store.close()
