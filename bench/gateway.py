"""Gateway load: insured deploys over HTTP at fixed arrival rates against the dev-profile daemon.

Starts ``tai-autonomics foreground`` (dev profile: SQLite ledger, sandbox insurer and customer
endpoint answering at once, multiprocess thespian) in a temporary data directory, then for each
rate sends ``POST /v1/deployments`` open-loop (requests leave on schedule whether or not earlier
ones returned, so queueing shows up as latency instead of being hidden) and prints JSON:
p50/p95/p99 latency, error rate and achieved rate per rate. The baseline in the same run is
``GET /healthz`` at the same rate: the HTTP stack without any actor.

Each rate also reports where the CPU went (``cpu``): milliseconds of CPU (user + system, from
/proc) per request for each process of the run, by role: every named actor of the tree (its pid
from ``$info`` through the admin gateway), the daemon's main process (the HTTP gateway and the
bridge), the sandbox, the rest of the daemon (thespian's admin and logger, the supervisors), and
this load generator. On one 2-core machine their sum times the rate is the load to compare with
2 cores: that is what limits the rate.

Every thespian base named by ``--bases`` runs the same rates in the same run, one daemon after
the other (default: ``multiprocUnixBase``, the default base, beside ``multiprocTCPBase``).

Targets (issues 5 and 13): p99 ≤ 50 ms and no errors at 200 deploys/s on this 2-core machine;
≤ 5 ms of CPU per deploy over all processes at 100/s.

Usage: python -m bench.gateway [--bases multiprocUnixBase,multiprocTCPBase] [--rates 50 100 200]
                               [--seconds 30] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

from tai_autonomics.client import Client
from tai_autonomics.runtime._process import descendants  # the daemon's processes, from /proc

TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def deploy_body(i: int) -> dict:
    return {"sku_id": "sku-001", "target_cloud": "gcp", "customer_ref": f"bench-{i}",
            "customer_account": "dev-account-0001", "region": "europe-west1",
            "artifacts": {"image": "registry.example/app:1.0"}, "cost": 0}


def _cpu_ticks(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])


def process_roles(base: str, admin_token: str, daemon_pid: int) -> dict[int, str]:
    """pid → role for every process of the run (see the module docstring)."""
    roles = {os.getpid(): "load_generator", daemon_pid: "daemon_main_gateway"}
    with Client(base, token=admin_token, timeout_s=10) as admin:
        stack = list(admin.get_supervision().get("children") or [])
        while stack:
            child = stack.pop()
            stack.extend(child.get("children") or [])
            if child.get("type") == "worker":
                roles[int(admin.call_actor(child["name"], {"type": "$info"})["pid"])] = child["name"]
    for pid in descendants(daemon_pid):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:  # gone since the walk
            continue
        roles.setdefault(pid, "sandbox" if b"sandbox" in cmdline else "daemon_other")
    return roles


def cpu_by_role(roles: dict[int, str], before: dict[int, int], requests: int) -> dict[str, float]:
    spent: dict[str, float] = {}
    for pid, role in roles.items():
        ms = (_cpu_ticks(pid) - before.get(pid, 0)) * 1e3 / TICKS
        spent[role] = spent.get(role, 0.0) + ms
    per_request = {role: round(ms / max(1, requests), 2) for role, ms in sorted(spent.items(), key=lambda kv: -kv[1])}
    per_request["total"] = round(sum(spent.values()) / max(1, requests), 2)
    return per_request


class _Connections:
    """A keep-alive HTTP/1.1 connection pool on bare asyncio streams.

    The load generator shares the 2 cores with the daemon, so it must be cheap: httpx's async
    client cost about 3 ms of CPU per request here, these requests about a tenth of that. It
    speaks just enough HTTP for our own JSON answers (Content-Length bodies).
    """

    def __init__(self, host: str, port: int, headers: dict[str, str]) -> None:
        self.host, self.port = host, port
        self.head = "".join(f"{k}: {v}\r\n" for k, v in {"Host": f"{host}:{port}", **headers}.items())
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def request(self, method: str, path: str, body: bytes = b"", headers: str = "") -> tuple[int, bytes]:
        """The answer's status and body. A kept-alive connection the server has since closed (uvicorn
        closes idle ones after 5 s) fails before any byte of an answer: the request was never
        read, so it is sent again on a new connection, as HTTP clients do."""
        data = (f"{method} {path} HTTP/1.1\r\n{self.head}{headers}Content-Length: {len(body)}\r\n\r\n"
                .encode() + body)
        while self.idle:
            try:
                return await self._exchange(*self.idle.pop(), data)
            except (ConnectionResetError, BrokenPipeError, asyncio.IncompleteReadError) as exc:
                if isinstance(exc, asyncio.IncompleteReadError) and exc.partial:
                    raise
        return await self._exchange(*await asyncio.open_connection(self.host, self.port), data)

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                        data: bytes) -> tuple[int, bytes]:
        try:
            writer.write(data)
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split()[1])
            fields = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
            answer = await reader.readexactly(int(fields.get("content-length", "0")))
        except BaseException:
            writer.close()
            raise
        if fields.get("connection", "").lower() == "close":
            writer.close()
        else:
            self.idle.append((reader, writer))
        return status, answer

    def close(self) -> None:
        for _, writer in self.idle:
            writer.close()


async def open_loop(rate: float, total: int, one) -> float:
    """Start ``one(i)`` for i in 0..total-1 on schedule at ``rate`` per second, whether or not
    earlier ones returned (queueing shows as latency), and wait for all; the seconds it took."""
    start = time.perf_counter()
    tasks = []
    for i in range(total):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)  # the arrival schedule itself, not synchronisation
        tasks.append(asyncio.create_task(one(i)))
    await asyncio.gather(*tasks)
    return time.perf_counter() - start


async def run_rate(base: str, token: str, rate: float, seconds: float, deploy: bool,
                   roles: dict[int, str] | None = None) -> dict:
    host, port = base.rsplit("//", 1)[1].rsplit(":", 1)
    pool = _Connections(host, int(port), {"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    latencies: list[float] = []
    errors: dict[str, int] = {}

    async def one(i: int) -> None:
        started = time.perf_counter()
        try:
            if deploy:
                status, _ = await asyncio.wait_for(pool.request(
                    "POST", "/v1/deployments", json.dumps(deploy_body(i)).encode(),
                    f"Idempotency-Key: {uuid.uuid4().hex}\r\n"), 10)
            else:
                status, _ = await asyncio.wait_for(pool.request("GET", "/healthz"), 10)
            ok, key = status < 300, str(status)
        except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError) as exc:
            ok, key = False, type(exc).__name__
        latencies.append(time.perf_counter() - started)
        if not ok:
            errors[key] = errors.get(key, 0) + 1

    total = int(rate * seconds)
    before = {pid: _cpu_ticks(pid) for pid in roles or {}}
    elapsed = await open_loop(rate, total, one)
    cpu = cpu_by_role(roles, before, total) if roles else None
    pool.close()
    return {"rate": rate, "requests": total, "achieved_per_s": total / elapsed,
            "p50_ms": _percentile(latencies, 0.50) * 1e3, "p95_ms": _percentile(latencies, 0.95) * 1e3,
            "p99_ms": _percentile(latencies, 0.99) * 1e3,
            "error_rate": sum(errors.values()) / max(1, total), "errors": errors,
            **({"cpu_ms_per_request": cpu, "cores_used": round(cpu["total"] * total / elapsed / 1e3, 2)}
               if cpu else {})}


def start_daemon(data_dir: Path, port: int, base: str = "multiprocUnixBase", log_level: str = "WARNING",
                 tables: str = "", var: Path | None = None) -> tuple[subprocess.Popen, Path]:
    """The dev daemon on ``data_dir/var`` (kept across restarts), or on ``var`` if given (a data
    dir built elsewhere, by ``bench.scale --build-only``), on actor system ``base``, ready;
    ``tables``: TOML appended to its release file. Its output is appended to ``data_dir/daemon.out``."""
    rel = data_dir / "bench.toml"
    rel.write_text(f'profile = "dev"\nsupervision = "{Path.cwd() / "supervision.toml"}"\n'
                   f'data_dir = "{var or data_dir / "var"}"\n[system]\nbase = "{base}"\nadmin_port = {free_port()}\n'
                   f'log_level = "{log_level}"\n' + tables)
    out = data_dir / "daemon.out"
    with open(out, "a") as handle:
        proc = subprocess.Popen([sys.executable, "-m", "tai_autonomics", "foreground", "--config", str(rel),
                                 "--port", str(port)], stdout=handle, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return proc, out
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.05)  # polling /readyz; bench.scale times the start with it
    proc.kill()
    raise SystemExit(f"the daemon did not become ready; its output is in {out}")


def bench_base(base_name: str, rates: list[float], seconds: float) -> dict:
    """The healthz baseline and the deploys at every rate, against a daemon on ``base_name``."""
    with tempfile.TemporaryDirectory(prefix="bench-gateway-") as tmp:
        port = free_port()
        proc, out = start_daemon(Path(tmp), port, base_name)
        try:
            tokens = dict(line.split("=", 1) for line in (Path(tmp) / "var" / "tokens.env").read_text().split()
                          if "=" in line)
            token = tokens["TAI_TOKEN_SERVICE"].strip("'\"")
            base = f"http://127.0.0.1:{port}"
            roles = process_roles(base, tokens["TAI_TOKEN_ADMIN"].strip("'\""), proc.pid)
            results: dict = {"deploys": [], "healthz_baseline": []}
            for rate in rates:
                results["healthz_baseline"].append(asyncio.run(run_rate(base, token, rate, min(seconds, 5), False)))
                results["deploys"].append(asyncio.run(run_rate(base, token, rate, seconds, True, roles)))
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bases", default="multiprocUnixBase,multiprocTCPBase")
    parser.add_argument("--rates", type=float, nargs="+", default=[50, 100, 200])
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--quick", action="store_true", help="5 s per rate")
    args = parser.parse_args()
    seconds = 5 if args.quick else args.seconds
    results: dict = {"seconds_per_rate": seconds}
    for base_name in args.bases.split(","):
        results[base_name] = bench_base(base_name, args.rates, seconds)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
