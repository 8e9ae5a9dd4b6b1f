"""What a :class:`Client` does when the registry says the incarnation it called is gone, against a
scripted thespian context (the order of arrivals is the point, so no real actors)."""

from __future__ import annotations

from typing import Any

import pytest

from tai_autonomics.runtime import ActorCrashed
from tai_autonomics.runtime.client import Client
from tai_autonomics.runtime.messages import Call, Location, Moved, Reply, Whereis

_DEAD = object()  # the address of the incarnation that dies with the call


class _Context:
    """A thespian context whose ask answers with the death notice; its first listen brings the
    reply to the call when ``replied`` (the dead incarnation answered just before it died)."""

    def __init__(self, replied: bool) -> None:
        self.replied = replied
        self.sent: list[Call] = []
        self.listened: list[float] = []

    def ask(self, address: Any, msg: Call, timeout: float) -> Any:
        self.sent.append(msg)
        return Moved("echo", "echo.1")

    def listen(self, timeout: float) -> Any:
        self.listened.append(timeout)
        if self.replied and len(self.listened) == 1:
            return Reply(self.sent[-1].ref, value="answered before dying")
        return None


def _client(context: _Context) -> Client:
    client = Client(context, registry=None, multiprocess=True)
    client._cache["echo"] = Location("echo", _DEAD, "echo.1", 1)
    return client


def test_a_reply_that_arrives_just_after_the_death_notice_is_still_the_answer() -> None:
    assert _client(_Context(replied=True)).call("echo", "echo", 1) == "answered before dying"


def test_a_call_lost_with_its_callee_fails_after_one_short_look_for_its_reply() -> None:
    """The first call after a restart waits out that look: it was 10 ms, the larger part of a restart."""
    context = _Context(replied=False)
    client = _client(context)
    with pytest.raises(ActorCrashed, match="exited before answering"):
        client.call("echo", "echo", 1)
    assert context.listened and sum(context.listened) <= 0.002
    assert "echo" not in client._cache  # the next call looks the name up again



class _CutShort:
    """A context whose first ask comes back empty at once, as thespian's does on
    multiprocTCPBase when an earlier send to a dead address fails during it."""

    def __init__(self) -> None:
        self.asked: list[Any] = []

    def ask(self, address: Any, msg: Any, timeout: float) -> Any:
        self.asked.append(msg)
        return None if len(self.asked) == 1 else Location(msg.name, "new address", "echo.2", 2)


def test_a_lookup_cut_short_by_the_transport_is_asked_again() -> None:
    context = _CutShort()
    client = Client(context, registry="registry", multiprocess=True)
    assert client.whereis("echo", wait=5).address == "new address"
    assert [type(msg) for msg in context.asked] == [Whereis, Whereis]
