"""``tai-autonomics cert ...``: set up development certificates."""

from __future__ import annotations

import argparse
import datetime as dt

from tai_autonomics.trust import write_dev_ca


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``cert`` command group."""
    cert = subparsers.add_parser("cert", help="insurance certificates: development CA, inspection")
    commands = cert.add_subparsers(dest="cert_command", metavar="SUBCOMMAND", required=True)

    dev_ca = commands.add_parser(
        "dev-ca",
        help="write a development CA, an insurance certificate with a sample policy, its key and a ledger key",
    )
    dev_ca.add_argument("--out", required=True, metavar="DIR", help="directory to write into (created if missing)")
    dev_ca.add_argument("--days", type=int, default=365, help="validity of the insurance certificate (default 365)")
    dev_ca.add_argument("--force", action="store_true", help="replace an existing development CA in DIR")
    dev_ca.set_defaults(func=_dev_ca)


def _dev_ca(args: argparse.Namespace) -> int:
    files = write_dev_ca(args.out, valid_for=dt.timedelta(days=args.days), force=args.force)
    print(f"CA certificate:        {files.ca_certificate}")
    print(f"CA key:                {files.ca_key}")
    print(f"insurance certificate: {files.certificate}")
    print(f"insurance key:         {files.key}")
    print(f"ledger key:            {files.ledger_key}")
    print(f"ledger public key:     {files.ledger_public_key}")
    return 0
