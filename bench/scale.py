"""Scale: does the daemon's start time, memory and proof latency stay flat as the ledger grows?

For each ledger size it builds a dev-profile data directory, then measures and prints JSON:

* ``build``: the bulk loader, which is the real append path (``Ledger.append_batch`` in batches
  of 4096 receipts on one chain, signed): the same receipts, tiles, checkpoints and indexes a
  daemon would have written, only in larger batches (so fewer checkpoints);
* ``open``: ``Ledger.open`` (the tree's right edge) against the baseline of the same run, what
  opening did before tiles: every leaf hash read into the in-memory tree (time and Python heap,
  from ``tracemalloc``; ``ratio`` = baseline / ours). Above ``--full-read-max`` receipts the
  baseline is reported as skipped: at 10^7 it would hold about 640 MB;
* ``daemon``: ``tai-autonomics foreground`` on that data directory: seconds to ``/readyz`` and to
  a first insured deploy, the RSS of every process of the daemon (sum, per process, and the growth
  per role over each half of the deploys: each named actor, the main process, the sandbox, the
  rest) after start and after ``--deploys`` deploys at 50/s. Growth that is warm-up (caches
  filling to their bounds) shows mostly in the first half; growth with the deploys, in both;
* ``proofs``: inclusion and consistency proof latency p50/p99 on a freshly opened ledger (cold:
  random leaves, every tile read from SQLite) and again on the same leaves (warm: the tile
  cache);
* ``export``: ``ledger export --tiles`` and the offline export throughput, receipts/s (sizes up
  to ``--export-max`` only: an export of 10^6 receipts writes about a gigabyte).

Targets (issue 17): start ≤ 2 s at 10^7 receipts; RSS independent of the ledger's size (within
10 %); proofs ≤ 2 ms p99 warm, ≤ 20 ms cold.

A 10^7 ledger takes about 35 minutes and 9 GB to build, so building and measuring can be two
runs: ``--build-only DIR --size N`` builds (or resumes building, from the receipts already there)
the ``var`` of a dev data directory at DIR and measures nothing; ``--data DIR`` measures such a
directory later, on an idle machine, instead of building one. The daemon appends to DIR (two
receipts a deploy, and its own at start), so each measurement of the same DIR finds a few more
receipts than the last: the size is read where it matters and reported. The first start on a
built dir also makes the dev profile's tokens, CA and certificate (``first_start_on_dir``); the
start time to hold against the target is a later one's.

Usage: python -m bench.scale [--sizes 10000 100000 1000000] [--deploys 1000] [--quick]
                             [--full-read-max 1000000] [--export-max 100000]
       python -m bench.scale --build-only DIR --size 10000000
       python -m bench.scale --data DIR [--deploys 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import statistics
import sys
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx

from bench.gateway import _percentile, deploy_body, free_port, process_roles, run_rate, start_daemon
from tai_autonomics.ledger import Ledger, MerkleTree, ReceiptDraft, SQLiteStore, load_ledger_key
from tai_autonomics.ledger.export import export_ledger, export_tiles
from tai_autonomics.runtime._process import descendants

BATCH = 4096
PAGE = os.sysconf("SC_PAGE_SIZE")


PROGRESS_EVERY = 100  # batches between two progress lines of a build (about 400,000 receipts)


def build(var: Path, size: int, progress: Callable[[dict], None] | None = None) -> dict:
    """The bulk loader: signed receipts through the real append path until the ledger at ``var``
    holds ``size``. It resumes where the ledger stands (a build of hours can be interrupted);
    ``progress`` is told the size and rate every ``PROGRESS_EVERY`` batches. A ledger already
    larger than ``size`` is refused untouched: the size asked for could not be measured."""
    var.mkdir(parents=True, exist_ok=True)
    key = load_ledger_key(data_dir=var)
    ledger = Ledger.open(SQLiteStore(var / "ledger.sqlite3"), key, max_batch=BATCH)
    resumed_from = ledger.size
    if resumed_from > size:
        ledger.close()
        raise SystemExit(f"{var} already holds {resumed_from} receipts, more than --size {size}")
    started = time.perf_counter()
    for batch, first in enumerate(range(resumed_from, size, BATCH), 1):
        ledger.append_batch([ReceiptDraft("bench.filler", "prod", {"n": n, "customer_ref": "bench-customer",
                                                                   "region": "europe-west1"}, chain="bench")
                             for n in range(first, min(size, first + BATCH))])
        if progress and batch % PROGRESS_EVERY == 0:
            progress({"receipts": ledger.size,
                      "receipts_per_s": round((ledger.size - resumed_from) / (time.perf_counter() - started))})
    seconds = time.perf_counter() - started
    ledger.close()
    return {"seconds": round(seconds, 1), "resumed_from": resumed_from,
            "receipts_per_s": round((size - resumed_from) / seconds) if seconds else None,
            "file_mb": round((var / "ledger.sqlite3").stat().st_size / 2**20)}


def _measured(action: Callable[[], object]) -> tuple[object, float, int]:
    """What ``action`` returns, the seconds it took and the Python heap it left allocated."""
    tracemalloc.start()
    started = time.perf_counter()
    value = action()
    seconds = time.perf_counter() - started
    held = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return value, seconds, held


def open_vs_full_read(var: Path, full_read_max: int) -> dict:
    """Opening the ledger (its right edge) against reading every leaf hash into a tree, the
    latter only up to ``full_read_max`` receipts (it holds about 64 bytes a receipt)."""
    key = load_ledger_key(data_dir=var)
    ledger, ours_s, ours_b = _measured(lambda: Ledger.open(SQLiteStore(var / "ledger.sqlite3", readonly=True), key))
    size = ledger.size  # type: ignore[attr-defined]
    ledger.close()  # type: ignore[attr-defined]
    ours = {"receipts": size, "ours_s": round(ours_s, 4), "ours_heap_kb": ours_b // 1024}
    if size > full_read_max:
        return {**ours, "full_read": f"skipped: {size} receipts > --full-read-max {full_read_max}"}
    store = SQLiteStore(var / "ledger.sqlite3", readonly=True)
    tree, base_s, base_b = _measured(lambda: MerkleTree(store.leaf_hashes(0, store.size())))
    store.close()
    del tree
    return {**ours, "full_read_s": round(base_s, 3), "full_read_heap_kb": base_b // 1024,
            "ratio_time": round(base_s / ours_s, 1), "ratio_heap": round(base_b / max(1, ours_b), 1)}


def _rss(pid: int) -> dict[str, float]:
    """RSS in MB of the daemon and each of its descendants, by pid."""
    found = {}
    for each in [pid, *descendants(pid)]:
        try:
            pages = int(Path(f"/proc/{each}/statm").read_text().split()[1])
        except (OSError, IndexError, ValueError):
            continue
        found[str(each)] = round(pages * PAGE / 2**20, 1)
    return found


def _by_role(rss: dict[str, float], roles: dict[int, str]) -> dict[str, float]:
    """RSS in MB summed per role (``bench.gateway.process_roles``; a process born since is ``other``)."""
    found: dict[str, float] = {}
    for pid, mb in rss.items():
        role = roles.get(int(pid), "other")
        found[role] = round(found.get(role, 0.0) + mb, 1)
    return found


def daemon(tmp: Path, var: Path, deploys: int) -> dict:
    """The daemon on ``var`` (its release file and output in ``tmp``): start, a first deploy, RSS
    after start and after ``deploys`` more at 50/s."""
    port = free_port()
    first_start = not (var / "tokens.env").exists()  # the dev profile makes its tokens, CA and certificate then
    started = time.perf_counter()
    proc, out = start_daemon(tmp, port, var=var)
    ready_s = time.perf_counter() - started
    try:
        tokens = dict(line.split("=", 1) for line in (var / "tokens.env").read_text().split() if "=" in line)
        token = tokens["TAI_TOKEN_SERVICE"].strip("'\"")
        base = f"http://127.0.0.1:{port}"
        first = httpx.post(f"{base}/v1/deployments", json=deploy_body(0), timeout=30,
                           headers={"Authorization": f"Bearer {token}", "Idempotency-Key": uuid.uuid4().hex})
        first_s = time.perf_counter() - started
        first.raise_for_status()
        roles = process_roles(base, tokens["TAI_TOKEN_ADMIN"].strip("'\""), proc.pid)
        samples = [_rss(proc.pid)]  # after start, after the first half of the deploys, after the second
        loads = []
        for half in (deploys // 2, deploys - deploys // 2):
            if half:
                loads.append(asyncio.run(run_rate(base, token, 50, half / 50, True)))
            samples.append(_rss(proc.pid))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    after_start, after = samples[0], samples[-1]
    by_role = [_by_role(rss, roles) for rss in samples]
    return {"ready_s": round(ready_s, 2), "first_deploy_s": round(first_s, 2), "first_start_on_dir": first_start,
            "rss_mb_after_start": round(sum(after_start.values()), 1),
            "rss_mb_after_deploys": round(sum(after.values()), 1), "deploys": deploys,
            "deploy_p99_ms": max(round(load["p99_ms"], 1) for load in loads) if loads else None,
            "deploy_errors": sum(load["error_rate"] * load["requests"] for load in loads) / deploys if loads else None,
            "rss_mb_per_process_after_start": sorted(after_start.values(), reverse=True),
            "rss_mb_growth_per_process": sorted((round(after[pid] - mb, 1) for pid, mb in after_start.items()
                                                 if pid in after), reverse=True),
            "rss_mb_after_start_by_role": by_role[0],
            "rss_mb_growth_by_role_halves": {role: [round(by_role[1].get(role, 0.0) - by_role[0].get(role, 0.0), 1),
                                                    round(mb - by_role[1].get(role, 0.0), 1)]
                                             for role, mb in sorted(by_role[2].items())}}


def _latency(samples: list[float]) -> dict[str, float]:
    return {"p50_ms": round(statistics.median(samples) * 1e3, 3), "p99_ms": round(_percentile(samples, 0.99) * 1e3, 3)}


def proofs(var: Path, count: int) -> dict:
    key = load_ledger_key(data_dir=var)
    ledger = Ledger.open(SQLiteStore(var / "ledger.sqlite3", readonly=True), key)
    size = ledger.size
    rng = random.Random(17)
    leaves = [rng.randrange(size) for _ in range(count)]
    olds = [rng.randrange(1, size) for _ in range(count)]
    results = {}
    for phase in ("cold", "warm"):
        timings: dict[str, list[float]] = {"inclusion": [], "consistency": []}
        for leaf, old in zip(leaves, olds):
            started = time.perf_counter()
            ledger.leaf_proof(leaf, size)
            timings["inclusion"].append(time.perf_counter() - started)
            started = time.perf_counter()
            ledger.consistency_proof(old, size)
            timings["consistency"].append(time.perf_counter() - started)
        results[phase] = {name: _latency(samples) for name, samples in timings.items()}
    ledger.close()
    return results


def export(var: Path, tmp: Path, size: int) -> dict:
    key = load_ledger_key(data_dir=var)
    ledger = Ledger.open(SQLiteStore(var / "ledger.sqlite3", readonly=True), key)
    rates = {}
    for name, write in (("tiles", export_tiles), ("offline", export_ledger)):
        started = time.perf_counter()
        write(ledger, tmp / f"export-{name}")
        rates[f"{name}_receipts_per_s"] = round(size / (time.perf_counter() - started))
    ledger.close()
    return rates


def measure(var: Path, tmp: Path, args: argparse.Namespace) -> dict:
    """Every measurement of the module docstring on the built ledger at ``var``; ``tmp`` takes the
    daemon's release file and output and the exports."""
    row: dict = {"open": open_vs_full_read(var, args.full_read_max)}
    row["receipts"] = row["open"]["receipts"]
    row["daemon"] = daemon(tmp, var, args.deploys)
    row["proofs"] = proofs(var, args.proofs)
    store = SQLiteStore(var / "ledger.sqlite3", readonly=True)
    size = store.size()  # the daemon's deploys added to the size opened
    store.close()
    if size <= args.export_max:
        row["export"] = export(var, tmp, size)
    else:
        row["export"] = f"skipped: {size} receipts > --export-max {args.export_max}"
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--deploys", type=int, default=1000, help="deploys at 50/s after start (issue: 10000)")
    parser.add_argument("--proofs", type=int, default=300)
    parser.add_argument("--export-max", type=int, default=100_000)
    parser.add_argument("--full-read-max", type=int, default=1_000_000,
                        help="skip the full-read baseline above this many receipts")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="sizes 1000 and 20000, 100 deploys")
    mode.add_argument("--build-only", type=Path, metavar="DIR",
                      help="build (or resume) the var of a dev data dir at DIR with --size receipts, measure nothing")
    mode.add_argument("--data", type=Path, metavar="DIR", help="measure the var built at DIR instead of building")
    parser.add_argument("--size", type=int, help="receipts for --build-only")
    args = parser.parse_args()
    if args.build_only is not None:
        if args.size is None or args.size < 1:
            parser.error("--build-only needs --size N (N ≥ 1)")
        report = build(args.build_only, args.size, lambda line: print(json.dumps(line), file=sys.stderr, flush=True))
        print(json.dumps({"receipts": args.size, "build": report}), flush=True)
        return
    if args.size is not None:
        parser.error("--size goes with --build-only (measurements take --sizes)")
    if args.data is not None:
        if not (args.data / "ledger.sqlite3").is_file():
            parser.error(f"--data {args.data}: no ledger.sqlite3 there (build one with --build-only)")
        with tempfile.TemporaryDirectory(prefix="bench-scale-") as name:
            print(json.dumps(measure(args.data, Path(name), args)), flush=True)
        return
    if args.quick:
        args.sizes, args.deploys = [1000, 20_000], 100
    results = []
    for size in args.sizes:
        with tempfile.TemporaryDirectory(prefix="bench-scale-") as name:
            tmp = Path(name)
            built = build(tmp / "var", size)
            row = {"receipts": size, "build": built, **measure(tmp / "var", tmp, args)}
            results.append(row)
            print(json.dumps(row), flush=True)
    rss = [row["daemon"]["rss_mb_after_start"] for row in results]
    print(json.dumps({"sizes": args.sizes, "ready_s": [row["daemon"]["ready_s"] for row in results],
                      "rss_mb_after_start": rss, "rss_spread": round(max(rss) / min(rss) - 1, 3),
                      "note": "taken on a shared 2-core machine: ratios hold, absolute times do not"}, indent=2))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
