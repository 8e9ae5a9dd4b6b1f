"""ReceiptLedger actor benchmark on multiprocTCPBase: prints one JSON object.

In one run, on real SQLite files (WAL, synchronous=FULL) in a temporary directory:
  * baselines in this process: a bare SQLite insert-and-commit loop, bare ``Ledger.append``
    (one durable commit per receipt) and in-process group commit (threads feeding
    ``Ledger.append_batch``), from bench/ledger.py;
  * one caller, sequential ``append`` calls through the actor: latency p50/p99;
  * concurrent callers (AppendLoad actors, each in its own process, several calls in flight):
    ``append`` (one draft per message) and ``append_many`` (many per message), receipts/s
    (target >= 5,000), batches committed, and latency p50/p99 per call;
  * the same ``append`` load against AppendSink, which stores nothing: the message cost alone.

Usage: python -m bench.ledger_actor [--quick] [--admin-port N]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from bench.ledger import _draft, _pct, bare_sqlite, group_commit, single_appends
from tai_autonomics import logs
from tai_autonomics.ledger import LedgerKey
from tai_autonomics.runtime import Node, NodeConfig, parse_tree

LEDGER, SINK = "ReceiptLedger", "AppendSink"
LOADERS = ("load1", "load2", "load3", "load4")


def _wire_draft(i: int) -> dict:
    """bench/ledger.py's draft as an ``append`` payload."""
    draft = _draft(i)
    return {"kind": draft.kind, "mode": draft.mode, "payload": dict(draft.payload), "chain": draft.chain,
            "operation_id": draft.operation_id}


def _ms(samples: list[float]) -> dict:
    return {"latency_ms_p50": round(_pct(samples, 0.5) * 1e3, 2), "latency_ms_p99": round(_pct(samples, 0.99) * 1e3, 2)}


def sequential(node: Node, n: int) -> dict:
    latencies = []
    for i in range(n):
        t0 = time.perf_counter()
        node.call(LEDGER, "append", _wire_draft(i))
        latencies.append(time.perf_counter() - t0)
    return {"appends": n, "per_s": round(n / sum(latencies)), **_ms(latencies)}


def concurrent(node: Node, to: str, per_loader: int, window: int, per_call: int) -> dict:
    before = node.call(LEDGER, "status")["batches"]
    for k, name in enumerate(LOADERS):
        drafts = [_wire_draft(k * per_loader + i) for i in range(per_loader)]
        node.call(name, "start", {"to": to, "drafts": drafts, "window": window, "per_call": per_call})
    runs = [node.call(name, "results", timeout=600) for name in LOADERS]
    total = per_loader * len(LOADERS)
    errors = sum("error" in r for run in runs for r in run["results"])
    elapsed = max(run["end"] for run in runs) - min(run["start"] for run in runs)
    per_draft = [latency for run in runs for latency in run["latencies"]]
    result = {"callers": len(LOADERS), "calls_in_flight_per_caller": window, "drafts_per_call": per_call,
              "receipts": total, "errors": errors, "receipts_per_s": round(total / elapsed),
              **_ms(per_draft[::per_call])}
    if to == LEDGER:
        batches = node.call(LEDGER, "status")["batches"] - before
        result.update(batches=batches, mean_batch=round(total / batches, 1))
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    parser.add_argument("--admin-port", type=int, default=19791, help="thespian admin port (default 19791)")
    args = parser.parse_args()
    q = args.quick
    logs.configure("WARNING", sys.stderr)
    key = LedgerKey.generate()
    singles = 200 if q else 1000
    with tempfile.TemporaryDirectory(prefix="ledger-actor-bench-") as tmp_name:
        tmp = Path(tmp_name)
        rate, latencies, row = single_appends(tmp / "single.sqlite3", key, singles)
        result = {
            "base": "multiprocTCPBase",
            "baselines_in_process": {
                "bare_sqlite_commit_per_s": round(bare_sqlite(tmp / "bare.sqlite3", singles, row)),
                "ledger_append": {"appends": singles, "per_s": round(rate), **_ms(latencies)},
                "ledger_group_commit": group_commit(tmp / "group.sqlite3", key, 4, 500 if q else 2500, 16, 256),
            },
        }
        tree = parse_tree({"root": "root", "supervisors": {"root": {"children": [LEDGER, SINK, *LOADERS]}}, "workers": {
            LEDGER: {"actor": "tai_autonomics.actors.receipt_ledger:ReceiptLedger",
                     "args": {"context": {"data_dir": str(tmp / "actor")}}},
            SINK: {"actor": "bench._actors:AppendSink"},
            **{name: {"actor": "bench._actors:AppendLoad"} for name in LOADERS}}})
        with Node(NodeConfig(base="multiprocTCPBase", admin_port=args.admin_port, log_level="WARNING")) as node:
            node.start_tree(tree)
            result["actor"] = {
                "sequential_append": sequential(node, singles),
                "concurrent_append": concurrent(node, LEDGER, 150 if q else 500, 16, 1),
                "concurrent_append_to_sink": concurrent(node, SINK, 150 if q else 500, 16, 1),
                "concurrent_append_many": concurrent(node, LEDGER, 2000 if q else 10_000, 2, 250),
                "target_receipts_per_s": 5000,
            }
    json.dump(result, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
