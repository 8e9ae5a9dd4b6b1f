"""The order of a supervisor's work when a child dies, on a supervisor whose thespian calls are
recorded instead of made: a restart waits for the replacement's fork and start, so that comes
before the registry's notice and the crash report (each a transmit)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from thespian.actors import Actor, ChildActorExited

from tai_autonomics.runtime import parse_tree
from tai_autonomics.runtime.messages import Init, Started
from tai_autonomics.runtime.supervisor import Supervisor
from tests.runtime.support import workers


class _Recorded(Supervisor):
    """A supervisor whose thespian calls (create, send, timers) only append to ``events``."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[str] = []

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


@pytest.fixture
def supervisor(monkeypatch: pytest.MonkeyPatch) -> Iterator[_Recorded]:
    monkeypatch.setattr(Actor, "send", lambda self, target, msg: self.events.append(f"send {type(msg).__name__}"))
    spec = parse_tree({"root": "root", "supervisors": {"root": {"children": ["w"]}}, "workers": workers("w")})
    sup = _Recorded()
    sup.receiveMessage(Init("root", "root.1", {}, "registry", spec), "parent")
    sup.receiveMessage(Started("w", sup._children[0].incarnation, 4242), "child-1")
    sup.events.clear()
    handler = _Into(sup.events)
    logger = logging.getLogger("tai_autonomics.runtime.supervisor")
    logger.addHandler(handler)
    try:
        yield sup
    finally:
        logger.removeHandler(handler)


def test_a_dead_child_is_forked_again_before_the_registry_and_the_log_hear_of_it(supervisor: _Recorded) -> None:
    supervisor.receiveMessage(ChildActorExited("child-1"), "system")
    events = supervisor.events
    assert events.index("create") < events.index("send Init") < events.index("send Unregister")
    assert events.index("send Unregister") < events.index("log crash report")
    assert events.count("send Unregister") == 1 and events.count("log crash report") == 1
