"""The ``tai-autonomics`` command line.

Each subsystem owns one module here with a ``register(subparsers)`` function; this module only
assembles them, so a command is found under the name of what it operates on.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from tai_autonomics import TaiError, __version__
from tai_autonomics.cli import cert, daemon, health, ledger, remote_shell, revenue, sandbox

_COMMAND_MODULES = (daemon, health, remote_shell, ledger, revenue, cert, sandbox)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tai-autonomics",
        description="Insured production daemon: supervision tree, receipt ledger, gateway.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in _COMMAND_MODULES:
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except TaiError as exc:
        for problem in [*getattr(exc, "problems", ()), exc]:
            print(f"tai-autonomics: error: [{problem.code}] {problem.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
