"""Operation effects in the append's transaction (docs/specification.md §10), on SQLite and the Firestore emulator
alike: coverage reserved iff the intent is stored, keys claimed once, outcomes closed once,
the stored counters equal to a recount of the receipts."""

from __future__ import annotations

import sqlite3
from decimal import Decimal
from pathlib import Path

import pytest

from tai_autonomics.ledger import (
    ConflictError,
    DraftError,
    Ledger,
    LedgerKey,
    ReceiptDraft,
    SQLiteStore,
    StoreCorruptError,
    VerificationError,
    verify_store,
)
from tai_autonomics.ledger.operations import (
    IN_PROGRESS,
    CloseOperation,
    CoverageExceeded,
    Limit,
    OpenOperation,
    OperationExists,
    OperationNotOpen,
    rebuild,
)

POLICY = "policy-1"
LIMIT = Limit(3, Decimal(1000))


def intent(op: str, key: str = "", cost: str = "100", sku: str = "sku-002", fingerprint: str = "f") -> ReceiptDraft:
    coverage = {"sku_id": sku, "cost": cost, **LIMIT.to_json()}
    return ReceiptDraft("deploy.intent", "prod", {"sku_id": sku, "key": key, "fingerprint": fingerprint,
                                                  "coverage": coverage},
                        chain=POLICY, operation_id=op, effect=OpenOperation("deploy", key, fingerprint))


def outcome(op: str, status: str = "completed") -> ReceiptDraft:
    return ReceiptDraft(f"deploy.{status}", "prod", {}, chain=POLICY, operation_id=op, effect=CloseOperation(status))


def counters(ledger: Ledger) -> dict[str, tuple[int, str]]:
    return {key.sku: (usage.count, str(usage.cost)) for key, usage in ledger.usage(POLICY).items()}


def test_a_reservation_that_does_not_fit_stores_nothing(open_store, key: LedgerKey) -> None:
    ledger = Ledger.open(open_store(), key)
    for n in range(3):
        ledger.append(intent(f"op-{n}", cost="300"))
    size = ledger.size
    with pytest.raises(CoverageExceeded) as err:
        ledger.append(intent("op-3", cost="1"))
    assert (err.value.detail["current_count"], err.value.detail["limit_count"]) == (3, 3)
    assert ledger.size == size and ledger.checkpoint().size == size
    assert ledger.operation("op-3") is None and counters(ledger) == {"sku-002": (3, "900")}


def test_cost_is_reserved_and_a_batch_counts_its_own_reservations(open_store, key: LedgerKey) -> None:
    ledger = Ledger.open(open_store(), key)
    ledger.append_batch([intent("a", cost="400"), intent("b", cost="500")])
    with pytest.raises(CoverageExceeded) as err:  # 900 + 101 > 1000: the whole batch is refused
        ledger.append_batch([intent("c", cost="50", sku="sku-001"), intent("d", cost="101")])
    assert err.value.detail["current_cost"] == "900"
    assert counters(ledger) == {"sku-002": (2, "900")} and ledger.operation("c") is None


def test_a_key_is_claimed_once_and_an_outcome_closes_once(open_store, key: LedgerKey) -> None:
    ledger = Ledger.open(open_store(), key)
    first = ledger.append(intent("op-1", key="k"))
    with pytest.raises(OperationExists) as err:
        ledger.append(intent("op-2", key="k", fingerprint="other"))
    assert err.value.detail["operation"]["operation_id"] == "op-1"
    with pytest.raises(OperationExists):  # two in one batch: the second sees the first's claim
        ledger.append_batch([intent("op-3", key="j"), intent("op-4", key="j")])
    record = ledger.claim("deploy", "k")
    assert (record.operation_id, record.status, record.intent_id) == ("op-1", IN_PROGRESS, first.id)
    assert [r.operation_id for r in ledger.open_operations("deploy")] == ["op-1"]
    done = ledger.append(outcome("op-1"))
    assert ledger.operation("op-1").status == "completed" and ledger.operation("op-1").outcome_id == done.id
    assert ledger.claim("deploy", "k").outcome_id == done.id and ledger.open_operations("deploy") == []
    with pytest.raises(OperationNotOpen):
        ledger.append(outcome("op-1", "failed"))
    with pytest.raises(OperationNotOpen):
        ledger.append(outcome("never-opened"))
    assert counters(ledger) == {"sku-002": (1, "100")}  # refused intents reserved nothing; outcomes nothing


def test_the_stored_counters_and_records_equal_a_recount_of_the_receipts(open_store, key: LedgerKey) -> None:
    ledger = Ledger.open(open_store(), key)
    ledger.append_batch([intent("a", key="ka", cost="10"), intent("b", cost="20", sku="sku-001")])
    ledger.append(outcome("a", "failed"))  # a failed operation keeps its reservation
    ledger.append(ReceiptDraft("mode.changed", "prod", {"coverage": {"sku_id": "sku-002", "cost": "5"}}, chain=POLICY))
    usage, records = rebuild(r.to_dict() for r in ledger.iter_receipts())
    assert usage == ledger.usage()
    assert {r.operation_id: r for r in records} == {op: ledger.operation(op) for op in ("a", "b")}
    assert counters(ledger) == {"sku-002": (1, "10"), "sku-001": (1, "20")}


@pytest.mark.parametrize("coverage", [
    {"sku_id": "sku-002", "cost": "x", "limit_count": 3, "limit_cost": "1000"},
    {"sku_id": "", "cost": "1", "limit_count": 3, "limit_cost": "1000"},
    {"sku_id": "sku-002", "cost": "1", "limit_count": "3", "limit_cost": "1000"},
    {"sku_id": "sku-002", "cost": "1", "limit_count": 3},
    "sku-002",
])
def test_a_malformed_reservation_is_refused_before_anything_is_written(open_store, key: LedgerKey, coverage) -> None:
    ledger = Ledger.open(open_store(), key)
    with pytest.raises(DraftError):
        ledger.append(ReceiptDraft("deploy.intent", "prod", {"key": "", "fingerprint": "f", "coverage": coverage},
                                   chain=POLICY, operation_id="x",
                                   effect=OpenOperation("deploy", "", "f")))
    assert ledger.size == 0 and ledger.operation("x") is None and ledger.usage() == {}


def test_an_intent_that_reserves_must_open_its_operation(open_store, key: LedgerKey) -> None:
    """Else the counters would differ from a recount of the receipts."""
    ledger = Ledger.open(open_store(), key)
    unopened = intent("x")
    with pytest.raises(DraftError):
        ledger.append(ReceiptDraft(unopened.kind, "prod", unopened.payload, chain=POLICY, operation_id="x"))
    ledger.append(ReceiptDraft("deploy.intent", "prod", {"sku_id": "sku-002", "cost": "1"}, chain=POLICY))
    assert ledger.size == 1 and ledger.usage() == {}  # an intent without coverage reserves nothing


def test_an_old_sqlite_ledger_gets_its_counters_and_records_from_its_receipts(tmp_path: Path, key: LedgerKey) -> None:
    path = tmp_path / "ledger.sqlite3"
    ledger = Ledger.open(SQLiteStore(path), key)
    ledger.append_batch([intent("a", key="ka", cost="10"), intent("b", cost="20")])
    ledger.append(outcome("a"))
    expected = (ledger.usage(), ledger.operation("a"), ledger.operation("b"))
    ledger.close()
    with sqlite3.connect(path) as db:  # what a version-1 file looks like
        db.executescript("DROP TABLE usage; DROP TABLE operations; DROP TABLE tiles; DROP TABLE prices; "
                         "DROP TABLE bundles; PRAGMA user_version=1;")
    reopened = Ledger.open(SQLiteStore(path), key)
    assert (reopened.usage(), reopened.operation("a"), reopened.operation("b")) == expected
    assert reopened.claim("deploy", "ka").operation_id == "a"


@pytest.mark.parametrize(("column", "value"), [("count", "'many'"), ("cost", "'lots'"), ("count", "-1")])
def test_a_hand_edited_counter_is_named_and_changes_nothing(tmp_path: Path, key: LedgerKey, column: str,
                                                             value: str) -> None:
    path = tmp_path / "ledger.sqlite3"
    ledger = Ledger.open(SQLiteStore(path), key)
    ledger.append(intent("a"))
    with sqlite3.connect(path) as db:
        db.execute(f"UPDATE usage SET {column} = {value}")
    with pytest.raises(StoreCorruptError) as err:
        ledger.append(intent("b"))
    assert "usage" in err.value.message and "sku-002" in err.value.message
    assert ledger.size == 1 and ledger.operation("b") is None


def test_ledger_verify_recounts_and_names_a_hand_edited_counter(open_store, key: LedgerKey) -> None:
    store = open_store()
    ledger = Ledger.open(store, key)
    ledger.append_batch([intent("a", cost="10"), intent("b", cost="20", sku="sku-001")])
    assert verify_store(store, key.public).tree_size == 2
    edit_usage(store, "sku-002", count=5)
    with pytest.raises(VerificationError) as err:
        verify_store(store, key.public)
    assert err.value.where == f"usage sku-002 of {POLICY} in {ledger.operation('a').started[:7]}"
    assert "stored count 5" in err.value.reason and "the receipts give count 1" in err.value.reason


def edit_usage(store, sku: str, count: int) -> None:
    """What an operator's hand edit does: the SQL row or the Firestore document, changed in place."""
    if isinstance(store, SQLiteStore):
        with sqlite3.connect(store.path) as db:
            db.execute("UPDATE usage SET count = ? WHERE sku = ?", (count, sku))
        return
    for doc in store._usage.stream():
        if doc.get("sku") == sku:
            doc.reference.update({"count": count})


def test_an_append_that_fails_after_reserving_reserves_nothing(tmp_path: Path, key: LedgerKey) -> None:
    """SQLite: the reservation is written in the append's transaction, so when the append fails
    afterwards (here the receipt's row is refused, written after the reservation) the usage
    counter and the operation record are rolled back with the receipt: the intent exists iff
    its reservation does."""
    path = tmp_path / "ledger.sqlite3"
    ledger = Ledger.open(SQLiteStore(path), key)
    ledger.append(intent("a", key="ka"))
    with sqlite3.connect(path) as db:  # a hand-made trigger refuses the next receipt's row
        db.execute("CREATE TRIGGER in_the_way BEFORE INSERT ON receipts WHEN NEW.leaf_index = 1 "
                   "BEGIN SELECT RAISE(ABORT, 'in the way'); END")
    with pytest.raises(ConflictError):
        ledger.append(intent("b", key="kb"))
    assert counters(ledger) == {"sku-002": (1, "100")}
    assert ledger.operation("b") is None and ledger.claim("deploy", "kb") is None and ledger.size == 1
