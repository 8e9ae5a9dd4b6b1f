"""``tai-autonomics revenue --month YYYY-MM``: a month's recognised revenue, online or from an export.

Online (``--url``, the default the local gateway) it asks the daemon's ``GET /v1/revenue`` with the
typed client, as an auditor (the token from ``$TAI_TOKEN_AUDITOR``, or a Google ID token for
``--audience`` on Cloud Run). Offline (``--export DIR``) it first verifies the export as ``verify``
does (signatures, chains, proofs, checkpoint), then computes the same figures from the contract
receipts in it with the same code, so an auditor needs neither the daemon nor its database
(docs/specification.md §12). Prints one JSON object; exit 1 if the export does not verify.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tai_autonomics.cli._errors import ChainAmbiguous, TokenMissing
from tai_autonomics.client import Client, GoogleIdToken
from tai_autonomics.gateway.config import LOOPBACK, resolve_port
from tai_autonomics.ledger import VerificationError, verify_export
from tai_autonomics.operations.revenue import KIND_PREFIX, parse_month, recognise

TOKEN_ENV = "TAI_TOKEN_AUDITOR"


def register(subparsers: argparse._SubParsersAction) -> None:
    revenue = subparsers.add_parser(
        "revenue", help="a month's recognised revenue (ASC 606) from contract receipts, online or from an export",
        description="Compute a month's recognised revenue, refunds, capped variable fees, SLA credits and "
                    "escalations from contract receipts: from the running daemon (GET /v1/revenue) or, offline, "
                    "from a verified 'ledger export' directory.")
    revenue.add_argument("--month", required=True, help="the month, YYYY-MM")
    source = revenue.add_mutually_exclusive_group()
    source.add_argument("--url", help=f"the gateway (default: http://{LOOPBACK}:$PORT, $PORT else 8080); the "
                                      f"auditor token from ${TOKEN_ENV}")
    source.add_argument("--export", type=Path, metavar="DIR", help="an export directory: verified, then computed "
                                                                   "offline")
    revenue.add_argument("--audience", help="with --url: authenticate with a Google ID token for this audience "
                                            "(Cloud Run) instead of a local token")
    revenue.add_argument("--chain", help="with --export: the chain whose contract receipts count (default: the "
                                         "one chain that has any)")
    revenue.set_defaults(func=_revenue)


def _revenue(args: argparse.Namespace) -> int:
    month = parse_month(args.month)  # refused before anything is read
    if args.export is None:
        figures = _online(args, month)
    else:
        try:
            verify_export(args.export)
        except VerificationError as exc:
            print(f"tai-autonomics: the export does not verify, no figures computed: {exc.message}", file=sys.stderr)
            return 1
        figures = offline(args.export, month, args.chain)
    print(json.dumps(figures, sort_keys=True))
    return 0


def _online(args: argparse.Namespace, month: str) -> dict[str, Any]:
    url = args.url or f"http://{LOOPBACK}:{resolve_port(None, os.environ)}"
    if args.audience:
        client = Client(url, auth=GoogleIdToken(args.audience))
    elif os.environ.get(TOKEN_ENV):
        client = Client(url, token=os.environ[TOKEN_ENV])
    else:
        raise TokenMissing(f"no token: set ${TOKEN_ENV} (or give --audience on Cloud Run)")
    with client:
        return dict(client.get_revenue(month))


def offline(directory: Path, month: str, chain: str | None = None) -> dict[str, Any]:
    """The month's figures from the contract receipts of one chain of an (already verified) export."""
    contract = list(_contract_receipts(Path(directory) / "receipts.jsonl"))
    chains = sorted({receipt["chain"] for receipt in contract})
    if chain is None:
        if len(chains) > 1:
            raise ChainAmbiguous(f"contract receipts on {len(chains)} chains: name one with --chain",
                                 detail={"chains": chains})
        chain = chains[0] if chains else ""
    return {**recognise((r for r in contract if r["chain"] == chain), month), "chain": chain}


def _contract_receipts(path: Path) -> Iterator[dict[str, Any]]:
    marker = f'"kind":"{KIND_PREFIX}'.encode()  # canonical JSON: no spaces; skip the other receipts unparsed
    with open(path, "rb") as lines:
        for line in lines:
            if marker in line:
                receipt = json.loads(line)
                if str(receipt.get("kind", "")).startswith(KIND_PREFIX) and receipt.get("authority") == "contractual":
                    yield receipt
