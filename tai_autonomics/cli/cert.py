"""``tai-autonomics cert ...``: inspect insurance certificates, set up development certificates."""

from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path
from typing import Any

from tai_autonomics.cli._errors import FileUnreadable
from tai_autonomics.trust import (
    CertificateError,
    CertificateVerifier,
    describe,
    load_certificate,
    write_dev_ca,
)

EXIT_VALID = 0
EXIT_INVALID = 1


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``cert`` command group."""
    cert = subparsers.add_parser("cert", help="insurance certificates: inspection, development CA")
    commands = cert.add_subparsers(dest="cert_command", metavar="SUBCOMMAND", required=True)

    inspect = commands.add_parser(
        "inspect",
        help="print a certificate's policy, validity and days left, and verify it (exit 0 only if valid)",
    )
    inspect.add_argument("file", metavar="FILE", help="the certificate, DER or PEM")
    inspect.add_argument("--trust-anchor", required=True, metavar="CA.pem", help="the insurer's root CA certificate")
    inspect.add_argument(
        "--intermediate",
        action="append",
        default=[],
        metavar="PEM",
        help="an intermediate CA certificate or bundle (repeatable)",
    )
    inspect.add_argument("--issuer", metavar="DN", help="require this direct issuer (RFC 4514, e.g. 'CN=Insurer CA')")
    inspect.add_argument("--at", type=_timestamp, metavar="ISO8601", help="verify as of this time instead of now")
    inspect.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    inspect.set_defaults(func=_inspect)

    dev_ca = commands.add_parser(
        "dev-ca",
        help="write a development CA, an insurance certificate with a sample policy, its key and a ledger key",
    )
    dev_ca.add_argument("--out", required=True, metavar="DIR", help="directory to write into (created if missing)")
    dev_ca.add_argument("--days", type=int, default=365, help="validity of the insurance certificate (default 365)")
    dev_ca.add_argument("--force", action="store_true", help="replace an existing development CA in DIR")
    dev_ca.set_defaults(func=_dev_ca)


def _inspect(args: argparse.Namespace) -> int:
    now = args.at or dt.datetime.now(dt.timezone.utc)
    verifier = CertificateVerifier.from_files(args.trust_anchor, args.intermediate, expected_issuer=args.issuer)
    try:
        data = Path(args.file).read_bytes()
    except OSError as exc:
        raise FileUnreadable(f"cannot read {args.file}: {exc.strerror}") from None
    report: dict[str, Any] = {"file": args.file, "checked_at": now.isoformat(), "certificate": None}
    try:
        report["certificate"] = describe(load_certificate(data), now)
        verifier.verify(data, now=now)
    except CertificateError as exc:
        report.update(valid=False, error=exc.to_dict())
    else:
        report.update(valid=True, error=None)
    print(json.dumps(report, indent=2) if args.json else _text(report))
    return EXIT_VALID if report["valid"] else EXIT_INVALID


def _text(report: dict[str, Any]) -> str:
    lines = [f"certificate: {report['file']}"]
    info = report["certificate"]
    if info is not None:
        lines += [
            f"  subject:      {info['subject']}",
            f"  issuer:       {info['issuer']}",
            f"  serial:       {info['serial_number']}",
            f"  fingerprint:  sha256:{info['fingerprint_sha256']}",
            f"  not before:   {info['not_before']}",
            f"  not after:    {info['not_after']}",
            f"  days left:    {info['days_left']}",
        ]
        policy = info["policy"]
        if "error" in policy:
            lines.append(f"  policy:       unreadable [{policy['error']}] {policy['message']}")
        else:
            lines.append(
                f"  policy:       {policy['policy_id']} for {policy['customer_name']} ({policy['customer_account']})"
            )
            for sku, limit in policy["coverage_limits"].items():
                authorized = "authorized" if sku in policy["authorized_sku"] else "not authorized"
                lines.append(
                    f"    {sku}: {limit['limit_count']} operations, {limit['limit_cost']} USD a month ({authorized})"
                )
    error = report["error"]
    lines.append("verdict: VALID" if report["valid"] else f"verdict: INVALID [{error['code']}] {error['message']}")
    return "\n".join(lines)


def _timestamp(text: str) -> dt.datetime:
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 timestamp: {text!r}") from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"give a time zone (e.g. 'Z'): {text!r}")
    return moment


def _dev_ca(args: argparse.Namespace) -> int:
    files = write_dev_ca(args.out, valid_for=dt.timedelta(days=args.days), force=args.force)
    print(f"CA certificate:        {files.ca_certificate}")
    print(f"CA key:                {files.ca_key}")
    print(f"insurance certificate: {files.certificate}")
    print(f"insurance key:         {files.key}")
    print(f"ledger key:            {files.ledger_key}")
    print(f"ledger public key:     {files.ledger_public_key}")
    return 0
