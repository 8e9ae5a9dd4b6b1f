"""``tai-autonomics sandbox serve``: the insurer, marketplace and customer deploy endpoint on one port."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import math
from datetime import timedelta
from pathlib import Path

from tai_autonomics import logs
from tai_autonomics.sandbox.app import Sandbox, SandboxConfig
from tai_autonomics.sandbox.faults import KINDS, parse_fault_arg

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("sandbox", help="the sandbox playing the outside parties",
                                   description="A real HTTP server playing the insurer, the marketplace and a "
                                               "customer's deploy endpoint, with faults on demand.")
    commands = parser.add_subparsers(dest="sandbox_command", metavar="SUBCOMMAND", required=True)
    serve = commands.add_parser(
        "serve", help="serve the sandbox until SIGTERM/SIGINT",
        description="Serve the sandbox. Logs JSON lines on stdout; the 'sandbox listening' line gives the URL. "
                    "Admin API: /admin/faults, /admin/requests, /admin/reset, /admin/policies.",
        epilog="fault kinds: " + ", ".join(KINDS) + ". Example: --fault 'rate_limit@insurer.*:retry_after_s=2,times=3'",
    )
    serve.add_argument("--port", type=int, default=0, help="port to listen on (default 0: a free port, logged)")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1, loopback only)")
    serve.add_argument("--data-dir", default="./var", type=Path,
                       help="data directory; the sandbox keeps its insurer keys under DATA_DIR/sandbox (default ./var)")
    serve.add_argument("--ca-dir", type=Path, default=None,
                       help="directory of the insurer's development CA (ca.pem, ca-key.pem); created if empty "
                            "(default DATA_DIR/sandbox/insurer/ca)")
    serve.add_argument("--fault", action="append", default=[], metavar="KIND[@ENDPOINT][:key=value,...]",
                       help="inject a fault from the start (repeatable); also accepts a JSON object")
    serve.add_argument("--seed", type=int, default=0, help="seed of the fault RNG (default 0)")
    serve.add_argument("--cert-validity-days", type=_positive_days, default=90.0, metavar="DAYS",
                       help="validity of the certificates the insurer issues, fractions allowed (default 90)")
    serve.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    serve.set_defaults(func=serve_command)


def serve_command(args: argparse.Namespace) -> int:
    from tai_autonomics.sandbox.runner import serve_foreground

    faults = tuple(parse_fault_arg(text) for text in args.fault)
    logs.configure(args.log_level)
    if not _is_loopback(args.host):
        logs.event(log, "sandbox bound to a non-loopback address", logging.WARNING, host=args.host)
    config = SandboxConfig(data_dir=args.data_dir / "sandbox", ca_dir=args.ca_dir, faults=faults, seed=args.seed,
                           certificate_validity=timedelta(days=args.cert_validity_days))
    serve_foreground(Sandbox(config), args.host, args.port)
    return 0


def _positive_days(text: str) -> float:
    """A certificate lifetime: a negative one made every issuance answer 500, zero issued expired certificates."""
    try:
        days = float(text)
    except ValueError:
        days = math.nan
    if not 0 < days <= 3650:
        raise argparse.ArgumentTypeError(f"must be a number of days > 0 and at most 3650, not {text!r}")
    return days


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
