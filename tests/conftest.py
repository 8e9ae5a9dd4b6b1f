"""Fixtures shared by every test area."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from tai_autonomics import logs
from tai_autonomics.runtime import Node
from tai_autonomics.runtime.messages import Moved


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answer_to_tell(node: Node, timeout: float) -> Any:
    """The next message to the node's own actor system that is not a :class:`Moved` notice.

    The node's client subscribes to every name it resolves on a multiprocess base, so a test
    that sends a raw ``Call`` to an actor it then stops may hear the registry's notice before
    or after the dying actor's answer: thespian orders messages per sender, not across them."""
    answer = node._system.listen(timeout)
    while isinstance(answer, Moved):
        answer = node._system.listen(timeout)
    return answer


@pytest.fixture(scope="session", autouse=True)
def _json_logs() -> None:
    logs.configure("INFO")
