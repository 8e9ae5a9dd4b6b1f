"""What the end-to-end tests share: the dev-profile daemon as a user runs it, over HTTP.

:func:`dev_daemon` starts ``tai-autonomics foreground`` (multiprocess thespian, SQLite, the
sandbox child) with extra worker args and release-file tables, waits for the gateway, and on
the way out stops it with SIGTERM and checks that it exited 0 and left no process behind (any
survivor is killed, and the test fails).
"""

from __future__ import annotations

import functools
import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tai_autonomics.actors.ledger_api import read_chain
from tai_autonomics.client import Client
from tests.helpers import wait_until, zombie
from tests.test_cli_daemon import REPO, Daemon, release

DEPLOY = {"sku_id": "sku-001", "target_cloud": "gcp", "customer_ref": "cust-7", "customer_account": "dev-account-0001",
          "region": "europe-west1", "artifacts": {"image": "registry.example/app:1.0"}, "cost": 250}
POLICY_ID = "dev-policy-0001"
STOP_TIMEOUT_S = 15


@contextmanager
def dev_daemon(tmp: Path, *, workers: str = "", release_tables: str = "", release_top: str = "") -> Iterator[Daemon]:
    """The running daemon, with ``http`` (a client of its gateway), ``tokens`` (role → bearer token),
    ``sandbox`` (the sandbox child's URL) and ``data_dir``.

    ``workers``: TOML appended to the shipped supervision.toml (``[workers.X.args]`` tables);
    ``release_tables``: TOML appended to the release file (e.g. ``[sandbox]``); ``release_top``: top-level
    keys put before its tables (e.g. ``mode = "eval"``).
    """
    tree = REPO / "supervision.toml"
    if workers:
        tree = tmp / "supervision.toml"
        tree.write_text((REPO / "supervision.toml").read_text() + workers)
    rel = release(tmp, tree)
    rel.write_text(release_top + rel.read_text() + release_tables)
    d = Daemon(tmp, rel)
    d.http = httpx.Client(base_url=f"http://127.0.0.1:{d.port}", timeout=60)
    try:
        d.wait_for_event("gateway_listening", timeout=60)
        tokens = dict(line.split("=", 1) for line in (tmp / "var" / "tokens.env").read_text().split())
        d.tokens = {role: tokens[f"TAI_TOKEN_{role.upper()}"].strip("'\"") for role in ("service", "auditor", "admin")}
        d.sandbox = next(e["url"] for e in d.lines() if e.get("event") == "sandbox_started")
        d.data_dir = tmp / "var"
        yield d
    finally:
        d.http.close()
        _stop(d)


def kill9(d: Daemon) -> None:
    """``kill -9`` of every process of the daemon, as a lost host does; its stop then checks only
    that none is left (there is no exit code to expect)."""
    d.killed = True
    pids: list[int] = []
    while fresh := [pid for pid in d.processes() if pid not in pids]:  # stopped first: none forks a new one
        for pid in fresh:
            _signal(pid, signal.SIGSTOP)
        pids += fresh
    for pid in pids:
        _kill(pid)
    wait_until(lambda: not _alive(pids), timeout=STOP_TIMEOUT_S, what="every killed process gone")


def _stop(d: Daemon) -> None:
    """SIGTERM, then: exit code 0 within the timeout, and none of its processes (thespian's, the
    sandbox child) left running; whatever is left is killed before the test fails."""
    pids = d.processes()
    code = None
    if d.proc.poll() is None:
        d.proc.send_signal(signal.SIGTERM)
    try:
        code = d.proc.wait(STOP_TIMEOUT_S)
        wait_until(lambda: not _alive(pids), timeout=STOP_TIMEOUT_S, what="every daemon process gone")
    finally:
        left = _alive(pids)
        if left or code is None:
            d.kill()
            for pid in left:
                _kill(pid)
    assert code == 0 or getattr(d, "killed", False), d.out.read_text()[-3000:]


def _alive(pids: list[int]) -> list[int]:
    return [p for p in pids if os.path.exists(f"/proc/{p}") and not zombie(p)]


def _kill(pid: int) -> None:
    _signal(pid, signal.SIGKILL)


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


#: poll a condition read from the daemon over HTTP: ``wait_until`` every 50 ms (gentler than every
#: 10 ms on a shared machine); ``until(predicate, timeout, what)``
until = functools.partial(wait_until, interval=0.05)


def as_(daemon: Daemon, role: str) -> dict[str, str]:
    """The Authorization header of ``role`` (service, auditor, admin)."""
    return {"Authorization": f"Bearer {daemon.tokens[role]}"}


def client(daemon: Daemon, role: str, **options) -> Client:
    """The typed client of the daemon's gateway (tai_autonomics.client) with ``role``'s token."""
    return Client(daemon.url, token=daemon.tokens[role], **options)


def receipts(daemon: Daemon, chain: str = POLICY_ID) -> list[dict]:
    """Every receipt on ``chain``, read through the gateway as an auditor with the typed client."""
    with client(daemon, "auditor") as auditor:
        return list(read_chain(lambda query: auditor.list_receipts(**query), chain))
