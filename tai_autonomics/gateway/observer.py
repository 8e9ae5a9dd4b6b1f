"""The observer (Erlang's ``observer``/``etop``): the live tree with each actor's ``$stats``.

What ``/v1/supervision``, ``/metrics`` and the shell's ``top`` show of each actor: its process's
memory (RSS) and CPU, messages handled (in all and per second), pending outbound messages (see
:mod:`tai_autonomics.runtime.stats`), and its restarts and last crash (its supervisor keeps those).

Every actor is asked at once and each answer is bounded by :data:`STATS_TIMEOUT_S`: an actor
that does not answer (busy, restarting, hung) is shown with ``"stats": null`` and a
``stats_error`` code, and never holds up the route or the rest of the tree.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from tai_autonomics.gateway import supervision
from tai_autonomics.gateway.bridge import ActorBridge
from tai_autonomics.gateway.errors import ApiError

STATS_TIMEOUT_S = 1.0
"""How long one actor's ``$stats`` may take: it reads /proc and counts, so an actor that needs
longer is busy with something else (one message at a time) and is shown as not answering."""

SORT_KEYS = ("rss", "cpu", "msgs", "restarts")


async def observe(bridge: ActorBridge, root: str, timeout_s: float = STATS_TIMEOUT_S) -> dict[str, Any]:
    """The tree of :func:`supervision.walk` with ``stats`` (and, if none, ``stats_error``) on
    every node, the root's included. The root's failure to list its children is the caller's
    error (503), as for the walk."""
    tree = await supervision.walk(bridge, root)
    nodes = list(supervision.nodes(tree))
    answers = await asyncio.gather(*(_stats(bridge, node, timeout_s) for node in nodes))
    for node, (stats, error) in zip(nodes, answers, strict=True):
        node["stats"] = stats
        if error:
            node["stats_error"] = error
    return tree


async def _stats(bridge: ActorBridge, node: dict[str, Any], timeout_s: float) -> tuple[Any, str]:
    if node.get("state", "running") != "running":  # the root has no state: it runs if it answered
        return None, "not_running"
    try:
        # the bridge's own timeout ends the call; wait_for is the bound should a pool thread be late
        return await asyncio.wait_for(bridge.call(node["name"], "$stats", timeout_s=timeout_s), timeout_s + 1), ""
    except ApiError as exc:
        return None, exc.code
    except TimeoutError:
        return None, "call_timeout"


def rows(tree: dict[str, Any]) -> list[dict[str, Any]]:
    """One flat row per actor of an observed tree (what ``top`` lists), depth first."""
    found = []
    for supervisor, node in [(None, tree), *supervision.edges(tree)]:
        stats = node.get("stats") or {}
        found.append({"actor": node["name"], "supervisor": supervisor, "type": node.get("type"),
                      "state": node.get("state", "running"), "pid": stats.get("pid", node.get("pid")),
                      "rss_bytes": stats.get("rss_bytes"), "cpu_seconds": stats.get("cpu_seconds"),
                      "messages": stats.get("messages"), "messages_per_s": stats.get("messages_per_s"),
                      "pending_outbound": stats.get("pending_outbound"), "restarts": node.get("restarts", 0),
                      "last_crash": node.get("last_crash"), "stats_error": node.get("stats_error")})
    return found


class CpuSampler:
    """CPU % of each actor's process between two looks (an operator's ``top`` refreshing): the
    actor reports CPU seconds since its process started, a share needs the time between."""

    def __init__(self) -> None:
        self._seen: dict[tuple[str, Any], tuple[float, float]] = {}

    def annotate(self, rows: list[dict[str, Any]], now: float) -> None:
        """Add ``cpu_percent`` to each row: since the last look at the same process, else None."""
        seen = {}
        for row in rows:
            key, cpu = (row["actor"], row["pid"]), row["cpu_seconds"]
            before = self._seen.get(key)
            row["cpu_percent"] = None
            if cpu is not None:
                seen[key] = (now, cpu)
                if before is not None and now > before[0]:
                    row["cpu_percent"] = round(100 * max(0.0, cpu - before[1]) / (now - before[0]), 1)
        self._seen = seen


def sort_value(row: dict[str, Any], key: str) -> tuple[float, float]:
    """What ``top --sort KEY`` orders by (largest first); an actor that did not answer comes last."""
    def number(value: Any) -> float:
        return float("-inf") if value is None else float(value)

    if key == "cpu":  # the share now if known, then the total
        return number(row.get("cpu_percent")), number(row["cpu_seconds"])
    if key == "msgs":
        return number(row["messages_per_s"]), number(row["messages"])
    if key == "restarts":
        return number(row["restarts"]), number(row["rss_bytes"])
    return number(row["rss_bytes"]), 0.0


_COLUMNS = (("ACTOR", 24), ("PID", 8), ("RSS MiB", 9), ("CPU s", 9), ("CPU %", 7), ("MSGS", 10), ("MSG/S", 9),
            ("RESTARTS", 9), ("PENDING", 8))


def table(rows: list[dict[str, Any]], sort: str) -> str:
    """The text of one look, as ``top`` prints it."""
    now = time.time()
    rss = sum(row["rss_bytes"] or 0 for row in rows)
    lines = [f"{time.strftime('%H:%M:%S', time.gmtime(now))} UTC  {len(rows)} actors, RSS {rss / 2**20:.1f} MiB "
             f"in all, sorted by {sort}",
             "".join(name.ljust(width) for name, width in _COLUMNS) + "LAST CRASH"]
    for row in rows:  # an actor that did not answer shows "-" for its own numbers, and why
        cells = [row["actor"], str(row["pid"] or "-"), _number(row["rss_bytes"], 2**20, 1),
                 _number(row["cpu_seconds"], 1, 2), _number(row.get("cpu_percent"), 1, 1),
                 _number(row["messages"], 1, 0), _number(row["messages_per_s"], 1, 1), str(row["restarts"]),
                 _number(row["pending_outbound"], 1, 0)]
        text = "".join(cell.ljust(width) for cell, (_, width) in zip(cells, _COLUMNS, strict=True))
        lines.append(text + _crash(row["last_crash"], now)
                     + (f"  [no answer: {row['stats_error']}]" if row["stats_error"] else ""))
    return "\n".join(lines)


def _number(value: Any, unit: float, digits: int) -> str:
    return "-" if value is None else f"{value / unit:.{digits}f}"


def _crash(crash: dict[str, Any] | None, now: float) -> str:
    if not crash:
        return "-"
    reason = crash["reason"] if len(crash["reason"]) <= 60 else crash["reason"][:57] + "..."
    return f"{reason} ({_age(now - crash['time'])} ago)"


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit}"
    return f"{max(0.0, seconds):.0f} s"
