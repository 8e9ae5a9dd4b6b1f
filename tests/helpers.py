"""Helpers shared by every test area (plain functions and constants; fixtures live in tests/fixtures/).

Test modules import from here, never from a conftest: a conftest is pytest's to load, and importing
its fixtures into a module shadows them (the ``noqa: F811`` this layout replaced)."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tai_autonomics.runtime import Node

MULTIPROCESS = ["multiprocUnixBase", "multiprocTCPBase"]
BASES = ["simpleSystemBase", *MULTIPROCESS]

# The project id every Firestore test uses on the session's emulator (tests/fixtures/firestore.py).
EMULATOR_PROJECT = "tai-autonomics-test"

# Other implementations' test vectors, vendored byte for byte with their licences (tests/conformance/README.md).
CONFORMANCE = Path(__file__).resolve().parent / "conformance"


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


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition",
               interval: float = 0.01) -> None:
    """Poll a condition (not a fixed sleep) every ``interval`` s: fail if it does not hold within ``timeout``.

    Polling without a pause would spin a core the other processes of the test need (2 cores are
    shared by the whole suite), so even a tight wait sleeps between checks."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def zombie(pid: int) -> bool:
    """Whether ``pid`` is gone or a zombie (exited, not yet reaped): a process that no longer runs."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def conformance_dir(*parts: str) -> Path:
    """A folder of the vendored conformance data; fails (never skips) when it is missing."""
    path = CONFORMANCE.joinpath(*parts)
    if not path.is_dir():
        pytest.fail(f"conformance data missing: {path} (vendored under tests/conformance/)")
    return path


def conformance_files(*parts: str, pattern: str = "*.json") -> list[Path]:
    """Every file under a conformance folder, for parametrising (a missing folder fails at collection)."""
    path = CONFORMANCE.joinpath(*parts)
    files = sorted(path.rglob(pattern))
    if not files:
        raise RuntimeError(f"conformance data missing: no {pattern} under {path}")
    return files


def listening_inodes() -> dict[int, str]:
    """inode → local address of every listening TCP socket (IPv4 and IPv6)."""
    found = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if fields[3] == "0A":  # LISTEN
                    found[int(fields[9])] = fields[1]
    return found


def socket_inodes(pid: int) -> set[int]:
    inodes = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:  # the process is gone
        return inodes
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:  # closed while listing: the others still count
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes
