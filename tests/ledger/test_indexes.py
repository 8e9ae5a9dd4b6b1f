"""The pricing index: written with its receipts, read on demand, rebuilt for older files, recounted
by ``ledger verify``."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tai_autonomics.ledger import Ledger, LedgerKey, ReceiptDraft, SQLiteStore, VerificationError, verify_store


def _quote(customer: str, value: str, mode: str = "prod") -> ReceiptDraft:
    return ReceiptDraft("pricing.quoted", mode, {"customer_id": customer, "value": value},
                        chain="pol-1" if mode == "prod" else None)


def test_the_last_contractual_value_per_customer_is_stored_with_its_receipt(open_store, key: LedgerKey) -> None:
    ledger = Ledger.open(open_store(), key)
    ledger.append_batch([_quote("acme", "1.0"), _quote("acme", "2.0"), _quote("zeta", "3.0")])
    ledger.append(_quote("acme", "9.0", mode="eval"))  # advisory: not contractual history
    again = Ledger.open(open_store(), key)
    assert (again.price("pol-1", "acme"), again.price("pol-1", "zeta"), again.price("pol-1", "nobody")) == \
        ("2.0", "3.0", None)
    verify_store(open_store(), key.public)


def test_an_older_file_gets_its_index_and_verify_names_a_hand_edit(tmp_path: Path, key: LedgerKey) -> None:
    path = tmp_path / "ledger.sqlite3"
    ledger = Ledger.open(SQLiteStore(path), key)
    ledger.append_batch([_quote("acme", "1.0"), _quote("acme", "2.0")])
    ledger.close()
    with sqlite3.connect(path) as db:  # what a version-2 file looks like
        db.executescript("DROP TABLE prices; DROP TABLE tiles; DROP TABLE bundles; PRAGMA user_version=2;")
    assert Ledger.open(SQLiteStore(path), key).price("pol-1", "acme") == "2.0"
    with sqlite3.connect(path) as db:
        db.execute("UPDATE prices SET value = '0.5'")
    with pytest.raises(VerificationError) as err:
        verify_store(SQLiteStore(path, readonly=True), key.public)
    assert err.value.where == "pricing index of acme on pol-1"
