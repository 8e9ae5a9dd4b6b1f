"""Runtime benchmark: our server behaviour and supervisor against bare thespian, same run.

Prints JSON. Each figure is a ratio against a baseline measured in the same process on the
same base with the same transport settings, interleaved, so machine noise hits both alike:

* ``call``: a call through Node.call → Server (name lookup cached, envelope, error handling)
  vs a raw ``ActorSystem.ask`` to a bare actor. Target ≤ 1.15× on multiprocTCPBase.
* ``restart``: SIGKILL of an actor process → a caller's next call answered by the replacement
  (detection, supervisor decision, re-create, start handshake, registry, resolve, call) vs
  SIGKILL → a bare parent re-creating the child on ChildActorExited and handing its address
  to the caller, who then asks it (the least any restart-plus-lookup can do). Target ≤ 1.2×.

Usage: python -m bench.runtime [--base multiprocTCPBase] [--calls 2000] [--kills 20]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

from bench._actors import BareParent
from tai_autonomics import logs
from tai_autonomics.runtime import ActorCrashed, Node, NodeConfig, parse_tree


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def bench_calls(node: Node, raw_context, calls: int, rounds: int = 10) -> dict:
    bare = raw_context.createActor("bench._actors.BareEcho")
    ours, raw = [], []
    per_round = max(1, calls // rounds)
    node.call("echo", "echo", 0)
    raw_context.ask(bare, 0, 5)
    for r in range(rounds):
        for samples, one in ((raw, lambda i: raw_context.ask(bare, i, 5)),
                             (ours, lambda i: node.call("echo", "echo", i))) if r % 2 else \
                            ((ours, lambda i: node.call("echo", "echo", i)),
                             (raw, lambda i: raw_context.ask(bare, i, 5))):
            for i in range(per_round):
                t = time.perf_counter()
                one(i)
                samples.append(time.perf_counter() - t)
    return {
        "ours_p50_ms": statistics.median(ours) * 1e3,
        "ours_p99_ms": _percentile(ours, 0.99) * 1e3,
        "raw_ask_p50_ms": statistics.median(raw) * 1e3,
        "raw_ask_p99_ms": _percentile(raw, 0.99) * 1e3,
        "ours_per_s": 1 / statistics.mean(ours),
        "raw_ask_per_s": 1 / statistics.mean(raw),
        "ratio_p50": statistics.median(ours) / statistics.median(raw),
        "ratio_mean": statistics.mean(ours) / statistics.mean(raw),
        "target_ratio": 1.15,
    }


def bench_restart(node: Node, raw_context, kills: int) -> dict:
    parent = raw_context.createActor(BareParent)
    child = raw_context.ask(parent, "start", 5)
    ours, bare = [], []
    for k in range(kills):
        for which in (("ours", "bare") if k % 2 else ("bare", "ours")):
            if which == "bare":
                pid = raw_context.ask(child, "pid", 5)
                t0 = time.monotonic()
                os.kill(pid, 9)
                child = raw_context.ask(parent, ("child_after", child), 5)
                raw_context.ask(child, k, 5)
                bare.append(time.monotonic() - t0)
            else:
                info = node.call("echo", "$info")
                t0 = time.monotonic()
                os.kill(info["pid"], 9)
                while True:  # a call that raced the death is refused at once (as OTP's noproc): call again
                    try:
                        node.call("echo", "echo", k)
                        break
                    except ActorCrashed:
                        continue
                ours.append(time.monotonic() - t0)
    return {
        "ours_p50_ms": statistics.median(ours) * 1e3,
        "bare_recreate_p50_ms": statistics.median(bare) * 1e3,
        "ratio_p50": statistics.median(ours) / statistics.median(bare),
        "kills": kills,
        "target_ratio": 1.2,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default="multiprocTCPBase", choices=["multiprocTCPBase", "simpleSystemBase"])
    parser.add_argument("--calls", type=int, default=4000)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--admin-port", type=int, default=19790)
    args = parser.parse_args()
    logs.configure("WARNING", sys.stderr)
    tree = parse_tree({"root": "root", "supervisors": {"root": {"intensity": 1000, "period": 1, "children": ["echo"]}},
                       "workers": {"echo": {"actor": "bench._actors:Echo"}}})
    with Node(NodeConfig(base=args.base, admin_port=args.admin_port, log_level="WARNING")) as node:
        node.start_tree(tree)
        # the baselines ask through their own endpoint, so neither side sees the other's messages
        with node._system.private() as raw_context:
            result = {"base": args.base, "call": bench_calls(node, raw_context, args.calls)}
            if node.multiprocess:
                result["restart"] = bench_restart(node, raw_context, args.kills)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
