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
- ``waited_past_timeout``: a caller that got no answer within its timeout (a hang);
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

``--keep DIR`` runs in ``DIR`` (created; it must be empty) and leaves it there: the data
directory (``DIR/var``: the ledger, the thespian log) and the daemon's output of every
incarnation (``DIR/daemon.out``: its log lines, the supervisors' ``crash_report`` among them), to
read why an actor restarted. Without it the run's directory is a temporary one, removed at the end.

Usage: python -m bench.chaos [--seconds 600] [--rate 100] [--seed 1] [--every 3] [--keep DIR]
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
from tai_autonomics.ledger.errors import ProofError
from tai_autonomics.ledger.merkle import verify_consistency
from tai_autonomics.runtime._process import descendants

NOT_ACTORS = ("load_generator", "daemon_main_gateway", "sandbox", "daemon_other")  # bench.gateway's roles
TIMEOUT_S = 40.0  # a caller's patience: Acquisition's deadline (25 s) plus the drain and a restart
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
    """The daemon under test: started, killed and restarted on one data directory."""

    def __init__(self, root: Path) -> None:
        self.root, self.port = root, free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.restarts = 0
        self.actor_restarts: dict[str, int] = {}  # summed over the daemon's incarnations
        self.supervisors: set[str] = set()  # names in actor_restarts that are supervisors

    def start(self) -> None:
        self.proc, self.out = start_daemon(self.root, self.port, log_level="INFO")
        tokens = dict(line.split("=", 1) for line in (self.root / "var" / "tokens.env").read_text().split())
        self.tokens = {k.removeprefix("TAI_TOKEN_").lower(): v.strip("'\"") for k, v in tokens.items()}
        self.sandbox = [json.loads(line)["url"] for line in self.out.read_text().splitlines()
                        if '"sandbox_started"' in line][-1]
        self.roles = process_roles(self.base, self.tokens["admin"], self.proc.pid)

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


async def one(run: Run, load: Load, pool: _Connections, i: int, rng: random.Random, calm: bool) -> None:
    keys = list(load.first)
    repeat = bool(keys) and rng.random() < 0.1
    key = rng.choice(keys) if repeat else uuid.uuid4().hex
    body = load.bodies[key] if repeat else deploy_body(i) | ({"sku_id": "sku-002", "cost": 1} if rng.random() < 0.1
                                                           else {})
    load.bodies[key] = body
    quote = not repeat and i % 10 == 5
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


async def drive(run: Run, load: Load, seconds: float, rate: float, calm_s: float, rng: random.Random) -> None:
    """Open-loop arrivals on bench.gateway's cheap connection pool (no queue of its own: every
    request goes out on schedule and the daemon sheds what it cannot take, 503 ``overloaded``; so a
    wait past the timeout is the daemon's, not the load generator's)."""
    pool = _Connections("127.0.0.1", run.port, {**run.headers("service"), "Content-Type": "application/json"})
    start, tasks, i = time.monotonic(), [], 0
    while (now := time.monotonic()) < start + seconds:
        due = start + i / rate
        if due > now:
            await asyncio.sleep(due - now)  # the arrival schedule itself
        tasks.append(asyncio.create_task(one(run, load, pool, i, rng, now < start + calm_s)))
        i += 1
    await asyncio.gather(*tasks)
    pool.close()


def chaos(run: Run, seconds: float, calm_s: float, every: float, rng: random.Random, applied: dict,
          checkpoints: list[dict], stop: threading.Event) -> None:
    """The fault schedule, on its own thread: after the calm part, one fault every ``every`` s;
    the whole daemon killed and restarted at 25 % and 55 % of the run (both happen, even if a slow
    restart pushes the second past the end of the load). Before each, the signed
    checkpoint of the moment is kept (the end checks the last one extends every one of them)."""
    start = time.monotonic()
    kills = [start + seconds * 0.25, start + seconds * 0.55]
    step = 0
    while not stop.wait(every if step else calm_s) or kills:
        step += 1
        if time.monotonic() > start + seconds - every and not kills:
            break
        try:
            seen = httpx.get(f"{run.base}/v1/ledger/checkpoint", headers=run.headers("auditor"), timeout=10)
            if seen.status_code == 200:
                checkpoints.append(seen.json())
        except httpx.HTTPError:
            pass  # an actor just killed: the next step takes one
        if kills and (time.monotonic() >= kills[0] or stop.is_set()):
            kills.pop(0)
            run.kill9()
            run.start()
            applied["daemon_kill9"] = applied.get("daemon_kill9", 0) + 1
            continue
        if stop.is_set():
            continue  # the load is over: only the kills still due
        try:
            _break_something(run, rng, every, applied, stop)
        except (httpx.HTTPError, KeyError, ValueError) as exc:  # the daemon too busy or mid-restart to ask
            applied["step_failed"] = applied.get("step_failed", 0) + 1
            print(f"chaos step failed: {type(exc).__name__}: {exc}", file=sys.stderr)


def _break_something(run: Run, rng: random.Random, every: float, applied: dict, stop: threading.Event) -> None:
    """SIGKILL a random actor's process, or one sandbox fault for up to 2 s."""
    if rng.random() < 0.5:
        actors = [pid for pid, role in run.roles.items() if role not in NOT_ACTORS]
        pid = rng.choice(actors)
        try:
            os.kill(pid, signal.SIGKILL)
            applied[f"sigkill:{run.roles[pid]}"] = applied.get(f"sigkill:{run.roles[pid]}", 0) + 1
        except ProcessLookupError:
            pass
        run.roles = process_roles(run.base, run.tokens["admin"], run.proc.pid)
    else:
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


def invariants(run: Run, load: Load, checkpoints: list[dict]) -> dict[str, int]:
    stored = ledger_receipts(run, "dev-policy-0001")
    ids = {r["id"] for r in stored}
    kinds: dict[str, set[str]] = {}
    for receipt in stored:
        kinds.setdefault(receipt.get("operation_id") or "", set()).add(receipt["kind"].split(".")[-1])
    handed = {r["id"] for result in load.acknowledged for r in result.get("receipts", [])}
    without = sum(1 for result in load.acknowledged if result["status"] in ("completed", "failed")
                  and not {"intent", result["status"]} <= kinds.get(result["operation_id"], set()))
    verify = subprocess.run([sys.executable, "-m", "tai_autonomics", "ledger", "verify", "--data-dir",
                             str(run.root / "var")], capture_output=True, text=True, timeout=600)
    latest = _read(run, "/v1/ledger/checkpoint")
    unjoined = 0
    for seen in checkpoints:
        if 0 < seen["size"] < latest["size"]:
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
    parser.add_argument("--keep", type=Path, metavar="DIR",
                        help="run in DIR (created, must be empty) and keep the data dir and daemon output there")
    args = parser.parse_args()
    rng, load, applied = random.Random(args.seed), Load(), {}
    with _run_dir(args.keep) as root:
        run = Run(root)
        run.start()
        checkpoints: list[dict] = []
        stop = threading.Event()
        breaker = threading.Thread(target=chaos, args=(run, args.seconds, args.calm, args.every,
                                                       random.Random(args.seed + 1), applied, checkpoints, stop),
                                   daemon=True)
        try:
            breaker.start()
            asyncio.run(drive(run, load, args.seconds, args.rate, args.calm, rng))
            stop.set()
            breaker.join(120)
            counts = invariants(run, load, checkpoints)
            run.count_restarts()
            unexplained = unexplained_restarts(run.actor_restarts, applied)
            counts["unexplained_restarts"] = unexplained_total(unexplained, run.supervisors)
        finally:
            stop.set()
            run.stop()
    calm = sorted(load.calm_latencies)
    wild = sorted(load.chaos_latencies)
    print(json.dumps({
        "seconds": args.seconds, "rate": args.rate, "seed": args.seed,
        "operations": dict(sorted(load.outcomes.items())), "errors": dict(sorted(load.errors.items())),
        "faults_applied": dict(sorted(applied.items())), "daemon_restarts": run.restarts,
        "restarts_by_actor": run.actor_restarts,
        "unexplained_restarts": unexplained,
        "longest_wait_s": round(load.longest_wait_s, 2),
        "p50_ms_calm": round(calm[len(calm) // 2] * 1e3, 1) if calm else None,
        "p50_ms_chaos": round(wild[len(wild) // 2] * 1e3, 1) if wild else None,
        "schedule_complete": run.restarts == 2, "invariants": counts}, indent=2))
    return 1 if any(counts.values()) or run.restarts != 2 else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
