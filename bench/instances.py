"""Many instances on one Firestore: 1, 2 and 3 daemons on Google's emulator at fixed deploy rates.

Starts the Firestore emulator, one shared sandbox (insurer, customer endpoint) and one shared
development CA and ledger key, then for each instance count a fresh ledger and that many
``tai-autonomics foreground`` daemons (dev profile, ``[ledger] store = "firestore"``, one data
dir each), and sends insured deploys open-loop at each rate, spread round-robin over the
daemons. Prints JSON per instance count and rate: achieved deploys/s and receipts/s, p50/p99
latency, errors by code (``ledger_busy`` among them), the ledger's store retries (appends
re-sealed because another instance committed first) and, with the leased sequencer, how many
drafts the holder integrated for the others.

Both sequencing designs run (``[ledger] sequencing``): ``optimistic``, where every instance
appends its own batches and races for the head document, and ``leased`` (the default), where
one instance holds the sequencer lease and integrates the others' queued drafts. The baseline in
the same run is one daemon: what more instances add (or cost) on one store.
``docs/performance.md`` compares the figures with Firestore's production limits (about one
sustained write per second per document, 500 writes per batch). The emulator is not
production: its absolute numbers say little, the trend across instance counts does.

Usage: python -m bench.instances [--instances 1 2 3] [--rates 5 20] [--seconds 20]
       [--sequencing leased optimistic] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from bench.gateway import _Connections, _percentile, deploy_body, free_port, open_loop
from tai_autonomics.sandbox import SandboxConfig, SandboxProcess
from tai_autonomics.trust import write_dev_ca
from tai_autonomics.trust.issuing import CA_CERT_FILE, DEV_CERT_FILE, DEV_KEY_FILE, DEV_LEDGER_KEY_FILE

EMULATOR_PACKAGE = "google-cloud-cli-firestore-emulator"
PROJECT = "tai-autonomics-bench"
PROJECT_ENV = "TAI_BENCH_FIRESTORE_PROJECT"  # the release files name the project by this variable


def start_emulator() -> tuple[subprocess.Popen, str]:
    """Google's Firestore emulator on a free loopback port (the Debian package's jar, Java 17)."""
    try:
        listing = subprocess.run(["dpkg", "-L", EMULATOR_PACKAGE], capture_output=True, text=True).stdout
    except FileNotFoundError:  # not Debian: no package to find the jar by
        listing = ""
    jars = [line for line in listing.splitlines() if line.endswith("cloud-firestore-emulator.jar")]
    java = shutil.which("java")
    if not jars or java is None:
        raise SystemExit(f"needs the Debian package {EMULATOR_PACKAGE} and Java 17")
    port = free_port()
    proc = subprocess.Popen([java, "-cp", jars[0], "com.google.cloud.datastore.emulator.firestore.CloudFirestore",
                             "--host=127.0.0.1", f"--port={port}"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    ready = threading.Event()

    def drain() -> None:
        for line in proc.stdout:
            if "Dev App Server is now running" in line:
                ready.set()
        ready.set()

    threading.Thread(target=drain, daemon=True).start()
    if not ready.wait(90) or proc.poll() is not None:
        os.killpg(proc.pid, signal.SIGKILL)  # a JVM still starting is not left behind
        proc.wait()
        raise SystemExit("the Firestore emulator did not start")
    return proc, f"127.0.0.1:{port}"


class Daemon:
    def __init__(self, root: Path, name: str, tables: str) -> None:
        self.dir = root / name
        self.dir.mkdir(parents=True)
        self.port = free_port()
        rel = self.dir / "bench.toml"
        rel.write_text(f'profile = "dev"\nsupervision = "{Path.cwd() / "supervision.toml"}"\n'
                       f'data_dir = "{self.dir / "var"}"\n[system]\nadmin_port = {free_port()}\n'
                       f'log_level = "WARNING"\n' + tables)
        self.out = self.dir / "daemon.out"
        with open(self.out, "w") as handle:
            self.proc = subprocess.Popen([sys.executable, "-m", "tai_autonomics", "foreground", "--config", str(rel),
                                          "--port", str(self.port)], stdout=handle, stderr=subprocess.STDOUT)

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/readyz", timeout=1).status_code == 200:
                    tokens = dict(line.split("=", 1) for line in (self.dir / "var" / "tokens.env").read_text().split())
                    self.tokens = {k: v.strip("'\"") for k, v in tokens.items()}
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        tail = "\n".join(self.out.read_text().splitlines()[-15:])
        raise SystemExit(f"a daemon did not become ready; the end of its output:\n{tail}")

    def ledger_status(self) -> dict:
        answer = httpx.post(f"http://127.0.0.1:{self.port}/v1/actors/ReceiptLedger/call", json={"type": "status"},
                            headers={"Authorization": f"Bearer {self.tokens['TAI_TOKEN_ADMIN']}"}, timeout=30)
        return answer.json()

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(30)


async def run_rate(daemons: list[Daemon], rate: float, seconds: float) -> dict:
    pools = [_Connections("127.0.0.1", d.port, {"Authorization": f"Bearer {d.tokens['TAI_TOKEN_SERVICE']}",
                                                  "Content-Type": "application/json"}) for d in daemons]
    latencies: list[float] = []
    errors: dict[str, int] = {}

    async def one(i: int) -> None:
        started = time.perf_counter()
        try:
            status, body = await asyncio.wait_for(pools[i % len(pools)].request(
                "POST", "/v1/deployments", json.dumps(deploy_body(i)).encode(),
                f"Idempotency-Key: {uuid.uuid4().hex}\r\n"), 45)
            code = "" if status < 300 else json.loads(body).get("error", {}).get("code", str(status))
        except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError) as exc:
            code = type(exc).__name__
        latencies.append(time.perf_counter() - started)
        if code:
            errors[code] = errors.get(code, 0) + 1

    total = int(rate * seconds)
    elapsed = await open_loop(rate, total, one)
    for pool in pools:
        pool.close()
    done = total - sum(errors.values())
    return {"rate": rate, "requests": total, "deploys_per_s": round(done / elapsed, 2),
            "receipts_per_s": round(2 * done / elapsed, 2), "p50_ms": round(_percentile(latencies, 0.5) * 1e3, 1),
            "p99_ms": round(_percentile(latencies, 0.99) * 1e3, 1), "errors": errors,
            "ledger_busy": errors.get("ledger_busy", 0)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instances", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--rates", type=float, nargs="+", default=[5, 20])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--sequencing", nargs="+", choices=["leased", "optimistic"], default=["leased", "optimistic"])
    parser.add_argument("--warmup", type=float, default=5, help="seconds of discarded load first")
    parser.add_argument("--quick", action="store_true", help="5 s per rate")
    args = parser.parse_args()
    seconds = 5 if args.quick else args.seconds
    results: dict = {"seconds_per_rate": seconds, "warmup_s": args.warmup, "runs": []}
    with tempfile.TemporaryDirectory(prefix="bench-instances-") as tmp, shared_firestore(Path(tmp)) as url:
        root = Path(tmp)
        # a fresh emulator's JVM is slow at first: whatever ran first looked worse
        run_instances(root, url, 1, [20], args.warmup, "optimistic")
        for count in args.instances:  # the designs side by side at each count, close in time
            for sequencing in args.sequencing:
                results["runs"].append(run_instances(root, url, count, args.rates, seconds, sequencing))
    print(json.dumps(results, indent=2))


@contextmanager
def shared_firestore(root: Path) -> Iterator[str]:
    """What the daemons of one Cloud Run revision share, for as long as the block runs: the Firestore
    emulator (``FIRESTORE_EMULATOR_HOST`` and the project variable set in this process, so daemons
    started from it inherit them), one development CA and ledger key under ``root / "ca"`` and one
    sandbox (insurer, customer endpoint) under ``root / "shared"``; its URL."""
    emulator, host = start_emulator()
    os.environ["FIRESTORE_EMULATOR_HOST"] = host
    os.environ[PROJECT_ENV] = PROJECT
    try:
        write_dev_ca(root / "ca")
        sandbox = SandboxProcess(root / "shared", ca_dir=root / "ca", on_line=lambda _line: None)
        url = sandbox.start()
        try:
            yield url
        finally:
            sandbox.stop()
    finally:
        os.killpg(emulator.pid, signal.SIGKILL)
        emulator.wait()


def firestore_tables(root: Path, sandbox: str, ledger: str, sequencing: str | None = None) -> str:
    """The release file's tables of a daemon of the cluster ``shared_firestore(root)`` made: the ledger
    ``ledger`` in Firestore (``sequencing``: the design; None: the default), the shared key, CA and sandbox."""
    ca = root / "ca"
    return (f'[ledger]\nstore = "firestore"\nfirestore_ledger = "{ledger}"\n'
            + (f'sequencing = "{sequencing}"\n' if sequencing else "")
            + f'firestore_project_env = "{PROJECT_ENV}"\nkey_file = "{ca / DEV_LEDGER_KEY_FILE}"\n'
            f'[insurer]\nurl = "{sandbox}"\n'
            f'public_key_file = "{SandboxConfig(root / "shared" / "sandbox").insurer_public_key_file}"\n'
            f'[trust]\nanchor = "{ca / CA_CERT_FILE}"\ncert_file = "{ca / DEV_CERT_FILE}"\n'
            f'key_file = "{ca / DEV_KEY_FILE}"\n[customer]\nurl = "{sandbox}/customer/v1"\n')


def run_instances(root: Path, sandbox: str, count: int, rates: list[float], seconds: float, sequencing: str) -> dict:
    run = f"{sequencing}-{count}-{uuid.uuid4().hex[:8]}"
    tables = firestore_tables(root, sandbox, f"bench-{run}", sequencing)
    daemons = [Daemon(root, f"{run}-{i}", tables) for i in range(count)]
    try:
        for daemon in daemons:
            daemon.wait_ready()
        runs = [asyncio.run(run_rate(daemons, rate, seconds)) for rate in rates]
        statuses = [d.ledger_status() for d in daemons]
    finally:
        for daemon in daemons:
            daemon.stop()
    sequencers = [s["sequencer"] for s in statuses if s.get("sequencer")]
    return {"sequencing": sequencing, "instances": count, "rates": runs,
            "store_retries": sum(s.get("store_retries", 0) for s in statuses),
            "integrated_for_others": sum(s["integrated"] for s in sequencers),
            "takeovers": sum(s["takeovers"] for s in sequencers)}


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
