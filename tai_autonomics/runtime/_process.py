"""OS-process plumbing the actor library lacks: links to the parent, and a final sweep.

thespian has no links: when an actor process is SIGKILLed its children keep running, and
``ActorSystem.shutdown()`` can leave processes behind. We give each actor process the Linux
parent-death signal (so a killed supervisor takes its subtree with it, as linked processes do
in Erlang), and the process that starts a node becomes a subreaper so that every process of the
node stays its descendant and can be swept up after shutdown.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import time
from pathlib import Path
from typing import Any

from tai_autonomics.errors import InvalidRequest
from tai_autonomics.logs import LOG_LEVELS

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
_IMPORTED_IN = os.getpid()
_STARTING_MANAGER = logging.Logger.manager  # the node's logger hierarchy, before thespian replaces it in a fork


def in_forked_actor() -> bool:
    """True in a process forked by thespian for an actor (never on the in-process base)."""
    return os.getpid() != _IMPORTED_IN


def _find_prctl() -> Any:
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _find_prctl()
"""Looked up once, in the node's process: every actor process is forked with it, and looking it
up anew took 0.2 ms of each (re)start, on the path of the first call to a restarted actor."""


def die_with_parent() -> None:
    """Ask the kernel to SIGKILL this process when its parent dies (no-op in-process)."""
    if not in_forked_actor() or _PRCTL is None:
        return
    parent = os.getppid()
    try:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except OSError:
        return
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(1)


def kill(pid: int) -> None:
    """SIGKILL ``pid`` if it still exists."""
    try:
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def exited(pid: int) -> bool:
    """Whether process ``pid`` has ended (gone, or a zombie waiting to be reaped)."""
    fields = _stat_fields(pid)
    return fields is None or fields[0] == "Z"


def become_subreaper() -> None:
    """Adopt orphaned descendants: thespian's admin double-forks away from its starter.

    As a subreaper, the process that starts a node stays the ancestor of every process of it,
    so it can find (and, at the end, kill) all of them by walking its descendants.
    """
    if _PRCTL is None:
        return
    try:
        _PRCTL(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except OSError:
        pass


def descendants(root: int) -> list[int]:
    """All live descendants of ``root`` (children first-level first), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found: list[int] = []
    frontier = [root]
    while frontier:
        kids = [k for pid in frontier for k in children.get(pid, [])]
        found.extend(kids)
        frontier = kids
    return found


def identify(pids: list[int]) -> dict[int, int]:
    """pid → start time (clock ticks after boot) of each of ``pids`` still alive: a pid alone may
    be reused by an unrelated process once ours is gone, the pair names one process."""
    found = {}
    for pid in pids:
        started = _start_time(pid)
        if started is not None:
            found[pid] = started
    return found


def end(processes: dict[int, int], timeout: float) -> list[int]:
    """SIGKILL each of ``processes`` (from :func:`identify`) that is still that process, and wait
    until every one is gone, at most ``timeout`` seconds; the pids still running then.

    SIGKILL is delivered asynchronously: a process is still running for a moment after
    ``kill()`` returns, so whoever promises "no process left" has to wait for it. A zombie counts
    as gone (it runs nothing); the ones that are forks of this program are reaped.
    """
    for pid, started in processes.items():
        if _start_time(pid) == started:
            kill(pid)
    deadline = time.monotonic() + timeout
    while True:
        reap_forks()
        left = [pid for pid, started in processes.items() if _start_time(pid) == started and not exited(pid)]
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.01)  # polling /proc: there is no wait() for processes that are not our children


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (state first), or None if it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _start_time(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return int(fields[19]) if fields else None  # field 22 of stat(5); fields start at 3


def reap_forks() -> None:
    """Reap zombie children that are forks of this program (orphans a subreaper adopted).

    Only forks (same command line as ours) are reaped, so ``subprocess`` children the program
    started for itself keep their exit status for their own ``wait``.
    """
    me = Path("/proc/self/cmdline").read_bytes()
    for pid in _children(os.getpid()):
        try:
            if exited(pid) and Path(f"/proc/{pid}/cmdline").read_bytes() in (me, b""):
                os.waitpid(pid, os.WNOHANG)
        except (OSError, ChildProcessError):
            continue


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found.extend(int(c) for c in (task / "children").read_text().split())
        except OSError:
            continue
    return found


def set_log_level(level: Any) -> str:
    """Set this process's log level, for the ``$log_level`` call every actor answers.

    A thespian actor process is forked with two logger hierarchies: the one of the process that
    started the node, which the modules imported before the fork log through (their lines go
    straight to the inherited stdout), and thespian's, whose root forwards records to its logger
    process after dropping those below its handler's level. Both roots and their handlers move,
    and both managers forget their cached levels, so raising or lowering takes effect at once.
    """
    if not isinstance(level, str) or level.upper() not in LOG_LEVELS:
        raise InvalidRequest(f"log level must be one of {', '.join(LOG_LEVELS)}",
                             detail={"field": "level"})
    name = level.upper()
    for manager in {id(m): m for m in (logging.Logger.manager, _STARTING_MANAGER)}.values():
        manager.root.setLevel(name)
        for handler in manager.root.handlers:
            handler.setLevel(name)
        # a logger caches isEnabledFor per level; setLevel clears only its own manager's (CPython's
        # private Manager._clear_cache, which typeshed leaves out)
        manager._clear_cache()  # type: ignore[attr-defined]
    return name


_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def usage(pid: int) -> tuple[int, float] | None:
    """``(rss_bytes, cpu_seconds)`` of process ``pid`` from /proc (user + system CPU time since it
    started), or None if it is gone: what an operator's ``top`` shows of an actor's process."""
    fields = _stat_fields(pid)
    if fields is None:
        return None
    # stat(5) fields 14 (utime), 15 (stime) and 24 (rss, in pages); the list starts at field 3
    return int(fields[21]) * _PAGE_BYTES, (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS
