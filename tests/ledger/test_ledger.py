"""The Ledger core on a real SQLite file: receipts, chains, epochs, checkpoints, proofs, reopen."""

from __future__ import annotations

import base64
import hashlib
import io
import logging
import pickle
import subprocess
import sys
import threading
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tai_autonomics import logs
from tai_autonomics.ledger import (
    DISCLAIMER,
    EPOCH_ROTATED,
    ConflictError,
    DraftError,
    Ledger,
    LedgerKey,
    NotFoundError,
    ProofError,
    ReceiptDraft,
    SQLiteStore,
    canonical_json,
    open_checkpoint,
    verify_store,
)
from tai_autonomics.ledger.note import sign_checkpoint
from tai_autonomics.ledger.receipts import _random_uuid, rfc3339_utc


def prod(i: int, chain: str = "policy-1", **extra) -> ReceiptDraft:
    return ReceiptDraft("deploy.intent", "prod", {"i": i}, chain=chain, **extra)


def test_contractual_receipt_matches_the_wire_format(ledger: Ledger, key: LedgerKey) -> None:
    first = ledger.append(prod(1, operation_id="op-1"))
    second = ledger.append(ReceiptDraft("deploy.completed", "prod", {"ok": True}, chain="policy-1", operation_id="op-1"))
    obj = second.to_dict()
    body = {k: v for k, v in obj.items() if k not in ("hash", "key_id", "signature", "session_mac")}
    digest = hashlib.sha256(canonical_json(body)).digest()
    assert obj["hash"] == digest.hex()
    assert key.public.verify(base64.b64decode(obj["signature"]), digest)
    assert obj["key_id"] == key.public.key_id == hashlib.sha256(key.public.raw).hexdigest()[:16]
    assert (obj["seq"], obj["prev"], obj["operation_id"]) == (2, first.hash, "op-1")
    assert first.to_dict()["prev"] == "" and obj["time"].endswith("Z")
    assert obj["authority"] == "contractual" and "session_mac" not in obj
    assert second.data == canonical_json(obj)


def test_receipts_are_immutable_copies(ledger: Ledger) -> None:
    payload = {"nested": {"v": 1}}
    receipt = ledger.append(ReceiptDraft("pricing.quoted", "prod", payload, chain="p"))
    payload["nested"]["v"] = 2
    copy = receipt.to_dict()
    copy["payload"]["nested"]["v"] = 3
    assert receipt.to_dict()["payload"] == {"nested": {"v": 1}}
    with pytest.raises(AttributeError):
        receipt.data = b"{}"  # type: ignore[misc]


def test_chains_are_independent_and_tree_is_shared(ledger: Ledger) -> None:
    receipts = ledger.append_batch([prod(0, "a"), prod(1, "b"), prod(2, "a")])
    assert [(r.chain, r.seq, r.leaf_index) for r in receipts] == [("a", 1, 0), ("b", 1, 1), ("a", 2, 2)]
    assert receipts[2].prev == receipts[0].hash
    assert [r.seq for r in ledger.receipts("a")] == [1, 2]
    assert [r.seq for r in ledger.receipts("a", after=1, limit=5)] == [2]
    assert ledger.receipt(receipts[1].id) == receipts[1]


def test_advisory_receipts_verify_across_epoch_rotation(ledger: Ledger, db_path: Path, key: LedgerKey) -> None:
    before = ledger.append_batch([ReceiptDraft("pricing.quoted", "eval", {"i": i}) for i in range(3)])
    rotation = ledger.rotate_epoch()
    after = ledger.append(ReceiptDraft("pricing.quoted", "eval", {"i": 9}))
    assert rotation.kind == EPOCH_ROTATED and rotation.to_dict()["payload"] == {"from_epoch": 0, "to_epoch": 1}
    assert [r.to_dict()["epoch"] for r in (*before, rotation, after)] == [0, 0, 0, 0, 1]
    for receipt in (*before, rotation, after):
        obj = receipt.to_dict()
        assert obj["authority"] == "advisory" and obj["disclaimer"] == DISCLAIMER
        assert "signature" not in obj and len(obj["session_mac"]) == 64
        assert obj["chain"] == ledger.session_id
        assert ledger.check_session_mac(receipt)
    report = verify_store(SQLiteStore(db_path, readonly=True), key.public, session=ledger._session)
    assert report.session_macs_checked == 5 and report.advisory == 5


def test_a_changed_advisory_receipt_fails_its_mac(ledger: Ledger) -> None:
    receipt = ledger.append(ReceiptDraft("pricing.quoted", "eval", {"i": 1}))
    forged = receipt.to_dict()
    forged["epoch"] = 1
    assert not ledger._session.check(forged)


def test_advisory_drafts_cannot_target_another_chain(ledger: Ledger) -> None:
    with pytest.raises(DraftError):
        ledger.append(ReceiptDraft("pricing.quoted", "eval", {}, chain="policy-1"))


@pytest.mark.parametrize(
    "make",
    [
        lambda: ReceiptDraft("Deploy Intent", "prod", {}, chain="p"),
        lambda: ReceiptDraft("deploy.intent", "draining", {}, chain="p"),
        lambda: ReceiptDraft("deploy.intent", "prod", {}),
        lambda: ReceiptDraft("deploy.intent", "prod", {"n": 2**60}, chain="p"),
        lambda: ReceiptDraft("deploy.intent", "prod", {"f": float("nan")}, chain="p"),
        lambda: ReceiptDraft("deploy.intent", "prod", [1], chain="p"),
        lambda: ReceiptDraft("deploy.intent", "prod", {}, chain="p", operation_id=""),
    ],
)
def test_bad_drafts_are_refused(make) -> None:
    with pytest.raises(DraftError):
        make()


def test_batch_size_is_bounded(db_path: Path, key: LedgerKey) -> None:
    ledger = Ledger.open(SQLiteStore(db_path), key, max_batch=2)
    with pytest.raises(DraftError):
        ledger.append_batch([prod(i) for i in range(3)])
    assert ledger.append_batch([]) == []


def test_checkpoints_and_proofs_at_every_size(ledger: Ledger, key: LedgerKey) -> None:
    empty = ledger.checkpoint()
    assert (empty.size, empty.root) == (0, hashlib.sha256(b"").digest())
    checkpoints = []
    receipts = []
    for i in range(6):
        receipts += ledger.append_batch([prod(i * 2), prod(i * 2 + 1, "other")])
        checkpoints.append(ledger.checkpoint())
    assert [c.size for c in checkpoints] == [2, 4, 6, 8, 10, 12]
    for checkpoint in checkpoints:
        assert open_checkpoint(checkpoint.note, key.public, ledger.origin) == checkpoint
        for receipt in receipts[: checkpoint.size]:
            ledger.inclusion_proof(receipt.id, checkpoint.size).verify(receipt.leaf_hash, checkpoint.root)
        ledger.consistency_proof(checkpoint.size).verify(checkpoint.root, checkpoints[-1].root)
    with pytest.raises(ProofError):
        ledger.inclusion_proof(receipts[5].id, 4)
    with pytest.raises(ProofError):
        ledger.consistency_proof(3, 99)
    with pytest.raises(NotFoundError):
        ledger.inclusion_proof("no-such-id")


def test_a_size_never_gets_a_second_root(ledger: Ledger, db_path: Path, key: LedgerKey) -> None:
    ledger.append(prod(1))
    ledger.checkpoint()  # signed on demand: an append signs none
    store = SQLiteStore(db_path)
    forged = sign_checkpoint(ledger.origin, 1, b"\x00" * 32, key)
    with pytest.raises(ConflictError):
        store.put_checkpoint(forged)
    assert store.put_checkpoint(ledger.checkpoint()) == ledger.checkpoint()


def test_reopen_rebuilds_the_same_state(db_path: Path, key: LedgerKey) -> None:
    first = Ledger.open(SQLiteStore(db_path), key)
    receipts = first.append_batch([prod(i, f"c{i % 3}") for i in range(20)])
    checkpoint = first.checkpoint()
    first.close()
    second = Ledger.open(SQLiteStore(db_path), key)
    assert second.checkpoint() == checkpoint
    nxt = second.append(prod(99, "c1"))
    assert (nxt.seq, nxt.prev, nxt.leaf_index) == (8, receipts[19].hash, 20)


def test_two_stores_on_one_file_never_fork_a_chain(db_path: Path, key: LedgerKey) -> None:
    one = Ledger.open(SQLiteStore(db_path), key)
    two = Ledger.open(SQLiteStore(db_path), key)
    a = one.append(prod(1))
    b = two.append(prod(2))
    c = one.append(prod(3))
    assert (b.seq, b.prev, b.leaf_index) == (2, a.hash, 1)
    assert (c.seq, c.prev, c.leaf_index) == (3, b.hash, 2)
    one.inclusion_proof(b.id).verify(b.leaf_hash, one.checkpoint().root)
    verify_store(SQLiteStore(db_path, readonly=True), key.public)


def _append_in_another_process(db_path: Path, key: LedgerKey) -> str:
    """Append one receipt to chain 'shared' from a child process; its receipt id."""
    child = Path(__file__).with_name("concurrent_child.py")
    done = subprocess.run(
        [sys.executable, str(child), "sqlite", str(db_path), "1"],
        input=key.private_pem(), capture_output=True, timeout=90, check=True, cwd=Path(__file__).resolve().parents[2],
    )
    return done.stdout.decode().strip()


@pytest.mark.parametrize("writer", ["store", "process"])
def test_a_commit_of_another_writer_between_two_appends_is_seen(db_path: Path, key: LedgerKey, writer: str) -> None:
    """The store reuses the head of its own last commit: it must notice another connection's."""
    ledger = Ledger.open(SQLiteStore(db_path), key)
    ledger.append(prod(1, "shared"))
    ledger.append(prod(2, "shared"))  # the head of a commit of ours, remembered
    if writer == "store":
        other = Ledger.open(SQLiteStore(db_path), key)
        theirs = other.append(prod(3, "shared"))
        other.close()
    else:
        theirs = ledger.receipt(_append_in_another_process(db_path, key))
    ours = ledger.append(prod(4, "shared"))
    assert (theirs.leaf_index, theirs.seq) == (2, 3)
    assert (ours.leaf_index, ours.seq, ours.prev) == (3, 4, theirs.hash)
    assert ledger.append(prod(5, "shared")).prev == ours.hash
    verify_store(SQLiteStore(db_path, readonly=True), key.public)


def test_appends_without_other_writers_do_not_query_the_head(db_path: Path, key: LedgerKey) -> None:
    store = SQLiteStore(db_path)
    ledger = Ledger.open(store, key)
    ledger.append(prod(1))
    statements: list[str] = []
    store._db.set_trace_callback(statements.append)
    assert ledger.append(prod(2)).seq == 2
    assert [s for s in statements if s.startswith("SELECT")] == []
    store._db.set_trace_callback(None)


def test_readers_read_committed_state_while_a_writer_appends(db_path: Path, key: LedgerKey) -> None:
    writer = Ledger.open(SQLiteStore(db_path), key)
    writer.append(prod(0))
    failures: list[BaseException] = []
    done = threading.Event()

    def read() -> None:
        reader = SQLiteStore(db_path, readonly=True)
        try:
            while not done.is_set():
                verify_store(reader, key.public)
        except BaseException as exc:  # reported to the test thread below
            failures.append(exc)
        finally:
            reader.close()

    thread = threading.Thread(target=read)
    thread.start()
    for i in range(40):
        writer.append_batch([prod(i), prod(i, "other")])
    done.set()
    thread.join()
    assert failures == []


def test_the_key_never_reaches_reprs_logs_or_pickles(ledger: Ledger, key: LedgerKey) -> None:
    stream = io.StringIO()
    logs.configure("DEBUG", stream)
    try:
        reopened = Ledger.open(SQLiteStore(ledger._store.path), key)
        reopened.append(prod(1))
        reopened.rotate_epoch()
    finally:
        logging.getLogger().handlers.clear()
    private = key.private_pem().decode()
    secret_lines = [line for line in private.splitlines() if not line.startswith("-----")]
    text = stream.getvalue() + repr(key) + repr(reopened) + repr(reopened._session)
    assert "ledger.opened" in text and key.key_id in text
    assert all(line not in text for line in secret_lines)
    assert all(secret.hex() not in text for secret in reopened._session._secrets)
    with pytest.raises(TypeError):
        pickle.dumps(key)
    with pytest.raises(TypeError):
        pickle.dumps(reopened._session)


def test_what_the_actor_sends_survives_pickling(ledger: Ledger) -> None:
    receipt = ledger.append(prod(1))
    draft = prod(2)
    for value in (receipt, draft, ledger.checkpoint(), ledger.inclusion_proof(receipt.id), ledger.consistency_proof(1)):
        assert pickle.loads(pickle.dumps(value)) == value
    error = pickle.loads(pickle.dumps(NotFoundError("no receipt 'x'")))
    assert (type(error), error.code) == (NotFoundError, "ledger_not_found")


def test_a_large_batch_is_signed_on_two_threads_with_the_same_signatures(db_path: Path, key: LedgerKey) -> None:
    """From _PARALLEL_SIGNING contractual receipts on, a helper thread signs half the batch:
    the signatures are the ones one thread makes (Ed25519 is deterministic), in order, and the
    batch verifies; advisory receipts in between keep their MACs; close() stops the thread."""
    from tai_autonomics.ledger import core

    ledger = Ledger.open(SQLiteStore(db_path), key, max_batch=512)
    digests = [hashlib.sha256(str(i).encode()).digest() for i in range(core._PARALLEL_SIGNING * 3 + 1)]
    assert ledger._sign_all(digests) == [key.sign(d) for d in digests]
    drafts = [ReceiptDraft("deploy.intent", "prod", {"i": i}, chain=f"policy-{i % 3}") if i % 5 else
              ReceiptDraft("pricing.quoted", "eval", {"i": i}) for i in range(300)]
    receipts = ledger.append_batch(drafts)
    assert [r.leaf_index for r in receipts] == list(range(300))
    for receipt in receipts:
        obj = receipt.to_dict()
        if obj["authority"] == "contractual":
            assert key.public.verify(base64.b64decode(obj["signature"]), bytes.fromhex(obj["hash"]))
        else:
            assert ledger.check_session_mac(receipt)
    report = verify_store(ledger._store, key.public)
    assert report.tree_size == 300 and report.contractual == 240 and report.advisory == 60
    signer = ledger._signer
    assert signer is not None
    ledger.close()
    assert ledger._signer is None and signer._shutdown


@settings(max_examples=300, deadline=None)
@given(st.datetimes(min_value=datetime(1001, 1, 1), timezones=st.sampled_from([timezone.utc, timezone(timedelta(hours=-7, minutes=-30))])))
def test_receipt_times_are_the_strftime_text(moment: datetime) -> None:
    """The time member is built with isoformat; it must stay the text strftime wrote."""
    assert rfc3339_utc(moment) == moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def test_receipt_ids_are_random_version_4_uuids() -> None:
    ids = {_random_uuid() for _ in range(5000)}
    assert len(ids) == 5000
    for text in ids:
        parsed = uuid.UUID(text)
        assert (str(parsed), parsed.version, parsed.variant) == (text, 4, uuid.RFC_4122)
    assert {text[19] for text in ids} == set("89ab") and {text[14] for text in ids} == {"4"}


class _CommitsWhileRead(SQLiteStore):
    """A store another instance appends to while this one opens, just as the latest checkpoint is
    read: what a second daemon starting beside a busy one meets."""

    def __init__(self, path: Path, other: Ledger) -> None:
        super().__init__(path)
        self._other: Ledger | None = other

    def checkpoint(self, size: int | None = None):
        if self._other is not None:
            other, self._other = self._other, None
            other.append(prod(99))
        return super().checkpoint(size)


def test_an_instance_opening_while_another_commits_is_not_refused_as_corrupt(db_path: Path, key: LedgerKey) -> None:
    first = Ledger.open(SQLiteStore(db_path), key)
    first.append(prod(1))
    second = Ledger.open(_CommitsWhileRead(db_path, first), key)
    assert second.size == 2 and second.checkpoint().size == 2
    second.close()
    first.close()
