"""Chaos under load (issue 14): mixed load against the dev daemon while a seeded schedule breaks it.

Starts ``tai-autonomics foreground`` (dev profile: SQLite, multiprocess thespian, the sandbox
child) and for ``--seconds`` sends deploys at ``--rate`` per second open-loop (a tenth of them on
``sku-002``, insured for 3 a month, and a tenth repeating an earlier key), a quote every tenth
arrival, while every ``--every`` seconds the schedule (``--seed``) SIGKILLs a random actor process,
or makes the sandbox slow, failing (5xx), dropping connections or rate-limiting for a few seconds;
twice in the run (at 25 % and 55 %) it ``kill -9``s every process of the daemon and starts it again on the same data
directory. Then it checks the invariants, each a count that must be 0:

- ``acknowledged_without_receipts``: a deploy answered 2xx whose intent and outcome receipts are
  not both in the ledger at the end;
- ``acknowledged_receipt_lost``: a receipt handed to a caller that the ledger no longer has
  (after the restarts);
- ``ledger_inconsistent``: ``ledger verify`` fails (a fork, a broken chain) or a checkpoint seen
  during the run is not joined to the last one by a verified consistency proof;
- ``waited_past_timeout``: a caller that got no answer, not even the gateway's own 503
  ``call_timeout``, within the gateway's bound on an operation (its 40 s call timeout, counted
  from the request's arrival, and the bridge's grace) plus a margin for a loaded machine: a hang;
- ``coverage_exceeded``: a SKU with more operations recorded in a month than its limit;
- ``idempotent_repeat_differed``: a repeat of a key answered 2xx with another operation or result;
- ``unexplained_restarts``: restarts of an actor (or supervisor) beyond the SIGKILLs the schedule
  applied to it, over all the daemon's incarnations: the actor crashed by itself (an exception out
  of a handler, say on a dependency the schedule broke), which answers every call it had in flight
  ``actor_crashed``. By actor in ``unexplained_restarts`` at the top level; the invariant sums the
  excesses (an actor restarted fewer times than killed, a count lost to a whole-daemon kill, is
  shown but offsets nothing).

It prints JSON: operations by outcome, errors by code, the faults and kills it applied, restarts
by actor (from the supervision tree), the longest wait and the invariant counts. The baseline of
the same run is the first ``--calm`` seconds of load, without faults: their p50 latency against
the chaotic part's.

With ``--store firestore`` (issue 14's "many instances" profile, docs/specification.md §10) it
starts Google's Firestore emulator, one shared development CA, ledger key and sandbox (as
``bench.instances`` does) and ``--instances`` daemons (2 by default, each with its own data
directory) on one Firestore ledger. The load goes round robin over them, and a repeated key goes
to another instance than the one it was first sent to; an actor SIGKILL hits a random instance,
the sandbox faults all of them, and each ``kill -9`` takes one whole daemon (the first, then the
second) while the others go on serving. The invariants are checked across the instances: the
receipts any of them acknowledged are read back from one ledger, the checkpoints seen on every
instance must be joined to the last, and ``ledger verify --config`` reads the Firestore ledger.
The JSON then also gives the operations by instance and ``served_while_other_down``: answers
2xx from one instance while another was killed and not yet back.

``--keep DIR`` runs in ``DIR`` (created; it must be empty) and leaves it there: the data
directory (``DIR/var``: the ledger, the thespian log) and the daemon's output of every
incarnation (``DIR/daemon.out``: its log lines, the supervisors' ``crash_report`` among them), to
read why an actor restarted. Without it the run's directory is a temporary one, removed at the end.

Usage: python -m bench.chaos [--seconds 600] [--rate 100] [--seed 1] [--every 3]
                             [--store sqlite|firestore] [--instances 2] [--keep DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from bench.gateway import _Connections, deploy_body, free_port, process_roles, start_daemon
from bench.instances import firestore_tables, shared_firestore
from tai_autonomics.gateway.bridge import ANSWER_GRACE_S
from tai_autonomics.gateway.policy import OPERATION_TIMEOUT_S
from tai_autonomics.ledger.errors import ProofError
from tai_autonomics.ledger.merkle import verify_consistency
from tai_autonomics.runtime._process import descendants

NOT_ACTORS = ("load_generator", "daemon_main_gateway", "sandbox", "daemon_other")  # bench.gateway's roles
ANSWER_MARGIN_S = 5.0  # for the event loop and HTTP on a machine at load 10
TIMEOUT_S = OPERATION_TIMEOUT_S + ANSWER_GRACE_S + ANSWER_MARGIN_S
"""A caller's patience. The gateway answers a deploy within its call timeout (Acquisition's
deadline, 25 s, plus the ledger's time), 503 ``call_timeout`` at worst: a patience equal to that
timeout (40 s, as before) counted each such answer, 40.02 s late, as a hang."""
SKU_LIMITS = {"sku-002": 3}  # the dev policy's count limits per month (sku-001: none that this run reaches)
FAULTS = (
    {"kind": "latency", "endpoint": "customer.*", "delay_s": 0.5},
    {"kind": "error", "endpoint": "customer.*", "status": 503, "probability": 0.5},
    {"kind": "outage", "endpoint": "customer.*", "mode": "drop", "probability": 0.5},
    {"kind": "rate_limit", "endpoint": "customer.*", "retry_after_s": 0.2, "probability": 0.5},
    {"kind": "latency", "endpoint": "insurer.*", "delay_s": 0.5},
    {"kind": "error", "endpoint": "insurer.*", "status": 500, "probability": 0.5},
)


class Run:
    """A daemon under test: started, killed and restarted on one data directory.

    ``tables``: TOML for its release file (the Firestore profile's); ``sandbox``: the URL of the
    sandbox it calls when that is not its own child's (the cluster's shared one); ``name``: its
    name among several instances ("" when it runs alone)."""

    def __init__(self, root: Path, tables: str = "", sandbox: str | None = None, name: str = "") -> None:
        self.root, self.port = root, free_port()
        self.tables, self.shared_sandbox, self.name = tables, sandbox, name
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.restarts = 0
        self.down = False  # killed and not yet ready again
        self.actor_restarts: dict[str, int] = {}  # summed over the daemon's incarnations
        self.supervisors: set[str] = set()  # names in actor_restarts that are supervisors

    def start(self) -> None:
        self.proc, self.out = start_daemon(self.root, self.port, log_level="INFO", tables=self.tables)
        tokens = dict(line.split("=", 1) for line in (self.root / "var" / "tokens.env").read_text().split())
        self.tokens = {k.removeprefix("TAI_TOKEN_").lower(): v.strip("'\"") for k, v in tokens.items()}
        self.sandbox = self.shared_sandbox or [json.loads(line)["url"] for line in self.out.read_text().splitlines()
                                               if '"sandbox_started"' in line][-1]
        self.roles = process_roles(self.base, self.tokens["admin"], self.proc.pid)
        self.down = False

    def headers(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}

    def count_restarts(self) -> None:
        """Add this incarnation's restarts by actor (from the live tree) to the run's."""
        try:
            tree = httpx.get(f"{self.base}/v1/supervision", headers=self.headers("admin"), timeout=30).json()
        except httpx.HTTPError:
            return  # the root supervisor is restarting this moment: these counts are lost to the report
        stack = [tree]
        while stack:
            node = stack.pop()
            stack.extend(node.get("children") or [])
            if node.get("type") == "supervisor":
                self.supervisors.add(node["name"])
            if node.get("restarts"):
                self.actor_restarts[node["name"]] = self.actor_restarts.get(node["name"], 0) + node["restarts"]

    def kill9(self) -> None:
        """Every process of the daemon, stopped first (so none forks another), then killed."""
        self.count_restarts()
        self.down = True
        pids = [self.proc.pid, *descendants(self.proc.pid)]
        for signum in (signal.SIGSTOP, signal.SIGKILL):
            for pid in pids:
                try:
                    os.kill(pid, signum)
                except ProcessLookupError:
                    pass
        self.proc.wait(30)
        self.restarts += 1

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(30)


class Load:
    """What callers sent and got."""

    def __init__(self) -> None:
        self.outcomes: dict[str, int] = {}
        self.errors: dict[str, int] = {}
        self.first: dict[str, tuple[str, str]] = {}  # key → (operation_id, status) of its first 2xx
        self.bodies: dict[str, dict] = {}  # key → the body sent with it (a repeat sends the same)
        self.acknowledged: list[dict] = []  # 2xx deploy answers
        self.repeats_differed = 0
        self.waited_past_timeout = 0
        self.longest_wait_s = 0.0
        self.calm_latencies: list[float] = []
        self.chaos_latencies: list[float] = []
        self.sent_to: dict[str, int] = {}  # key → the instance it was first sent to
        self.by_instance: dict[str, dict[str, int]] = {}  # instance → outcome → count (several instances)
        self.served_while_other_down = 0


async def one(runs: list[Run], load: Load, pools: list[_Connections], i: int, rng: random.Random,
              calm: bool) -> None:
    """Arrival ``i``: a new deploy (round robin over the instances), a quote, or a repeat of an
    earlier key with its body, sent to the instance after the one the key first went to."""
    keys = list(load.first)
    repeat = bool(keys) and rng.random() < 0.1
    key = rng.choice(keys) if repeat else uuid.uuid4().hex
    body = load.bodies[key] if repeat else deploy_body(i) | ({"sku_id": "sku-002", "cost": 1} if rng.random() < 0.1
                                                           else {})
    load.bodies[key] = body
    quote = not repeat and i % 10 == 5
    if repeat:
        target = (load.sent_to[key] + 1) % len(runs)
    else:  # round robin; quotes (every tenth arrival) take turns of their own, or all would go to one instance
        target = load.sent_to[key] = (i // 10 if quote else i) % len(runs)
    run, pool = runs[target], pools[target]
    started = time.monotonic()
    try:
        if quote:
            sent = pool.request("POST", "/v1/pricing/quotes",
                                json.dumps({"customer_id": "chaos", "metrics": {"m": i}}).encode())
        else:
            sent = pool.request("POST", "/v1/deployments", json.dumps(body).encode(), f"Idempotency-Key: {key}\r\n")
        status, raw = await asyncio.wait_for(sent, TIMEOUT_S)  # the caller's whole patience
        answer = json.loads(raw) if raw else {}
        code = "" if status < 300 else (answer.get("error") or {}).get("code", str(status))
    except asyncio.TimeoutError:
        status, code = 0, "timeout"
        load.waited_past_timeout += 1
    except (OSError, asyncio.IncompleteReadError, ValueError) as exc:  # the daemon killed under the request
        status, code = 0, type(exc).__name__
    waited = time.monotonic() - started
    load.longest_wait_s = max(load.longest_wait_s, waited)
    (load.calm_latencies if calm else load.chaos_latencies).append(waited)
    kind = "quote" if quote else "repeat" if repeat else "deploy"
    outcome = f"{kind}:{status // 100}xx" if status else f"{kind}:no_answer"
    load.outcomes[outcome] = load.outcomes.get(outcome, 0) + 1
    if len(runs) > 1:
        mine = load.by_instance.setdefault(run.name, {})
        mine[outcome] = mine.get(outcome, 0) + 1
        if 200 <= status < 300 and any(other.down for other in runs if other is not run):
            load.served_while_other_down += 1
    if code:
        load.errors[code] = load.errors.get(code, 0) + 1
    if quote or not 200 <= status < 300:
        return
    load.acknowledged.append(answer)
    seen = (answer["operation_id"], answer["status"])
    if key not in load.first:
        load.first[key] = seen
    elif load.first[key] != seen and load.first[key][1] != "in_progress" and seen[1] != "in_progress":
        load.repeats_differed += 1


async def drive(runs: list[Run], load: Load, seconds: float, rate: float, calm_s: float, rng: random.Random) -> None:
    """Open-loop arrivals on bench.gateway's cheap connection pool, one per instance (no queue of
    its own: every request goes out on schedule and the daemon sheds what it cannot take, 503
    ``overloaded``; so a wait past the timeout is the daemon's, not the load generator's)."""
    pools = [_Connections("127.0.0.1", run.port, {**run.headers("service"), "Content-Type": "application/json"})
             for run in runs]
    start, tasks, i = time.monotonic(), [], 0
    while (now := time.monotonic()) < start + seconds:
        due = start + i / rate
        if due > now:
            await asyncio.sleep(due - now)  # the arrival schedule itself
        tasks.append(asyncio.create_task(one(runs, load, pools, i, rng, now < start + calm_s)))
        i += 1
    await asyncio.gather(*tasks)
    for pool in pools:
        pool.close()


def chaos(runs: list[Run], seconds: float, calm_s: float, every: float, rng: random.Random, applied: dict,
          checkpoints: list[dict], stop: threading.Event, abort: threading.Event) -> None:
    """The fault schedule, on its own thread: after the calm part, one fault every ``every`` s;
    a whole daemon killed and restarted at 25 % and 55 % of the run (the first instance, then the
    next; both happen, even if a slow restart pushes the second past the end of the load). Before
    each, the signed checkpoint of the moment is kept, from each instance in turn (the end checks
    the last one extends every one of them). ``abort``: the run is failing, no kill is still due
    (a daemon restarted while the run stops would be left running)."""
    start = time.monotonic()
    kills = [start + seconds * 0.25, start + seconds * 0.55]
    step = 0
    while (not stop.wait(every if step else calm_s) or kills) and not abort.is_set():
        step += 1
        if time.monotonic() > start + seconds - every and not kills:
            break
        run = runs[step % len(runs)]
        try:
            seen = httpx.get(f"{run.base}/v1/ledger/checkpoint", headers=run.headers("auditor"), timeout=10)
            if seen.status_code == 200:
                checkpoints.append(seen.json())
        except httpx.HTTPError:
            pass  # an actor just killed: the next step takes one
        if kills and (time.monotonic() >= kills[0] or stop.is_set()):
            victim = runs[applied.get("daemon_kill9", 0) % len(runs)]
            kills.pop(0)
            victim.kill9()
            victim.start()
            applied["daemon_kill9"] = applied.get("daemon_kill9", 0) + 1
            continue
        if stop.is_set():
            continue  # the load is over: only the kills still due
        try:
            _break_something(runs, rng, every, applied, stop)
        except (httpx.HTTPError, KeyError, ValueError) as exc:  # the daemon too busy or mid-restart to ask
            applied["step_failed"] = applied.get("step_failed", 0) + 1
            print(f"chaos step failed: {type(exc).__name__}: {exc}", file=sys.stderr)


def _break_something(runs: list[Run], rng: random.Random, every: float, applied: dict,
                     stop: threading.Event) -> None:
    """SIGKILL a random actor's process (on a random instance), or one sandbox fault for up to 2 s."""
    if rng.random() < 0.5:
        run = runs[rng.randrange(len(runs))] if len(runs) > 1 else runs[0]  # one daemon: the seeded schedule as before
        actors = [pid for pid, role in run.roles.items() if role not in NOT_ACTORS]
        pid = rng.choice(actors)
        name = f"sigkill:{run.roles[pid]}" + (f"@{run.name}" if run.name else "")
        try:
            os.kill(pid, signal.SIGKILL)
            applied[name] = applied.get(name, 0) + 1
        except ProcessLookupError:
            pass
        run.roles = process_roles(run.base, run.tokens["admin"], run.proc.pid)
    else:
        run = runs[0]  # the instances share one sandbox (their own when there is one instance)
        fault = rng.choice(FAULTS)
        made = httpx.post(f"{run.sandbox}/admin/faults", json=fault, timeout=10).json()
        name = f"{fault['kind']}@{fault['endpoint']}"
        applied[name] = applied.get(name, 0) + 1
        stop.wait(min(every, 2.0))
        httpx.delete(f"{run.sandbox}/admin/faults/{made['id']}", timeout=10)


def ledger_receipts(run: Run, chain: str) -> list[dict]:
    found: list[dict] = []
    while True:
        after = found[-1]["seq"] if found else 0
        page = _read(run, "/v1/ledger/receipts", {"chain": chain, "after": after, "limit": 1000})
        found += page
        if len(page) < 1000:
            return found


def _read(run: Run, path: str, params: dict | None = None) -> Any:
    """An auditor's read after the run: a daemon still catching up (503) or a token over its rate
    (429) is asked again as it says; any other refusal is named (never taken for a verdict)."""
    for _ in range(60):
        answer = httpx.get(f"{run.base}{path}", headers=run.headers("auditor"), timeout=60, params=params)
        if answer.status_code == 200:
            return answer.json()
        if answer.status_code not in (429, 503):
            break
        time.sleep(min(float(answer.headers.get("Retry-After") or 1), 5))
    raise RuntimeError(f"reading {path}: HTTP {answer.status_code} {answer.text[:300]}")


def invariants(runs: list[Run], load: Load, checkpoints: list[dict], verify_args: list[str]) -> dict[str, int]:
    """The invariant counts at the end (the module docstring). ``verify_args``: where ``ledger
    verify`` finds the ledger (``--data-dir`` of the one daemon, or ``--config`` of the cluster's)."""
    ends = [_read(run, "/v1/ledger/checkpoint") for run in runs]
    latest = max(ends, key=lambda checkpoint: checkpoint["size"])
    run = runs[ends.index(latest)]  # the instance that has seen the most of the ledger proves and lists it
    stored = ledger_receipts(run, "dev-policy-0001")
    ids = {r["id"] for r in stored}
    kinds: dict[str, set[str]] = {}
    for receipt in stored:
        kinds.setdefault(receipt.get("operation_id") or "", set()).add(receipt["kind"].split(".")[-1])
    handed = {r["id"] for result in load.acknowledged for r in result.get("receipts", [])}
    without = sum(1 for result in load.acknowledged if result["status"] in ("completed", "failed")
                  and not {"intent", result["status"]} <= kinds.get(result["operation_id"], set()))
    verify = subprocess.run([sys.executable, "-m", "tai_autonomics", "ledger", "verify", *verify_args],
                            capture_output=True, text=True, timeout=600)
    unjoined = 0
    for seen in [*checkpoints, *ends]:
        if seen["size"] == latest["size"] and seen["root"] != latest["root"]:
            unjoined += 1  # two trees of one size: a fork (instances that disagree on the ledger)
        elif 0 < seen["size"] < latest["size"]:
            proof = _read(run, "/v1/ledger/consistency", {"from": seen["size"], "to": latest["size"]})
            try:
                verify_consistency(seen["size"], latest["size"], base64.b64decode(seen["root"]),
                                   base64.b64decode(latest["root"]), [base64.b64decode(h) for h in proof["hashes"]])
            except ProofError:
                unjoined += 1
    months: dict[tuple[str, str], int] = {}
    for receipt in stored:
        if receipt["kind"] == "deploy.intent":
            sku = receipt["payload"]["coverage"]["sku_id"]
            months[(sku, receipt["time"][:7])] = months.get((sku, receipt["time"][:7]), 0) + 1
    over = sum(1 for (sku, _), count in months.items() if count > SKU_LIMITS.get(sku, count))
    return {"acknowledged_without_receipts": without, "acknowledged_receipt_lost": len(handed - ids),
            "ledger_inconsistent": unjoined + (verify.returncode != 0), "waited_past_timeout": load.waited_past_timeout,
            "coverage_exceeded": over, "idempotent_repeat_differed": load.repeats_differed}


@contextlib.contextmanager
def daemons(tmp: Path, store: str, instances: int) -> Iterator[tuple[list[Run], list[str]]]:
    """The daemons under test (not started) and ``ledger verify``'s arguments for their ledger: one
    dev daemon on its SQLite file, or ``instances`` on one Firestore ledger of a fresh emulator,
    sharing one key, CA and sandbox (``bench.instances.shared_firestore``), each on a data dir of its own."""
    if store == "sqlite":
        yield [Run(tmp)], ["--data-dir", str(tmp / "var")]
        return
    with shared_firestore(tmp) as sandbox:
        tables = firestore_tables(tmp, sandbox, f"chaos-{uuid.uuid4().hex[:12]}")
        runs = []
        for n in range(instances):
            name = chr(ord("a") + n)
            (tmp / name).mkdir()
            runs.append(Run(tmp / name, tables, sandbox, name))
        release = tmp / "verify.toml"  # what `ledger verify --config` reads: the cluster's ledger
        release.write_text(f'profile = "staging"\ndata_dir = "{tmp / "cli"}"\n' + tables)
        yield runs, ["--config", str(release)]


@contextlib.contextmanager
def _run_dir(keep: Path | None) -> Iterator[Path]:
    """The run's directory: ``keep`` (created, refused unless empty: a second run's output would
    mix with the first's), kept afterwards; else a temporary one, removed."""
    if keep is None:
        with tempfile.TemporaryDirectory(prefix="bench-chaos-") as tmp:
            yield Path(tmp)
        return
    keep.mkdir(parents=True, exist_ok=True)
    if any(keep.iterdir()):
        raise SystemExit(f"--keep {keep}: the directory is not empty")
    try:
        yield keep.resolve()
    finally:
        print(f"kept: the data directory in {keep / 'var'}, the daemon's output in {keep / 'daemon.out'}",
              file=sys.stderr)


def unexplained_restarts(restarts_by_actor: dict[str, int], applied: dict[str, int]) -> dict[str, int]:
    """Per actor, its restarts (over all incarnations of the daemon) less the SIGKILLs the schedule
    applied to it: a restart the schedule did not cause is a crash of the actor's own (an
    exception out of a handler, a start that failed); an actor with none is left out."""
    names = set(restarts_by_actor) | {k.removeprefix("sigkill:") for k in applied if k.startswith("sigkill:")}
    counts = {name: restarts_by_actor.get(name, 0) - applied.get(f"sigkill:{name}", 0) for name in names}
    return {name: count for name, count in sorted(counts.items()) if count}


def _applied_to(run: Run, applied: dict[str, int]) -> dict[str, int]:
    """The faults applied to ``run``'s actors, by ``sigkill:<actor>`` (an instance's are named ``@<name>``)."""
    suffix = f"@{run.name}" if run.name else ""
    return {key.removesuffix(suffix): count for key, count in applied.items() if key.endswith(suffix)}


def unexplained_total(unexplained: dict[str, int], supervisors: set[str]) -> int:
    """The invariant's count: each worker's restarts beyond its kills. A negative count (a kill whose
    restart the supervisor had not made, or a count lost, when the whole daemon was killed) is no
    credit against another actor's crash. A supervisor's restart is shown but not counted: the
    schedule's own kills can exceed its intensity (6 in 30 s under ``operations`` at ``--every
    1.5``), and it then restarts its children afresh, their counts with them."""
    return sum(max(0, count) for name, count in unexplained.items() if name not in supervisors)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--rate", type=float, default=100)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--every", type=float, default=3.0, help="seconds between faults")
    parser.add_argument("--calm", type=float, default=5.0, help="seconds of load without faults first (baseline)")
    parser.add_argument("--store", choices=["sqlite", "firestore"], default="sqlite",
                        help="the ledger's store: one daemon on SQLite, or daemons on the Firestore emulator")
    parser.add_argument("--instances", type=int, help="daemons on the one Firestore ledger (default 2)")
    parser.add_argument("--keep", type=Path, metavar="DIR",
                        help="run in DIR (created, must be empty) and keep the data dir and daemon output there")
    args = parser.parse_args()
    if args.store == "sqlite" and args.instances not in (None, 1):
        parser.error("--instances: a SQLite ledger has one daemon (its data dir's); use --store firestore")
    instances = args.instances if args.instances is not None else 2 if args.store == "firestore" else 1
    if instances < 1:
        parser.error("--instances must be at least 1")
    rng, load, applied = random.Random(args.seed), Load(), {}
    with _run_dir(args.keep) as root, daemons(root, args.store, instances) as (runs, verify_args):
        checkpoints: list[dict] = []
        stop, abort = threading.Event(), threading.Event()
        breaker = threading.Thread(target=chaos, args=(runs, args.seconds, args.calm, args.every,
                                                       random.Random(args.seed + 1), applied, checkpoints, stop,
                                                       abort), daemon=True)
        try:
            for run in runs:
                run.start()
            breaker.start()
            asyncio.run(drive(runs, load, args.seconds, args.rate, args.calm, rng))
            stop.set()
            breaker.join(120)
            counts = invariants(runs, load, checkpoints, verify_args)
            for run in runs:
                run.count_restarts()
            unexplained = {run.name: unexplained_restarts(run.actor_restarts, _applied_to(run, applied))
                           for run in runs}
            counts["unexplained_restarts"] = sum(unexplained_total(unexplained[run.name], run.supervisors)
                                                 for run in runs)
        finally:
            stop.set()
            abort.set()
            if breaker.is_alive():  # a daemon it is restarting is stopped with the others
                breaker.join(120)
            for run in runs:
                run.stop()
    calm = sorted(load.calm_latencies)
    wild = sorted(load.chaos_latencies)
    restarts = sum(run.restarts for run in runs)
    report = {
        "seconds": args.seconds, "rate": args.rate, "seed": args.seed,
        "operations": dict(sorted(load.outcomes.items())), "errors": dict(sorted(load.errors.items())),
        "faults_applied": dict(sorted(applied.items())), "daemon_restarts": restarts,
        "restarts_by_actor": runs[0].actor_restarts,
        "unexplained_restarts": unexplained[runs[0].name], "longest_wait_s": round(load.longest_wait_s, 2),
        "p50_ms_calm": round(calm[len(calm) // 2] * 1e3, 1) if calm else None,
        "p50_ms_chaos": round(wild[len(wild) // 2] * 1e3, 1) if wild else None,
        "schedule_complete": restarts == 2, "invariants": counts}
    if args.store == "firestore":
        report |= {"store": "firestore", "instances": instances,
                   "daemon_restarts_by_instance": {run.name: run.restarts for run in runs},
                   "restarts_by_actor": {run.name: run.actor_restarts for run in runs},
                   "unexplained_restarts": unexplained,
                   "operations_by_instance": {name: dict(sorted(outcomes.items()))
                                              for name, outcomes in sorted(load.by_instance.items())},
                   "served_while_other_down": load.served_while_other_down}
    print(json.dumps(report, indent=2))
    return 1 if any(counts.values()) or restarts != 2 else 0


def _terminated(signum: int, _frame: Any) -> None:
    """SIGTERM (a test's timeout, an operator) unwinds like an exception, so the daemons are
    stopped and the emulator, which runs in a session of its own, is not left behind."""
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    signal.signal(signal.SIGTERM, _terminated)
    sys.exit(main())
