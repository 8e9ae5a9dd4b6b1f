"""The wire shape of the messages of every call: what crosses between processes is pickled, and
an unpicklable or mangled reply is silently dropped by thespian (the caller would hang)."""

from __future__ import annotations

import pickle

import pytest

from tai_autonomics.runtime.messages import Batch, Call, Cast, ErrorInfo, Reply, call_refs

_MESSAGES = [
    Call("0123456789abcdef.7", "append", {"draft": [1, 2.5, "x", None]}),
    Call("r.1", "ping"),
    Cast("note", ("a", b"\x00\xff")),
    Cast("tick"),
    Reply("r.2", value={"receipt": "abc"}),
    Reply("r.3", error=ErrorInfo("ledger_unavailable", "disk full", "LedgerUnavailable", {"path": "/x"})),
    Batch((Call("r.4", "a", 1), Cast("b", 2), Reply("r.5", value=[3]))),
]


@pytest.mark.parametrize("message", _MESSAGES, ids=lambda m: type(m).__name__)
def test_a_call_message_round_trips_through_pickle_with_every_field(message: object) -> None:
    for protocol in (pickle.DEFAULT_PROTOCOL, pickle.HIGHEST_PROTOCOL):
        copy = pickle.loads(pickle.dumps(message, protocol))
        assert type(copy) is type(message)
        assert copy == message
        assert copy is not message


def test_a_call_pickles_as_its_fields_without_their_names() -> None:
    """A dataclass pickled its field names with every message: 118 bytes for this call, now 53."""
    data = pickle.dumps(Call("3f2a9c1b7d4e5f60.123", "echo", 5), pickle.HIGHEST_PROTOCOL)
    assert b"payload" not in data
    assert len(data) <= 60


def test_call_references_share_one_random_prefix_and_never_repeat() -> None:
    """A random prefix per reference costs an os.urandom system call on every call."""
    refs = call_refs()
    taken = [next(refs) for _ in range(1000)]
    assert len(set(taken)) == len(taken)
    assert {ref.rsplit(".", 1)[0] for ref in taken} == {taken[0].rsplit(".", 1)[0]}
    assert next(call_refs()).rsplit(".", 1)[0] != taken[0].rsplit(".", 1)[0]
