"""Runtime benchmark: our server behaviour and supervisor against bare thespian, same run.

Prints JSON. Each figure is a ratio against a baseline measured in the same process on the
same base with the same transport settings, interleaved, so machine noise hits both alike:

* ``call``: a call through Node.call → Server (name lookup cached, envelope, error handling)
  vs a raw ``ActorSystem.ask`` to a bare actor on the same base. Target ≤ 1.15×.
* ``restart``: SIGKILL of an actor process → a caller's next call answered by the replacement
  (detection, supervisor decision, re-create, start handshake, registry, resolve, call) vs
  SIGKILL → a bare parent re-creating the child on ChildActorExited and handing its address
  to the caller, who then asks it (the least any restart-plus-lookup can do). Target ≤ 1.2×.

* ``round_trip``: actor↔actor round trips between two bare thespian actors (one sends the next
  message when the answer to the previous one arrives), per base, against the floor of the
  platform measured in the same run: two processes ping-ponging the same pickled, length-framed
  message over a Unix socketpair. Targets for multiprocUnixBase: ≥ 5× faster than
  multiprocTCPBase, ≤ 3× the floor.

Every base named by ``--bases`` is measured in the same run (default: multiprocUnixBase and
multiprocTCPBase), one after the other, so the ratios between them are comparable.

Usage: python -m bench.runtime [--bases multiprocUnixBase,multiprocTCPBase] [--calls 2000] [--kills 10]
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import socket
import statistics
import struct
import sys
import time

from bench._actors import BareParent, Pinger
from tai_autonomics import logs
from tai_autonomics.runtime import BASES, ActorCrashed, Node, NodeConfig, parse_tree


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


def bench_round_trips(raw_context, round_trips: int, rounds: int = 5) -> dict:
    """Median per round trip over ``rounds`` runs of ``round_trips // rounds`` each."""
    echo = raw_context.createActor("bench._actors.BareEcho")
    pinger = raw_context.createActor(Pinger)
    raw_context.ask(pinger, ("ping", echo, 50), 30)  # connections made, code paths warm
    per_round = max(1, round_trips // rounds)
    samples = [raw_context.ask(pinger, ("ping", echo, per_round), 60) / per_round for _ in range(rounds)]
    return {"per_round_trip_us": statistics.median(samples) * 1e6, "round_trips": per_round * rounds}


def _tcp_loopback_pair() -> tuple[socket.socket, socket.socket]:
    with socket.create_server(("127.0.0.1", 0)) as server:
        client = socket.create_connection(server.getsockname())
        accepted, _ = server.accept()
    for sock in (client, accepted):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return client, accepted


def socketpair_floor(round_trips: int, rounds: int = 5, tcp: bool = False) -> dict:
    """Two processes ping-ponging a pickled int with a 4-byte length prefix over a Unix
    socketpair (or, ``tcp``, a loopback TCP connection): the least a round trip between two
    Python processes costs on this machine, for each way a transport could go."""
    header = struct.Struct("<I")

    def exchange(sock: socket.socket, value: int) -> int:
        payload = pickle.dumps(value, pickle.HIGHEST_PROTOCOL)
        sock.sendall(header.pack(len(payload)) + payload)
        (size,) = header.unpack(sock.recv(4, socket.MSG_WAITALL))
        return pickle.loads(sock.recv(size, socket.MSG_WAITALL))

    parent, child = _tcp_loopback_pair() if tcp else socket.socketpair()
    pid = os.fork()
    if pid == 0:  # the echo: answer every message with the same value
        parent.close()
        try:
            while data := child.recv(4, socket.MSG_WAITALL):
                (size,) = header.unpack(data)
                value = pickle.loads(child.recv(size, socket.MSG_WAITALL))
                payload = pickle.dumps(value, pickle.HIGHEST_PROTOCOL)
                child.sendall(header.pack(len(payload)) + payload)
        finally:
            os._exit(0)
    child.close()
    try:
        per_round = max(1, round_trips // rounds)
        samples = []
        for _ in range(rounds):
            started = time.perf_counter()
            for i in range(per_round):
                exchange(parent, i)
            samples.append((time.perf_counter() - started) / per_round)
    finally:
        parent.close()
        os.waitpid(pid, 0)
    return {"per_round_trip_us": statistics.median(samples) * 1e6, "round_trips": per_round * rounds}


def bench_base(base: str, admin_port: int, calls: int, kills: int, round_trips: int) -> dict:
    tree = parse_tree({"root": "root", "supervisors": {"root": {"intensity": 1000, "period": 1, "children": ["echo"]}},
                       "workers": {"echo": {"actor": "bench._actors:Echo"}}})
    with Node(NodeConfig(base=base, admin_port=admin_port, log_level="WARNING")) as node:
        node.start_tree(tree)
        # the baselines ask through their own endpoint, so neither side sees the other's messages
        with node._system.private() as raw_context:
            result = {"call": bench_calls(node, raw_context, calls),
                      "round_trip": bench_round_trips(raw_context, round_trips)}
            if node.multiprocess:
                result["restart"] = bench_restart(node, raw_context, kills)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bases", default="multiprocUnixBase,multiprocTCPBase",
                        help=f"comma-separated, of {', '.join(BASES)}")
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--round-trips", type=int, default=2000)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--admin-port", type=int, default=19790)
    args = parser.parse_args()
    bases = args.bases.split(",")
    if unknown := set(bases) - set(BASES):
        parser.error(f"unknown base(s) {', '.join(sorted(unknown))}")
    logs.configure("WARNING", sys.stderr)
    result: dict = {"floor": {"socketpair": socketpair_floor(args.round_trips),
                              "tcp_loopback": socketpair_floor(args.round_trips, tcp=True)}}
    for offset, base in enumerate(bases):
        result[base] = bench_base(base, args.admin_port + offset, args.calls, args.kills, args.round_trips)
    floor = result["floor"]["socketpair"]["per_round_trip_us"]
    if "multiprocUnixBase" in result:
        unix = result["multiprocUnixBase"]["round_trip"]["per_round_trip_us"]
        result["ratios"] = {"unix_round_trip_vs_floor": unix / floor, "target_vs_floor": 3.0}
        if "multiprocTCPBase" in result:
            tcp = result["multiprocTCPBase"]["round_trip"]["per_round_trip_us"]
            result["ratios"].update({"tcp_over_unix_round_trip": tcp / unix, "target_speedup": 5.0,
                                     "tcp_round_trip_vs_floor": tcp / floor})
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
