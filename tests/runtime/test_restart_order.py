"""The order of a supervisor's work when a child dies, on a supervisor whose thespian calls are
recorded instead of made: a restart waits for the replacement's fork and start, so that comes
before the registry's notice and the crash report (each a transmit); the replacement is
registered as it is created, and calls that reach it before its start is confirmed wait in it."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import Any

import pytest
from thespian.actors import Actor, ChildActorExited

from tai_autonomics.runtime import DEFERRED, parse_tree
from tai_autonomics.runtime.errors import ActorRestarting
from tai_autonomics.runtime.messages import Call, Init, Register, Reply, Started
from tai_autonomics.runtime.server import Server
from tai_autonomics.runtime.supervisor import Supervisor
from tests.runtime.support import workers


class _Recorded(Supervisor):
    """A supervisor whose thespian calls (create, send, timers) only append to ``events``."""

    events: list[str]  # one list for the whole test (the ``events`` fixture)

    def createActor(self, actorClass: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N802,N803 (thespian's)
        self.events.append("create")
        return f"child-{self.events.count('create')}"

    def wakeupAfter(self, timePeriod: Any, payload: Any = None) -> None:  # noqa: N802,N803 (thespian's)
        """No timers: the test delivers every event itself."""


class _Into(logging.Handler):
    def __init__(self, events: list[str]) -> None:
        super().__init__(logging.ERROR)
        self.events = events

    def emit(self, record: logging.LogRecord) -> None:
        self.events.append(f"log {record.getMessage()}")


def _started(intensity: int) -> _Recorded:
    spec = parse_tree({"root": "root", "supervisors": {"root": {"children": ["w"], "intensity": intensity}},
                       "workers": workers("w")})
    sup = _Recorded()
    sup.receiveMessage(Init("root", "root.1", {}, "registry", spec), "parent")
    sup.receiveMessage(Started("w", sup._children[0].incarnation, 4242), "child-1")
    sup.events.clear()
    return sup


@pytest.fixture
def events(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """What every recorded supervisor does and what the supervisor module logs, in one list."""
    recorded: list[str] = []
    monkeypatch.setattr(_Recorded, "events", recorded, raising=False)
    monkeypatch.setattr(Actor, "send", lambda self, target, msg: recorded.append(f"send {type(msg).__name__}"))
    handler = _Into(recorded)
    logger = logging.getLogger("tai_autonomics.runtime.supervisor")
    logger.addHandler(handler)
    try:
        yield recorded
    finally:
        logger.removeHandler(handler)


def test_a_dead_child_is_forked_again_before_the_registry_and_the_log_hear_of_it(events: list[str]) -> None:
    _started(intensity=3).receiveMessage(ChildActorExited("child-1"), "system")
    assert events.index("create") < events.index("send Init") < events.index("send Unregister")
    assert events.index("send Unregister") < events.index("log crash report")
    assert events.count("send Unregister") == 1 and events.count("log crash report") == 1


def test_a_supervisor_that_gives_up_reports_the_crash_first(events: list[str]) -> None:
    _started(intensity=0).receiveMessage(ChildActorExited("child-1"), "system")
    assert "create" not in events
    assert events.index("send Unregister") < events.index("log crash report") < events.index("log supervisor giving up")


def test_the_supervisor_registers_a_replacement_as_it_creates_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Callers learn the new address while the replacement starts, not after it confirmed its
    start; the registration goes on the supervisor's open connection to the registry."""
    sent: list[tuple[Any, Any]] = []
    monkeypatch.setattr(_Recorded, "events", [], raising=False)
    monkeypatch.setattr(Actor, "send", lambda self, target, msg: sent.append((target, msg)))
    sup = _started(intensity=3)
    sent.clear()
    sup.receiveMessage(ChildActorExited("child-1"), "system")
    child = sup._children[0]
    assert [type(msg).__name__ for _, msg in sent][:2] == ["Init", "Register"]
    # the address createActor returned (thespian sends it once the child announced itself), and
    # the pid of the process made for it (this one on the in-process base, as here)
    assert sent[1] == ("registry", Register("w", child.address, child.incarnation, os.getpid()))
    sent.clear()
    sup.receiveMessage(Started("w", child.incarnation, 4343), child.address)
    assert not [msg for _, msg in sent if isinstance(msg, Register)]


def test_a_starting_worker_only_confirms_its_start_to_its_starter(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fresh process sends one message on a restart's path, on the connection it opened to
    announce itself to its parent; the starter registers it."""
    sent: list[tuple[Any, Any]] = []
    monkeypatch.setattr(Actor, "send", lambda self, target, msg: sent.append((target, msg)))
    monkeypatch.setattr(Server, "myAddress", "w's address", raising=False)  # no thespian around it
    worker = Server()
    worker.receiveMessage(Init("w", "w.1", {}, "registry"), "supervisor")
    assert [(target, type(msg)) for target, msg in sent] == [("supervisor", Started)]
    assert sent[0][1] == Started("w", "w.1", os.getpid())


class _Ready(Server):
    """Answers ``ready`` with what its init set; ``deferred`` in the args: confirms later."""

    def init(self, args: dict[str, Any]) -> Any:
        self.ready = "after init"
        return DEFERRED if args.get("deferred") else None

    def call_ready(self, payload: Any) -> str:
        return self.ready


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, Any]]:
    recorded: list[tuple[Any, Any]] = []
    monkeypatch.setattr(Actor, "send", lambda self, target, msg: recorded.append((target, msg)))
    return recorded


def _replies(sent: list[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
    return [(target, msg.value if msg.error is None else msg.error.code)
            for target, msg in sent if isinstance(msg, Reply)]


def test_a_call_that_reaches_a_replacement_before_its_init_is_answered_after_it(
        sent: list[tuple[Any, Any]]) -> None:
    """Registered as it is created, a replacement may get a call before ``Init`` (another
    connection): it waits for the start, as in an OTP mailbox, and sees the state init made."""
    worker = _Ready()
    worker.receiveMessage(Call("r1", "ready"), "caller")
    assert _replies(sent) == []
    worker.receiveMessage(Init("w", "w.1", {}, "registry"), "supervisor")
    assert _replies(sent) == [("caller", "after init")]
    assert [type(msg) for _, msg in sent].index(Started) < [type(msg) for _, msg in sent].index(Reply)


def test_a_deferred_start_holds_calls_until_confirmed_and_refuses_them_unrun_if_it_fails(
        sent: list[tuple[Any, Any]]) -> None:
    confirmed, failed = _Ready(), _Ready()
    for worker in (confirmed, failed):
        worker.receiveMessage(Init("w", "w.1", {"deferred": True}, "registry"), "supervisor")
        worker.receiveMessage(Call("r1", "ready"), "caller")
    assert _replies(sent) == []
    confirmed.confirm_started()
    assert _replies(sent) == [("caller", "after init")]
    sent.clear()
    failed.fail_start("a dependency said no")
    assert _replies(sent) == [("caller", ActorRestarting.code)]  # the caller sends it to the next one
