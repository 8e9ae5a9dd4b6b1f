"""``tai-autonomics health``: is the gateway answering ``/healthz``? For a container's HEALTHCHECK.

``ping`` only reads the lock of a data directory: it says a process holds it, not that it serves.
Over HTTP the check sees what a client and Cloud Run's liveness probe see, from inside the image,
which has no curl. Exit status as a HEALTHCHECK reads it: 0 healthy, 1 unhealthy (Docker
reserves 2), so the failure is printed here rather than raised to the CLI's error handler.
"""

from __future__ import annotations

import argparse
import os
import sys

import httpx

from tai_autonomics.gateway.config import LOOPBACK, resolve_port

EXIT_HEALTHY, EXIT_UNHEALTHY = 0, 1


def register(subparsers: argparse._SubParsersAction) -> None:
    health = subparsers.add_parser(
        "health", help="check that the gateway answers /healthz (exit 0) or not (exit 1)",
        description="GET the gateway's /healthz once; exit 0 if it answers 200, else 1 with the reason on one "
                    "line. For a container HEALTHCHECK (the image has no curl).")
    health.add_argument("--url", help=f"URL to check (default: http://{LOOPBACK}:$PORT/healthz, $PORT else 8080)")
    health.add_argument("--timeout", type=float, default=2.0, metavar="S", help="seconds to wait (default: 2)")
    health.set_defaults(func=_health)


def _health(args: argparse.Namespace) -> int:
    url = args.url or f"http://{LOOPBACK}:{resolve_port(None, os.environ)}/healthz"
    try:
        status = httpx.get(url, timeout=args.timeout).status_code
    except httpx.HTTPError as exc:
        print(f"tai-autonomics: unhealthy: {url}: {exc.__class__.__name__}: {exc}", file=sys.stderr)
        return EXIT_UNHEALTHY
    if status != 200:
        print(f"tai-autonomics: unhealthy: {url}: HTTP {status}", file=sys.stderr)
        return EXIT_UNHEALTHY
    print(f"healthy: {url}")
    return EXIT_HEALTHY
