"""Soak (issue 14): steady deploys against the dev daemon, memory and descriptors sampled over time.

Starts ``tai-autonomics foreground`` (dev profile, multiprocess thespian, SQLite, the sandbox
child), sends deploys open-loop at ``--rate`` per second for ``--seconds``, and every
``--sample`` seconds reads the resident memory (``VmRSS``) and the open file descriptors of every
process of the daemon from /proc. It prints JSON: per process role (each actor, the main process,
the rest) and in total, the first and last sample and the least-squares slope in MB/hour and
descriptors/hour over the second half of the run (the first half is warm-up: caches, the SQLite
page cache, thespian's connections fill), and the number of times a thespian transport entered
its "tx-only" mode (more than 950 transmits queued: thespian's cliff, where an actor stops
receiving until it has sent), read from thespian's own log of this run (``THESPLOG_FILE``).
At every sample it also reads each actor's ``pending_outbound`` (thespian's unfinished sends plus
messages held for coalescing) from ``GET /v1/supervision`` and reports the peak: the queue that
builds towards that cliff, seen before it is reached. Those reads have a fixed cost of their own:
the gateway asks every actor at once, which spreads the calls over its whole pool of bridge
threads, and each thread's thespian endpoint keeps a connection to every actor it has called
(descriptors at both ends, up to threads × actors). So before the clock starts the soak reads
the tree until the daemon's descriptors stop rising (``observer_warmup``), and the slopes measure
the run, not the pool filling.

If the daemon's main process exits during the run (issue 14: it ran out of descriptors), the
soak stops at once: what is still in flight is cancelled, the daemon's remaining processes are
killed, and the report (the samples taken so far) names the death in ``daemon_died``; the exit
code is 1. The moment load starts is written to stderr (``soak: load started, daemon pid N``), and
each sample's totals after it.

The slopes must be flat within noise. A clear leak is a total growth over the steady half (its
slope times its length) beyond ``--max-mb-per-hour`` / ``--max-fds-per-hour`` for that length plus
a fixed noise allowance (``NOISE_MB``, ``NOISE_FDS``: what a quiet daemon's numbers wander by in a
minute, from allocator arenas and thespian's connections coming and going); the exit code is
1 then. A short run is judged by the allowance, a long one by the rate. The baseline of the same
run is the deploy latency's p50 of the first sampling interval against the last one's (a leak that
slows the daemon shows there too).

Usage: python -m bench.soak [--seconds 1800] [--rate 50] [--sample 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

from bench.gateway import deploy_body, free_port, process_roles, start_daemon
from tai_autonomics.runtime._process import descendants

TX_ONLY = "Entering tx-only mode"
NOISE_MB, NOISE_FDS = 15.0, 25


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def _slope_per_hour(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value) points, per hour."""
    if len(points) < 2:
        return 0.0
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    var = sum((t - mean_t) ** 2 for t, _ in points)
    return 0.0 if var == 0 else sum((t - mean_t) * (v - mean_v) for t, v in points) / var * 3600


def sample(roles: dict[int, str], daemon_pid: int, in_flight: int) -> dict[str, tuple[float, int]]:
    """role → (RSS MB, fds), summed over the processes of that role; ``total`` for the daemon's own
    (the sandbox, an outside party that keeps every request it saw for its admin API, is left out),
    its descriptors less the requests in flight (one client socket each in the gateway: a busier
    moment, not a leak)."""
    found: dict[str, tuple[float, int]] = {}
    for pid in [daemon_pid, *descendants(daemon_pid)]:
        role = roles.get(pid, "other")
        rss, fds = found.get(role, (0.0, 0))
        found[role] = (rss + _rss_mb(pid), fds + _fds(pid))
    ours = [value for role, value in found.items() if role != "sandbox"]
    found["total"] = (sum(r for r, _ in ours), sum(f for _, f in ours) - in_flight)
    return found


class PendingOutbound:
    """The peak of the actors' ``pending_outbound`` over the run, read from ``/v1/supervision``
    (admin) at every sample. A sample whose read fails (no answer, an error status, no actor with
    the number) counts in ``errors`` by reason and never stops the soak; an actor that did not
    answer its ``$stats`` within the observer's 1 s (busy: the one with a long queue may be) counts
    in ``unanswered``, so a peak read while actors were silent can be judged as such."""

    def __init__(self, base: str, admin_token: str) -> None:
        self._url, self._headers = f"{base}/v1/supervision", {"Authorization": f"Bearer {admin_token}"}
        self.peak: int | None = None
        self.actor: str | None = None
        self.at_s: float | None = None
        self.samples = 0
        self.unanswered = 0
        self.errors: dict[str, int] = {}

    async def read(self, client: httpx.AsyncClient, t: float) -> None:
        """One sample at ``t`` s into the run."""
        try:
            answer = await client.get(self._url, headers=self._headers, timeout=10)
            reason = "" if answer.status_code == 200 else str(answer.status_code)
            tree = answer.json() if not reason else {}
        except (httpx.HTTPError, ValueError) as exc:
            reason, tree = type(exc).__name__, {}
        seen = []
        stack = [tree] if tree else []
        while stack:
            node = stack.pop()
            stack.extend(node.get("children") or [])
            pending = (node.get("stats") or {}).get("pending_outbound")
            if pending is None:
                self.unanswered += 1
            else:
                seen.append((int(pending), str(node.get("name"))))
        if not seen:
            self.errors[reason or "no_stats"] = self.errors.get(reason or "no_stats", 0) + 1
            return
        self.samples += 1
        pending, actor = max(seen)
        if self.peak is None or pending > self.peak:
            self.peak, self.actor, self.at_s = pending, actor, round(t, 1)

    def report(self) -> dict[str, Any]:
        """The JSON fields of the soak's report."""
        return {"peak_pending_outbound": self.peak, "peak_pending_outbound_actor": self.actor,
                "peak_pending_outbound_at_s": self.at_s, "pending_outbound_samples": self.samples,
                "pending_outbound_unanswered": self.unanswered, "observer_errors": self.errors}


def _record(samples: list[tuple[float, dict[str, tuple[float, int]]]], t: float,
            taken: dict[str, tuple[float, int]]) -> None:
    """Keep a sample and show it on stderr (a long run is watched as it goes)."""
    samples.append((t, taken))
    rss, fds = taken["total"]
    print(f"soak: sample at {t:.0f} s: {rss:.0f} MB, {fds} descriptors", file=sys.stderr, flush=True)


def _kill_orphans(roles: dict[int, str], daemon_pid: int, data_dir: str) -> None:
    """SIGKILL what is left of a daemon whose main process died: its actors and sandbox (the
    pids seen at the start) no longer have a parent that stops them. A pid counts only while its
    command line still names this run's data directory (a pid may have been reused since)."""
    for pid in roles:
        if pid in (daemon_pid, os.getpid()):
            continue
        try:
            if data_dir.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                os.kill(pid, signal.SIGKILL)
        except (OSError, ProcessLookupError):
            pass


WARMUP_READS, WARMUP_STEADY_ROUNDS, WARMUP_MAX_ROUNDS = 8, 5, 60


async def warm_observer(base: str, admin_token: str, daemon_fds: Callable[[], int]) -> dict[str, int]:
    """Rounds of ``WARMUP_READS`` concurrent tree reads (more actor calls at once than the
    gateway's pool has threads, so every thread takes some) until ``daemon_fds()`` has not changed
    for ``WARMUP_STEADY_ROUNDS`` rounds (at most ``WARMUP_MAX_ROUNDS``). The reads count nowhere
    in the run's numbers; the rounds and the descriptors they added are reported."""
    scratch = PendingOutbound(base, admin_token)
    before = last = daemon_fds()
    rounds = steady = 0
    async with httpx.AsyncClient() as client:
        while steady < WARMUP_STEADY_ROUNDS and rounds < WARMUP_MAX_ROUNDS:
            await asyncio.gather(*(scratch.read(client, 0.0) for _ in range(WARMUP_READS)))
            rounds += 1
            now = daemon_fds()
            steady, last = (steady + 1 if now == last else 0), now
    return {"rounds": rounds, "fds_added": last - before, "errors": sum(scratch.errors.values())}


class DaemonDied(Exception):
    """The daemon's main process exited during the run, ``at_s`` seconds in, with ``exit_code``."""

    def __init__(self, at_s: float, exit_code: int) -> None:
        super().__init__(f"the daemon exited {at_s:.1f} s into the run (exit code {exit_code})")
        self.at_s, self.exit_code = at_s, exit_code


EXIT_CHECK_S = 1.0  # how often the daemon is looked at while the last requests end


async def _stop_if_exited(exited: Callable[[], int | None], tasks: list[asyncio.Task[None]], t: float) -> None:
    """If the daemon has exited: cancel ``tasks`` and raise :class:`DaemonDied` (at ``t`` s)."""
    code = exited()
    if code is None:
        return
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    raise DaemonDied(t, code)


async def load(base: str, token: str, rate: float, seconds: float, every: float,
               on_sample: Callable[[float, int], None], latencies: list[list[float]], errors: dict[str, int],
               watch: Callable[[httpx.AsyncClient, float], Awaitable[None]],
               exited: Callable[[], int | None]) -> None:
    """Open-loop deploys; ``on_sample(t, in_flight)`` every ``every`` s, and ``watch(client, t)``
    then as a task of its own (an HTTP read that must not hold up the arrival schedule).
    ``exited()`` (the daemon's exit code, None while it runs) is checked before every send and
    every ``EXIT_CHECK_S`` while the last requests end: once it is set, the requests still out
    are cancelled and :class:`DaemonDied` is raised (sending on would only spin on refused
    connections, and waiting on would wait for nothing)."""
    in_flight = [0]
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=None), timeout=None) as client:
        async def one(i: int) -> None:
            started = time.monotonic()
            in_flight[0] += 1
            try:
                answer = await client.post(f"{base}/v1/deployments", json=deploy_body(i), timeout=30,
                                           headers={"Authorization": f"Bearer {token}",
                                                    "Idempotency-Key": uuid.uuid4().hex})
                code = "" if answer.status_code == 200 else str(answer.status_code)
            except httpx.HTTPError as exc:
                code = type(exc).__name__
            in_flight[0] -= 1
            latencies[-1].append(time.monotonic() - started)
            if code:
                errors[code] = errors.get(code, 0) + 1

        start, tasks, i, next_sample = time.monotonic(), [], 0, time.monotonic()
        while (now := time.monotonic()) < start + seconds:
            await _stop_if_exited(exited, tasks, now - start)
            if now >= next_sample:
                on_sample(now - start, in_flight[0])
                tasks.append(asyncio.create_task(watch(client, now - start)))
                latencies.append([])
                next_sample += every
            due = start + i / rate
            if due > now:
                await asyncio.sleep(min(due, next_sample) - now)  # the arrival and sampling schedule itself
                continue
            tasks.append(asyncio.create_task(one(i)))
            i += 1
        pending = {task for task in tasks if not task.done()}
        while pending:  # the requests still out, watching the daemon while they end
            _, pending = await asyncio.wait(pending, timeout=EXIT_CHECK_S)
            await _stop_if_exited(exited, list(pending), time.monotonic() - start)
        on_sample(time.monotonic() - start, in_flight[0])
        await watch(client, time.monotonic() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=1800)
    parser.add_argument("--rate", type=float, default=50)
    parser.add_argument("--sample", type=float, default=10)
    parser.add_argument("--max-mb-per-hour", type=float, default=50)
    parser.add_argument("--max-fds-per-hour", type=float, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-soak-") as tmp:
        os.environ["THESPLOG_FILE"] = str(Path(tmp) / "thespian.log")  # this run's own, read at the end
        port = free_port()
        proc, _ = start_daemon(Path(tmp), port)
        samples: list[tuple[float, dict[str, tuple[float, int]]]] = []
        latencies: list[list[float]] = [[]]
        errors: dict[str, int] = {}
        roles: dict[int, str] = {}
        died: DaemonDied | None = None
        try:
            base = f"http://127.0.0.1:{port}"
            tokens = dict(line.split("=", 1) for line in (Path(tmp) / "var" / "tokens.env").read_text().split())
            admin = tokens["TAI_TOKEN_ADMIN"].strip("'\"")
            roles = process_roles(base, admin, proc.pid)
            outbound = PendingOutbound(base, admin)
            warmup = asyncio.run(warm_observer(base, admin, lambda: sample(roles, proc.pid, 0)["total"][1]))
            print(f"soak: load started, daemon pid {proc.pid}", file=sys.stderr, flush=True)
            try:
                asyncio.run(load(base, tokens["TAI_TOKEN_SERVICE"].strip("'\""), args.rate, args.seconds,
                                 args.sample, lambda t, n: _record(samples, t, sample(roles, proc.pid, n)),
                                 latencies, errors, outbound.read, proc.poll))
            except DaemonDied as exc:
                died = exc
                print(f"soak: {exc}", file=sys.stderr, flush=True)
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(30)
            else:
                _kill_orphans(roles, proc.pid, tmp)
        log = Path(os.environ["THESPLOG_FILE"])
        tx_only = log.read_text(errors="replace").count(TX_ONLY) if log.exists() else 0
    if died is not None:
        print(json.dumps({"seconds": args.seconds, "rate": args.rate, "sample_s": args.sample,
                          "daemon_died": {"at_s": round(died.at_s, 1), "exit_code": died.exit_code},
                          "samples": len(samples), "deploys": sum(len(lat) for lat in latencies),
                          "errors": errors, "thespian_tx_only_entries": tx_only, **outbound.report(),
                          "sampled": [{"t": round(t, 1), **{role: {"rss_mb": round(rss, 1), "fds": fds}
                                                              for role, (rss, fds) in s.items()}}
                                      for t, s in samples]}, indent=2))
        return 1
    steady = [s for s in samples if s[0] >= args.seconds / 2] or samples
    by_role = {}
    for role in samples[-1][1]:
        rss = [(t, s[role][0]) for t, s in steady if role in s]
        fds = [(t, s[role][1]) for t, s in steady if role in s]
        by_role[role] = {"rss_mb_first": round(samples[0][1].get(role, (0, 0))[0], 1),
                         "rss_mb_last": round(samples[-1][1][role][0], 1),
                         "fds_first": samples[0][1].get(role, (0, 0))[1], "fds_last": samples[-1][1][role][1],
                         "mb_per_hour": round(_slope_per_hour(rss), 1), "fds_per_hour": round(_slope_per_hour(fds), 1)}
    first = sorted(next((lat for lat in latencies if lat), []))
    last = sorted(next((lat for lat in reversed(latencies) if lat), []))
    total = by_role["total"]
    hours = (steady[-1][0] - steady[0][0]) / 3600
    total["mb_grown_steady"] = round(total["mb_per_hour"] * hours, 1)
    total["fds_grown_steady"] = round(total["fds_per_hour"] * hours, 1)
    leak = (total["mb_grown_steady"] > args.max_mb_per_hour * hours + NOISE_MB
            or total["fds_grown_steady"] > args.max_fds_per_hour * hours + NOISE_FDS)
    print(json.dumps({
        "seconds": args.seconds, "rate": args.rate, "sample_s": args.sample, "samples": len(samples),
        "deploys": sum(len(lat) for lat in latencies), "errors": errors,
        "p50_ms_first_interval": round(first[len(first) // 2] * 1e3, 1) if first else None,
        "p50_ms_last_interval": round(last[len(last) // 2] * 1e3, 1) if last else None,
        "thespian_tx_only_entries": tx_only, **outbound.report(),
        "observer_warmup": warmup, "total": total,
        "by_role": {k: v for k, v in sorted(by_role.items()) if k != "total"},
        "leak": leak}, indent=2))
    return 1 if leak or tx_only else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
