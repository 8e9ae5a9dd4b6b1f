"""``ledger verify`` recounts the stored operation records and idempotency claims from the receipts
(the rule a restore writes them by) and names a record or claim that differs, that no receipt
gives, or that is missing: on SQLite and the Firestore emulator alike."""

from __future__ import annotations

import sqlite3
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest

from tai_autonomics.ledger import (
    DraftError,
    Ledger,
    LedgerKey,
    ReceiptDraft,
    SQLiteStore,
    VerificationError,
    verify_store,
)
from tai_autonomics.ledger.firestore_store import FirestoreStore
from tai_autonomics.ledger.operations import ClaimKey, CloseOperation, OpenOperation
from tai_autonomics.ledger.store import LedgerStore

POLICY = "policy-1"


def intent(op: str, key: str = "") -> ReceiptDraft:
    return ReceiptDraft("deploy.intent", "prod", {"key": key, "fingerprint": f"fp-{op}"}, chain=POLICY,
                        operation_id=op, effect=OpenOperation("deploy", key, f"fp-{op}"))


def outcome(op: str, status: str = "completed") -> ReceiptDraft:
    return ReceiptDraft(f"deploy.{status}", "prod", {}, chain=POLICY, operation_id=op, effect=CloseOperation(status))


def history(store: LedgerStore, key: LedgerKey) -> Ledger:
    """Operations in every state: closed (completed, failed), open (in progress, interrupted),
    with an idempotency key and without."""
    ledger = Ledger.open(store, key)
    ledger.append_batch([intent("done", "k-done"), intent("failed", "k-failed"), intent("running", "k-running"),
                         intent("stopped", "k-stopped"), intent("keyless")])
    ledger.append_batch([outcome("done"), outcome("failed", "failed"), outcome("stopped", "interrupted"),
                         outcome("keyless")])
    return ledger


def failure(store: LedgerStore, key: LedgerKey) -> VerificationError:
    with pytest.raises(VerificationError) as err:
        verify_store(store, key.public)
    return err.value


def edit_record(store: LedgerStore, op: str, **fields: str) -> None:
    """An operator's hand edit of an operation record: the SQL row or the Firestore document."""
    if isinstance(store, SQLiteStore):
        with sqlite3.connect(store.path) as db:
            for name, value in fields.items():
                db.execute(f"UPDATE operations SET {name} = ? WHERE operation_id = ?", (value, op))
        return
    assert isinstance(store, FirestoreStore)
    store._operations.document(op).update(fields)


def delete_record(store: LedgerStore, op: str) -> None:
    if isinstance(store, SQLiteStore):
        with sqlite3.connect(store.path) as db:
            db.execute("DELETE FROM operations WHERE operation_id = ?", (op,))
        return
    assert isinstance(store, FirestoreStore)
    store._operations.document(op).delete()


def add_bogus_record(store: LedgerStore, like: str, op: str, claim: str) -> None:
    """A copy of ``like``'s record under another operation id and key: no receipt opens it."""
    record = {**store.operation(like).to_json(), "operation_id": op, "key": claim}  # type: ignore[union-attr]
    if isinstance(store, SQLiteStore):
        with sqlite3.connect(store.path) as db:
            db.execute(f"INSERT INTO operations ({', '.join(record)}) VALUES ({', '.join('?' * len(record))})",
                       list(record.values()))
        return
    assert isinstance(store, FirestoreStore)
    store._operations.document(op).set(record)


def test_a_clean_ledger_verifies_with_its_records_and_claims(open_store: Callable[[], LedgerStore],
                                                             key: LedgerKey) -> None:
    store = open_store()
    history(store, key)
    assert {claim.key: owner for claim, owner in store.claims()} == {
        "k-done": "done", "k-failed": "failed", "k-running": "running", "k-stopped": "stopped"}
    assert [record.operation_id for record in store.operation_records()] == sorted(
        ["done", "failed", "running", "stopped", "keyless"])
    assert verify_store(store, key.public).tree_size == 9


@pytest.mark.parametrize(("op", "changed", "reason"), [
    ("done", {"status": "failed"}, "stored status 'failed', the receipts give 'completed'"),
    ("running", {"status": "interrupted"}, "stored status 'interrupted', the receipts give 'in_progress'"),
    ("stopped", {"fingerprint": "other"}, "stored fingerprint 'other', the receipts give 'fp-stopped'"),
    ("keyless", {"started": "2020-01-01T00:00:00Z"}, "stored started '2020-01-01T00:00:00Z', the receipts give"),
])
def test_a_hand_edited_record_is_named_with_what_differs(open_store: Callable[[], LedgerStore], key: LedgerKey,
                                                         op: str, changed: dict[str, str], reason: str) -> None:
    """Closed records (compared by digest, then recounted again to say how) and open ones alike."""
    store = open_store()
    history(store, key)
    edit_record(store, op, **changed)
    err = failure(store, key)
    assert (err.where, err.detail["operation_id"]) == (f"operation {op}", op)
    assert reason in err.reason


@pytest.mark.parametrize("op", ["failed", "running"])  # closed, open
def test_a_deleted_record_is_named_missing(open_store: Callable[[], LedgerStore], key: LedgerKey, op: str) -> None:
    store = open_store()
    history(store, key)
    delete_record(store, op)
    err = failure(store, key)
    assert err.where == f"operation {op}" and err.reason.startswith("missing")


def test_a_record_no_receipt_opens_is_named(open_store: Callable[[], LedgerStore], key: LedgerKey) -> None:
    store = open_store()
    history(store, key)
    add_bogus_record(store, "done", "bogus", "k-bogus")
    err = failure(store, key)
    assert err.where == "operation bogus" and "no receipts behind it" in err.reason


def test_a_record_that_is_not_one_is_named(open_store: Callable[[], LedgerStore], key: LedgerKey) -> None:
    store = open_store()
    history(store, key)
    edit_record(store, "done", status="nonsense")
    err = failure(store, key)
    assert err.where == "operation records" and "nonsense" in err.reason


def test_a_hand_edited_claim_is_named(open_store: Callable[[], LedgerStore], key: LedgerKey) -> None:
    """SQLite keeps a claim as its record's (scope, key), Firestore as a document of its own."""
    store = open_store()
    history(store, key)
    if isinstance(store, SQLiteStore):
        edit_record(store, "done", key="k-other")
        err = failure(store, key)
        assert err.where == "operation done" and "stored key 'k-other', the receipts give 'k-done'" in err.reason
        return
    assert isinstance(store, FirestoreStore)
    store._claim_ref(ClaimKey("deploy", "k-done")).update({"operation_id": "failed"})
    err = failure(store, key)
    assert err.where == "claim of deploy key 'k-done'" and "names operation 'failed'" in err.reason


@pytest.mark.parametrize("open_store", ["firestore"], indirect=True)
def test_a_deleted_claim_is_named_missing(open_store: Callable[[], LedgerStore], key: LedgerKey) -> None:
    store = open_store()
    history(store, key)
    assert isinstance(store, FirestoreStore)
    store._claim_ref(ClaimKey("deploy", "k-running")).delete()
    err = failure(store, key)
    assert err.where == "claim of deploy key 'k-running'" and err.reason.startswith("missing")
    assert err.detail["operation_id"] == "running"


@pytest.mark.parametrize("open_store", ["firestore"], indirect=True)
@pytest.mark.parametrize(("owner", "reason"), [("nobody", "which no receipt opens"),
                                               ("keyless", "whose receipts do not claim this key")])
def test_a_claim_no_receipt_makes_is_named(open_store: Callable[[], LedgerStore], key: LedgerKey, owner: str,
                                           reason: str) -> None:
    store = open_store()
    history(store, key)
    assert isinstance(store, FirestoreStore)
    store._claim_ref(ClaimKey("deploy", "k-bogus")).set({"scope": "deploy", "key": "k-bogus", "operation_id": owner})
    err = failure(store, key)
    assert err.where == "claim of deploy key 'k-bogus'" and reason in err.reason


@pytest.mark.parametrize("open_store", ["firestore"], indirect=True)
def test_a_claim_document_moved_to_another_key_is_named(open_store: Callable[[], LedgerStore],
                                                        key: LedgerKey) -> None:
    """A claim is found by its key's digest: one whose fields name another key is not a claim."""
    store = open_store()
    history(store, key)
    assert isinstance(store, FirestoreStore)
    store._claim_ref(ClaimKey("deploy", "k-done")).update({"key": "k-elsewhere"})
    err = failure(store, key)
    assert err.where == "idempotency claims" and "not the claim of its scope and key" in err.reason


def _verify_peak(path: Path, key: LedgerKey) -> int:
    """Peak bytes Python allocates while verifying the ledger at ``path``."""
    store = SQLiteStore(path, readonly=True)
    tracemalloc.start()
    try:
        verify_store(store, key.public)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        store.close()


def test_memory_grows_by_a_digest_per_closed_operation_not_by_its_record(tmp_path: Path, key: LedgerKey) -> None:
    """What verify holds grows with history as the receipt ids it checks for uniqueness do: a
    closed operation's record is kept as 16 bytes beside its id. Measured between ledgers of
    2,000 and 6,000 closed operations (4,000 and 12,000 receipts, past the chunk at which records
    are digested), per operation: about 480 bytes before verify recounted records (the two
    receipts' ids), 740 with the digests, 1,180 if the records were kept whole."""
    peaks = []
    for operations in (2_000, 6_000):
        path = tmp_path / f"{operations}.sqlite3"
        ledger = Ledger.open(SQLiteStore(path), key)
        for first in range(0, operations, 250):
            ops = [f"op-{n:06d}" for n in range(first, first + 250)]
            ledger.append_batch([intent(op, f"k-{op}") for op in ops])
            ledger.append_batch([outcome(op) for op in ops])
        ledger.close()
        peaks.append(_verify_peak(path, key))
    per_operation = (peaks[1] - peaks[0]) / 4_000
    assert per_operation < 900, f"verify holds {per_operation:.0f} bytes more per operation"


@pytest.mark.parametrize(("kind", "payload", "effect", "refusal"), [
    ("deploy.intent", {"key": "k", "fingerprint": "f"}, None, "opens its operation"),
    ("deploy.intent", {"key": "k", "fingerprint": "f"}, OpenOperation("deploy", "other", "f"), "key 'other'"),
    ("deploy.intent", {"key": "k", "fingerprint": "f"}, OpenOperation("publish", "k", "f"), "publish.intent"),
    ("deploy.intent", {"key": "k"}, OpenOperation("deploy", "k", "f"), "fingerprint 'f'"),
    ("deploy.completed", {}, CloseOperation("failed"), "<scope>.failed"),
])
def test_a_draft_whose_effect_its_receipt_would_not_show_is_refused(kind: str, payload: dict, effect,
                                                                    refusal: str) -> None:
    """The records are recounted from the receipts alone, so what a draft does must show in it."""
    with pytest.raises(DraftError) as err:
        ReceiptDraft(kind, "prod", payload, chain=POLICY, operation_id="op", effect=effect)
    assert refusal in err.value.message


def test_an_intent_that_names_no_fingerprint_opened_nothing(tmp_path: Path, key: LedgerKey) -> None:
    """An intent appended without an effect (no fingerprint in its payload) opened no operation,
    and the recount gives it none: the ledger verifies."""
    store = SQLiteStore(tmp_path / "ledger.sqlite3")
    ledger = Ledger.open(store, key)
    ledger.append_batch([ReceiptDraft("deploy.intent", "prod", {"sku_id": "sku-001"}, chain=POLICY,
                                      operation_id="plain"),
                         ReceiptDraft("deploy.completed", "prod", {}, chain=POLICY, operation_id="plain")])
    assert ledger.operation("plain") is None and list(store.operation_records()) == []
    assert verify_store(store, key.public).tree_size == 2
    store.close()


class _WriterMeanwhile:
    """A store whose listing of operation records lets another writer append first, each time
    (the daemon appends while its ``verify`` reads): records of receipts verify has not read."""

    def __init__(self, store: SQLiteStore, writer: Ledger, batches: list[list[ReceiptDraft]]) -> None:
        self._store, self._writer, self._batches = store, writer, batches
        self.listings = 0

    def __getattr__(self, name: str):
        return getattr(self._store, name)

    def operation_records(self):
        self.listings += 1
        if self._batches:
            self._writer.append_batch(self._batches.pop(0))
        return self._store.operation_records()


def test_records_a_writer_adds_while_verify_reads_are_left_to_the_next_verify(tmp_path: Path, key: LedgerKey) -> None:
    """Closed or interrupted since, or opened by later receipts: passed over, and the records are
    compared once, not again and again while appends go on. A record no receipt explains is
    still named."""
    path = tmp_path / "ledger.sqlite3"
    history(SQLiteStore(path), key).close()
    writer = Ledger.open(SQLiteStore(path), key)
    batches = [[outcome("running"), outcome("stopped", "failed"), intent("late-0", "k-late-0")],
               *([intent(f"late-{n}", f"k-late-{n}")] for n in range(1, 20))]
    store = _WriterMeanwhile(SQLiteStore(path, readonly=True), writer, batches)
    report = verify_store(store, key.public)  # type: ignore[arg-type]
    assert store.listings == 1 and report.tree_size >= 12
    assert writer.operation("running").status == "completed"  # type: ignore[union-attr]
    add_bogus_record(writer._store, "done", "bogus", "k-bogus")  # type: ignore[attr-defined]
    store = _WriterMeanwhile(SQLiteStore(path, readonly=True), writer, [[intent("later", "k-later")]])
    err = failure(store, key)  # type: ignore[arg-type]
    assert err.where == "operation bogus" and store.listings == 1
    store.close()
    writer.close()


@pytest.mark.parametrize("open_store", ["firestore"], indirect=True)
def test_firestore_lists_records_and_claims_page_by_page(open_store: Callable[[], LedgerStore], key: LedgerKey,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Pages of two documents: each page starts after the last document of the one before."""
    store = open_store()
    history(store, key)
    monkeypatch.setattr("tai_autonomics.ledger.firestore_store._PAGE", 2)
    assert [record.operation_id for record in store.operation_records()] == sorted(
        ["done", "failed", "running", "stopped", "keyless"])
    assert sorted(owner for _, owner in store.claims()) == ["done", "failed", "running", "stopped"]
    assert verify_store(store, key.public).tree_size == 9
