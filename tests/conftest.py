"""Fixtures shared by every test area."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import pytest

from tai_autonomics import logs
from tai_autonomics.runtime import Node


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listen_for(node: Node, timeout: float, wanted: Callable[[Any], bool]) -> Any:
    """The next message to the node's own actor system that is ``wanted`` (None after ``timeout``).

    Read through the node's client: it subscribes to every name it resolves on a multiprocess
    base, so the registry's :class:`~tai_autonomics.runtime.messages.Moved` notices about actors
    of earlier calls (or tests) arrive at the same inbox, and the client must see them or its
    cached address of that actor goes stale."""
    return node._own_client.listen(timeout, wanted)


@pytest.fixture(scope="session", autouse=True)
def _json_logs() -> None:
    logs.configure("INFO")
