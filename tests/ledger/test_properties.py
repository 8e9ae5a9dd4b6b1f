"""Properties over arbitrary append sequences: proofs always verify; any tampering is named."""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tai_autonomics.ledger import (
    Ledger,
    LedgerError,
    LedgerKey,
    ReceiptDraft,
    SQLiteStore,
    StoreCorruptError,
    VerificationError,
    export_ledger,
    open_checkpoint,
    verify_export,
    verify_store,
)

CHAINS = ["policy-a", "policy-b", "policy-c", None]  # None: the eval session's chain
batches = st.lists(st.lists(st.sampled_from(CHAINS), min_size=1, max_size=5), min_size=1, max_size=6)
_SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _draft(chain: str | None, n: int) -> ReceiptDraft:
    if chain is None:
        return ReceiptDraft("pricing.quoted", "eval", {"n": n, "note": "é✓"})
    return ReceiptDraft("deploy.intent", "prod", {"n": n}, chain=chain, operation_id=f"op-{n}")


def _fill(ledger: Ledger, plan: list[list[str | None]]) -> list:
    checkpoints = []
    n = 0
    for batch in plan:
        ledger.append_batch([_draft(chain, n + i) for i, chain in enumerate(batch)])
        n += len(batch)
        checkpoints.append(ledger.checkpoint())
    return checkpoints


@_SETTINGS
@given(plan=batches)
def test_every_receipt_is_proven_and_every_checkpoint_is_consistent(plan, key: LedgerKey) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        ledger = Ledger.open(SQLiteStore(Path(tmp) / "l.db"), key)
        checkpoints = _fill(ledger, plan)
        latest = ledger.checkpoint()
        assert latest == checkpoints[-1]
        assert open_checkpoint(latest.note, key.public, ledger.origin).size == sum(map(len, plan))
        for receipt in ledger.iter_receipts():
            ledger.inclusion_proof(receipt.id).verify(receipt.leaf_hash, latest.root)
        for earlier in checkpoints:
            ledger.consistency_proof(earlier.size).verify(earlier.root, latest.root)
        heads: dict[str, str] = {}
        for receipt in ledger.iter_receipts():
            assert receipt.prev == heads.get(receipt.chain, "")
            heads[receipt.chain] = receipt.hash
        ledger.close()


def _tampered_ledger(tmp: str, key: LedgerKey, plan) -> tuple[Path, list[tuple[int, str]]]:
    path = Path(tmp) / "l.db"
    ledger = Ledger.open(SQLiteStore(path), key)
    _fill(ledger, plan)
    ledger.close()
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT leaf_index, id FROM receipts ORDER BY leaf_index").fetchall()
    return path, rows


def _named(path: Path, key: LedgerKey) -> VerificationError:
    with pytest.raises(VerificationError) as failure:
        verify_store(SQLiteStore(path, readonly=True), key.public)
    return failure.value


@_SETTINGS
@given(plan=batches, data=st.data())
def test_flipping_any_byte_is_named(plan, data, key: LedgerKey) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path, rows = _tampered_ledger(tmp, key, plan)
        index, _ = data.draw(st.sampled_from(rows))
        with sqlite3.connect(path) as db:
            (blob,) = db.execute("SELECT data FROM receipts WHERE leaf_index = ?", (index,)).fetchone()
            at = data.draw(st.integers(0, len(blob) - 1))
            bit = data.draw(st.integers(0, 7))
            flipped = bytearray(blob)
            flipped[at] ^= 1 << bit
            db.execute("UPDATE receipts SET data = ? WHERE leaf_index = ?", (bytes(flipped), index))
        error = _named(path, key)
        assert error.detail["leaf_index"] == index, error.message


@_SETTINGS
@given(plan=batches, data=st.data())
def test_deleting_a_receipt_is_named(plan, data, key: LedgerKey) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path, rows = _tampered_ledger(tmp, key, plan)
        index, _ = data.draw(st.sampled_from(rows))
        with sqlite3.connect(path) as db:
            db.execute("DELETE FROM receipts WHERE leaf_index = ?", (index,))
        error = _named(path, key)
        assert error.detail["leaf_index"] == index and "missing" in error.reason, error.message


@_SETTINGS
@given(plan=batches.filter(lambda p: sum(map(len, p)) >= 2), data=st.data())
def test_reordering_receipts_is_named(plan, data, key: LedgerKey) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path, rows = _tampered_ledger(tmp, key, plan)
        first, second = sorted(data.draw(st.lists(st.sampled_from([i for i, _ in rows]), min_size=2, max_size=2, unique=True)))
        with sqlite3.connect(path) as db:
            db.execute("UPDATE receipts SET leaf_index = -1 WHERE leaf_index = ?", (first,))
            db.execute("UPDATE receipts SET leaf_index = ? WHERE leaf_index = ?", (first, second))
            db.execute("UPDATE receipts SET leaf_index = ? WHERE leaf_index = -1", (second,))
        error = _named(path, key)
        assert error.detail["leaf_index"] == first, error.message


def test_a_forged_leaf_hash_is_named_and_refused_at_open(tmp_path: Path, key: LedgerKey) -> None:
    path, rows = _tampered_ledger(str(tmp_path), key, [["policy-a", "policy-b"], ["policy-a"]])
    with sqlite3.connect(path) as db:
        db.execute("UPDATE receipts SET leaf_hash = zeroblob(32) WHERE leaf_index = 1")
    error = _named(path, key)
    assert error.detail["leaf_index"] == 1
    with pytest.raises(StoreCorruptError):
        Ledger.open(SQLiteStore(path), key)


@pytest.fixture(scope="module")
def export(tmp_path_factory, key: LedgerKey) -> Path:
    """An export of a small ledger with prod and eval chains, every file of it valid."""
    directory = tmp_path_factory.mktemp("export")
    ledger = Ledger.open(SQLiteStore(directory / "l.db"), key)
    _fill(ledger, [["policy-a", None, "policy-b"], ["policy-a", "policy-a"], [None, "policy-c"]])
    export_ledger(ledger, directory / "out")
    ledger.close()
    return directory / "out"


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(name=st.sampled_from(["receipts.jsonl", "proofs.jsonl", "checkpoint", "public_key.pem"]),
       flips=st.lists(st.tuples(st.integers(min_value=0), st.integers(min_value=1, max_value=255)), max_size=3),
       cut=st.none() | st.integers(min_value=0), junk=st.binary(max_size=12), drop=st.booleans())
def test_a_mangled_export_is_refused_naming_what_is_wrong_or_still_verifies(export: Path, name, flips, cut, junk,
                                                                            drop) -> None:
    """Issue 14: an export fed to ``verify`` with any file flipped, cut, extended or missing gives a
    verification error, or the very report of the intact export (the change altered nothing that is
    verified, say trailing junk after the PEM): no other exception."""
    with tempfile.TemporaryDirectory() as tmp:
        mangled = Path(tmp) / "export"
        shutil.copytree(export, mangled)
        target = mangled / name
        data = bytearray(target.read_bytes())
        for position, mask in flips:
            data[position % len(data)] ^= mask
        data = data[: cut % (len(data) + 1)] if cut is not None else data
        if drop:
            target.unlink()
        else:
            target.write_bytes(bytes(data) + junk)
        try:
            report = verify_export(mangled)
        except LedgerError as exc:
            assert exc.message, exc
            return
        assert report.to_json() == verify_export(export).to_json() and not drop  # what it verified is intact
