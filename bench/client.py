"""The typed client's cost, and the revenue route's, against the dev-profile daemon.

Starts ``tai-autonomics foreground`` (dev profile) like bench/gateway.py, then, sequentially on one
connection each, in the same run:

- ``client_vs_httpx``: ``GET /v1/mode`` through ``tai_autonomics.client.Client`` against a bare
  ``httpx.Client`` with the same header (the baseline): what the typed layer (call builders,
  retry driver, error mapping) adds per request, as a ratio of mean latencies.
- ``revenue``: ``GET /v1/revenue`` with the policy chain holding N contract receipts (recorded
  through ``POST /v1/contracts/{id}/events``), against ``GET /v1/mode`` (the baseline: the same
  gateway and one actor call): the route reads the whole chain per request, so its cost grows
  with the chain (docs/revenue.md, "Limit").

Usage: python -m bench.client [--requests 300] [--events 200 2000]
The machine may be shared: compare the ratios, not the absolute times.
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from bench.gateway import free_port, start_daemon
from tai_autonomics.client import Client


def _mean_ms(call: Callable[[], object], n: int) -> float:
    call()  # warm: connection and caches
    durations = []
    for _ in range(n):
        started = time.perf_counter()
        call()
        durations.append(time.perf_counter() - started)
    return round(statistics.fmean(durations) * 1e3, 3)


def _record(service: Client, count: int, start: int) -> None:
    for i in range(start, start + count):
        service.create_contract_event(f"c-{i % 50}", {"event": "msa_signed", "date": "2026-01-01",
                                                      "monthly_fee": 1000 + i})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--events", type=int, nargs="+", default=[200, 2000])
    args = parser.parse_args()
    results: dict[str, object] = {"requests": args.requests}
    with tempfile.TemporaryDirectory(prefix="bench-client-") as tmp:
        port = free_port()
        proc, _ = start_daemon(Path(tmp), port)
        try:
            tokens = {k: v.strip("'\"") for k, v in (line.split("=", 1) for line in
                      (Path(tmp) / "var" / "tokens.env").read_text().split() if "=" in line)}
            base = f"http://127.0.0.1:{port}"
            with Client(base, token=tokens["TAI_TOKEN_AUDITOR"]) as typed, \
                    httpx.Client(base_url=base, headers={"Authorization": f"Bearer {tokens['TAI_TOKEN_AUDITOR']}"},
                                 timeout=60) as bare, Client(base, token=tokens["TAI_TOKEN_SERVICE"]) as service:
                plain = _mean_ms(lambda: bare.get("/v1/mode").json(), args.requests)
                through = _mean_ms(typed.get_mode, args.requests)
                results["client_vs_httpx"] = {"httpx_ms": plain, "client_ms": through,
                                              "ratio": round(through / plain, 3)}
                rows, recorded = [], 0
                for events in sorted(args.events):
                    _record(service, events - recorded, recorded)
                    recorded = events
                    mode = _mean_ms(typed.get_mode, max(10, args.requests // 10))
                    revenue = _mean_ms(lambda: typed.get_revenue("2026-02"), max(10, args.requests // 10))
                    rows.append({"contract_receipts": events, "mode_ms": mode, "revenue_ms": revenue,
                                 "ratio": round(revenue / mode, 2)})
                results["revenue"] = rows
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
