"""The leased sequencer (tai_autonomics/ledger/_sequencer.py) on the Firestore emulator: one
holder integrates what the other instances queue and answers each draft; the lease expires,
is taken over, and fences a stale holder out; a withdrawn or hand-edited entry stores nothing."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest
from google.cloud import firestore
from hypothesis import given, settings
from hypothesis import strategies as st

from tai_autonomics.ledger import DraftError, Ledger, LedgerKey, ReceiptDraft, SQLiteStore, verify_store
from tai_autonomics.ledger._sequencer import (
    NotSequencer,
    Sequencer,
    draft_from_json,
    draft_to_json,
    open_sequencer,
)
from tai_autonomics.ledger.errors import LedgerBusy, LedgerError
from tai_autonomics.ledger.firestore_store import FirestoreStore
from tai_autonomics.ledger.operations import CoverageExceeded, OpenOperation, OperationExists
from tai_autonomics.ledger.receipts import Receipt
from tests.helpers import EMULATOR_PROJECT
from tests.ledger.test_operations import POLICY, intent, outcome

LEASE_S = 2.0


class Clock:
    """Wall-clock seconds a test moves by hand. :meth:`at` runs an action at the n-th read from
    now: the sequencer reads its clock for ``holding`` as it starts an integration, again in
    the fence's check, and last for the renewed lease, after the store read and before the commit."""

    def __init__(self) -> None:
        self.now = 1_000_000.0
        self._reads = 0
        self._action: tuple[int, Callable[[], object]] | None = None

    def at(self, read: int, action: Callable[[], object]) -> None:
        self._reads, self._action = 0, (read, action)

    def __call__(self) -> float:
        self._reads += 1
        if self._action is not None and self._action[0] == self._reads:
            action, self._action = self._action[1], None
            action()
        return self.now


class Instance:
    """One daemon instance's ledger and sequencer on the shared ledger document."""

    def __init__(self, name: str, key: LedgerKey, clock: Clock, timeout_s: float = 4.0) -> None:
        self.store = FirestoreStore(name, project=EMULATOR_PROJECT)
        self.ledger = Ledger.open(self.store, key, max_batch=self.store.max_batch)
        self.sequencer = Sequencer(self.ledger, self.store, max_batch=self.store.max_batch, lease_s=LEASE_S,
                                   interval_s=0.25, timeout_s=timeout_s, clock=clock)


@pytest.fixture
def instances(firestore_emulator: str, key: LedgerKey) -> Iterator[Callable[..., Instance]]:
    name = f"seq-{uuid.uuid4().hex[:12]}"
    made: list[Instance] = []

    def make(clock: Clock, timeout_s: float = 4.0) -> Instance:
        made.append(Instance(name, key, clock, timeout_s))
        return made[-1]

    yield make
    for instance in made:
        instance.ledger.close()


def note(text: str) -> ReceiptDraft:
    return ReceiptDraft("note.recorded", "prod", {"text": text}, chain=POLICY)


def test_the_holder_answers_each_queued_draft_with_its_receipt_or_its_refusal(instances, key: LedgerKey) -> None:
    clock = Clock()
    a, b = instances(clock), instances(clock)
    a.sequencer.tick()
    b.sequencer.tick()
    assert a.sequencer.holding and not b.sequencer.holding
    assert b.sequencer.lease is not None and b.sequencer.lease.holder == a.sequencer.instance
    mine = a.sequencer.integrate([intent("op-a", key="k", cost="900")])  # the holder's own: at once
    assert isinstance(mine[0], Receipt) and mine[0].leaf_index == 0
    entry = b.sequencer.enqueue([note("first"), intent("op-b", key="k"), intent("op-c", cost="200"),
                                 intent("op-d", cost="50"), outcome("op-a")])
    assert b.sequencer.collect() == {}  # not integrated yet: nothing to answer
    assert a.sequencer.integrate_pending() == 5
    answers = b.sequencer.collect()[entry]
    assert isinstance(answers, list) and b.sequencer.queued == 0
    stored, claimed, too_much, fits, closed = answers
    assert isinstance(claimed, OperationExists) and claimed.detail["operation"]["operation_id"] == "op-a"
    assert isinstance(too_much, CoverageExceeded) and too_much.detail["current_cost"] == "900"
    assert [r.leaf_index for r in (stored, fits, closed)] == [1, 2, 3]  # refusals take no place
    assert [r.kind for r in (stored, fits, closed)] == ["note.recorded", "deploy.intent", "deploy.completed"]
    assert a.sequencer.integrate_pending() == 0  # answered once
    report = verify_store(a.store, key.public)
    assert report.tree_size == 4 and {k.sku: u.count for k, u in a.ledger.usage(POLICY).items()} == {"sku-002": 2}
    # b sees the holder's receipts too: it serves proofs for them
    assert b.ledger.inclusion_proof(closed.id).tree_size == 4
    # an entry whose every draft is refused is answered, and the tree stays as it was
    again = b.sequencer.enqueue([intent("op-e", key="k")])
    assert a.sequencer.integrate_pending() == 1
    ((refused,),) = [b.sequencer.collect()[again]]
    assert isinstance(refused, OperationExists) and a.store.size() == 4 and a.sequencer.holding


def test_an_expired_lease_is_taken_over_and_fences_the_stale_holder_out(instances) -> None:
    old_clock, new_clock = Clock(), Clock()
    old, new = instances(old_clock), instances(new_clock)
    old.sequencer.tick()
    new.sequencer.tick()
    assert old.sequencer.holding and not new.sequencer.holding
    old.sequencer.integrate([note("before")])
    # the holder hangs; the lease runs out by the other's clock, which takes it over
    new_clock.now += LEASE_S + 0.1
    new.sequencer.tick()
    assert new.sequencer.holding and new.sequencer.lease.term == 2 and new.sequencer.takeovers == 1
    # the stale holder still believes it holds the lease: its batch is refused, nothing is written
    with pytest.raises(NotSequencer):
        old.sequencer.integrate([note("stale")])
    assert not old.sequencer.holding
    assert old.store.size() == 1
    # taken over between the stale holder's read and its commit: the head's precondition refuses
    # the commit, the retry reads the new lease and gives up; no fork
    old_clock.now = new_clock.now + LEASE_S + 0.1
    old.sequencer.tick()  # new's lease ran out by old's clock: old takes it back (term 3)
    assert old.sequencer.holding and old.sequencer.lease.term == 3
    new_clock.now = old_clock.now + LEASE_S + 0.1
    old_clock.at(3, new.sequencer.tick)  # after old's read of the head, before its commit
    with pytest.raises(NotSequencer):
        old.sequencer.integrate([note("raced")])
    assert new.sequencer.holding and new.sequencer.lease.term == 4
    assert [r.to_dict()["payload"]["text"] for r in new.ledger.iter_receipts()] == ["before"]
    assert isinstance(new.sequencer.integrate([note("after")])[0], Receipt)
    assert new.store.size() == 2


def test_a_lease_given_back_is_taken_at_the_next_beat(instances) -> None:
    clock = Clock()
    a, b = instances(clock), instances(clock)
    a.sequencer.tick()
    a.sequencer.release()
    b.sequencer.tick()
    assert b.sequencer.holding and not a.sequencer.holding


def test_an_entry_withdrawn_at_its_deadline_is_never_integrated(instances) -> None:
    clock = Clock()
    holder, writer = instances(clock), instances(clock, timeout_s=1.0)
    holder.sequencer.tick()
    writer.sequencer.enqueue([note("late")])
    clock.now += 1.0
    (answer,) = writer.sequencer.collect().values()
    assert isinstance(answer, LedgerBusy) and answer.code == "ledger_busy"
    assert holder.sequencer.integrate_pending() == 0 and holder.store.size() == 0
    # withdrawn while the holder was integrating it: the holder's commit is refused, nothing stored
    writer.sequencer.enqueue([note("raced")])
    clock.now += 1.0
    holder.sequencer.tick()  # half its lease gone: renewed
    clock.at(4, writer.sequencer.collect)  # after the holder read the entry, before its commit
    assert holder.sequencer.integrate_pending() == 0
    assert holder.store.size() == 0 and writer.sequencer.queued == 0


def test_a_pending_entry_edited_into_nonsense_is_answered_with_a_refusal_naming_it(instances) -> None:
    clock = Clock()
    holder, writer = instances(clock), instances(clock)
    holder.sequencer.tick()
    entry = writer.sequencer.enqueue([note("fine")])
    client = firestore.Client(project=EMULATOR_PROJECT)
    doc = client.collection("ledgers").document(writer.store.name).collection("pending").document(entry)
    doc.update({"drafts": [{"kind": "note.recorded", "mode": "prod", "payload": "{not json"}]})
    client.close()
    assert holder.sequencer.integrate_pending() == 0
    ((refused,),) = writer.sequencer.collect().values()  # one draft queued: one refusal
    assert isinstance(refused, DraftError) and f"Firestore document {doc.path}" in refused.message
    assert holder.store.size() == 0


_TEXT = st.text(max_size=20)
_JSON = st.recursive(st.none() | st.booleans() | st.integers(-2**53 + 1, 2**53 - 1) | _TEXT,
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3),
                     max_leaves=8)


@settings(max_examples=60, deadline=None)
@given(payload=st.dictionaries(_TEXT, _JSON, max_size=4), key=_TEXT, eval_mode=st.booleans())
def test_a_draft_survives_its_pending_form(payload: dict, key: str, eval_mode: bool) -> None:
    draft = (ReceiptDraft("pricing.quoted", "eval", payload) if eval_mode else
             ReceiptDraft("deploy.intent", "prod", payload, chain=POLICY, operation_id="op",
                          effect=OpenOperation("deploy", key, "f")))
    assert draft_from_json(draft_to_json(draft)) == draft


@settings(max_examples=100, deadline=None)
@given(value=st.dictionaries(st.sampled_from(["kind", "mode", "payload", "chain", "operation_id", "effect"]),
                             _JSON, max_size=6) | _JSON)
def test_anything_else_in_a_pending_draft_is_a_clear_refusal(value) -> None:
    try:
        draft_from_json(value)
    except DraftError as exc:
        assert exc.code == "ledger_bad_draft" and exc.message


@pytest.mark.parametrize(("settings_", "named"), [
    ({"sequencing": "fastest"}, "sequencing"),
    ({"sequencer_lease_s": "2"}, "sequencer_lease_s"),
    ({"sequencer_interval_s": 0}, "sequencer_interval_s"),
    ({"sequencer_lease_s": 1, "sequencer_interval_s": 1}, "shorter than"),
])
def test_bad_sequencer_settings_are_refused_naming_them(instances, settings_: dict, named: str) -> None:
    store = instances(Clock()).store
    with pytest.raises(LedgerError) as err:
        open_sequencer({"store": "firestore", **settings_}, store, Ledger.open(store, LedgerKey.generate()),
                       store.max_batch)
    assert named in err.value.message


def test_optimistic_sequencing_and_sqlite_have_no_lease(instances, tmp_path) -> None:
    store = instances(Clock()).store
    ledger = Ledger.open(store, LedgerKey.generate())
    assert open_sequencer({"store": "firestore", "sequencing": "optimistic"}, store, ledger, store.max_batch) is None
    assert isinstance(open_sequencer({"store": "firestore"}, store, ledger, store.max_batch), Sequencer)
    sqlite = SQLiteStore(tmp_path / "ledger.sqlite3")
    assert open_sequencer({}, sqlite, Ledger.open(sqlite, LedgerKey.generate()), 256) is None
    sqlite.close()
