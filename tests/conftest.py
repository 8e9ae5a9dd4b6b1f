"""Fixtures shared by every test area."""

from __future__ import annotations

import socket

import pytest

from tai_autonomics import logs


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session", autouse=True)
def _json_logs() -> None:
    logs.configure("INFO")
