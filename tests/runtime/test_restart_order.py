"""The order of a supervisor's work when a child dies, on a supervisor whose thespian calls are
recorded instead of made: a restart waits for the replacement's fork and start, so that comes
before the registry's notice and the crash report (each a transmit)."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import Any

import pytest
from thespian.actors import Actor, ChildActorExited

from tai_autonomics.runtime import parse_tree
from tai_autonomics.runtime.messages import Init, Register, Started
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


def test_the_supervisor_registers_a_started_child_at_the_address_it_reported_from(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The registration goes from the supervisor, on its open connection to the registry, as
    soon as ``Started`` arrives: not from the fresh child over a new connection."""
    sent: list[tuple[Any, Any]] = []
    monkeypatch.setattr(_Recorded, "events", [], raising=False)
    monkeypatch.setattr(Actor, "send", lambda self, target, msg: sent.append((target, msg)))
    sup = _started(intensity=3)
    sent.clear()
    sup.receiveMessage(ChildActorExited("child-1"), "system")
    incarnation = sup._children[0].incarnation
    sup.receiveMessage(Started("w", incarnation, 4343), "child-2 as it reported")
    registrations = [(target, msg) for target, msg in sent if isinstance(msg, Register)]
    assert registrations == [("registry", Register("w", "child-2 as it reported", incarnation, 4343))]


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
