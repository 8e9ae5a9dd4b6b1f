"""``tai-autonomics ledger export|verify|backup|restore|fill-bundles`` and ``tai-autonomics verify DIR``.

``ledger export --tiles DIR`` writes the log as C2SP ``tlog-tiles`` (what the gateway serves
under ``/tlog/``). ``ledger backup`` and ``ledger restore`` copy the ledger out at a signed
checkpoint and back into an empty store (docs/backup.md); ``ledger fill-bundles`` stores the
entry bundles of a ledger's history written before bundles were (docs/receipts.md); progress goes
to stderr. ``ledger`` commands read the ledger a release file configures (``--config``: its
``[ledger]`` store and key, Firestore included), else the dev profile's SQLite ledger in
``--data-dir`` (read-only, so they can run beside the daemon; ``restore`` and ``fill-bundles``
alone write); ``verify DIR`` needs nothing but the exported directory.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tai_autonomics.cli._errors import ArgumentsInvalid
from tai_autonomics.config import load_release
from tai_autonomics.ledger import (
    DEFAULT_ORIGIN,
    Ledger,
    LedgerKey,
    LedgerStore,
    VerificationError,
    VerifyReport,
    export_ledger,
    verify_export,
    verify_store,
)
from tai_autonomics.ledger.backup import backup_ledger, check_backup, restore_ledger
from tai_autonomics.ledger.bundles import fill_bundles
from tai_autonomics.ledger.configured import configured_key, open_store
from tai_autonomics.ledger.export import export_tiles
from tai_autonomics.ledger.keys import DEV_KEY_FILE


def register(subparsers: argparse._SubParsersAction) -> None:
    ledger = subparsers.add_parser("ledger", help="export, verify, back up or restore the receipt ledger")
    commands = ledger.add_subparsers(dest="ledger_command", metavar="COMMAND", required=True)

    export = commands.add_parser(
        "export", help="write receipts.jsonl, proofs.jsonl, checkpoint and public_key.pem for offline verification"
    )
    _ledger_options(export)
    export.add_argument("--out", type=Path, help="directory to write the export into")
    export.add_argument("--tiles", type=Path, metavar="DIR",
                        help="directory to write the log into as C2SP tlog-tiles (checkpoint, tile/...)")
    export.set_defaults(func=_export)

    backup = commands.add_parser(
        "backup", help="copy the ledger at its latest signed checkpoint into a new directory (online, beside the "
                       "daemon): the export's files and a manifest with their digests")
    _ledger_options(backup)
    backup.add_argument("--out", type=Path, required=True, help="directory to write the backup into (new or empty)")
    backup.set_defaults(func=_backup)

    restore = commands.add_parser(
        "restore", help="check a backup (every signature and proof, each file's digest), then write it into an "
                        "empty ledger store and check the restored tree against the backup's checkpoint")
    restore.add_argument("directory", type=Path, help="a directory written by 'ledger backup'")
    _ledger_options(restore)
    restore.add_argument(
        "--workers", type=_positive, default=None, metavar="N",
        help="processes checking signatures and proofs (default: one per CPU for large backups)")
    restore.set_defaults(func=_restore)

    fill = commands.add_parser(
        "fill-bundles", help="store the entry bundles (tile/entries/<N>) of receipts appended before bundles were "
                             "stored, so that they are served from one row (safe beside the daemon)")
    _ledger_options(fill)
    fill.set_defaults(func=_fill_bundles)

    verify = commands.add_parser("verify", help="check the stored ledger; names the first bad receipt and why")
    _ledger_options(verify)
    verify.set_defaults(func=_verify_stored)

    offline = subparsers.add_parser(
        "verify", help="check an exported ledger directory offline (signatures, chains, inclusion, checkpoint)"
    )
    offline.add_argument("directory", type=Path, help="a directory written by 'ledger export'")
    offline.add_argument(
        "--workers", type=_positive, default=None, metavar="N",
        help="processes checking signatures and proofs (default: one per CPU for large exports)",
    )
    offline.set_defaults(func=_verify_export)


def _ledger_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE",
                        help="release file whose [ledger] store and key to read (default: the dev profile's SQLite)")
    parser.add_argument("--data-dir", type=Path, help="data directory (default: the release file's, else ./var)")
    key = parser.add_mutually_exclusive_group()
    key.add_argument("--key-file", type=Path,
                     help=f"ledger key PEM (default: the release file's, else DATA_DIR/{DEV_KEY_FILE}, the dev key)")
    key.add_argument("--key-env", metavar="NAME", help="environment variable holding the ledger key PEM")
    parser.add_argument("--origin", help=f"checkpoint origin (default: the release file's, else {DEFAULT_ORIGIN})")


def _configured(args: argparse.Namespace, *, readonly: bool = True) -> tuple[LedgerStore, LedgerKey, str]:
    """The store, key and origin to read (or with ``readonly`` false, to write): the release
    file's, each overridden by its flag."""
    release = load_release(args.config)
    settings = dict(release.sections.get("ledger", {}))
    if args.key_env:
        settings = {**settings, "key_env": args.key_env, "key_file": None}
    elif args.key_file:
        settings = {**settings, "key_file": str(args.key_file), "key_env": None}
    data_dir = args.data_dir or release.data_dir
    if not settings.get("key_file") and not settings.get("key_env"):  # read the dev key, never make one
        settings["key_file"] = str(data_dir / DEV_KEY_FILE)
    key = configured_key(settings, data_dir, release.profile)
    origin = args.origin or settings.get("origin", DEFAULT_ORIGIN)
    return open_store(settings, data_dir, readonly=readonly), key, origin


def _store_kind(args: argparse.Namespace) -> str:
    return str(load_release(args.config).sections.get("ledger", {}).get("store", "sqlite"))


def _export(args: argparse.Namespace) -> int:
    if args.out is None and args.tiles is None:
        raise ArgumentsInvalid("ledger export needs --out DIR, --tiles DIR or both")
    store, key, origin = _configured(args)
    # a reader beside the daemon: a checkpoint of receipts appended since the latest is signed
    # for the export, not stored (the daemon signs its own at its next interval)
    ledger = Ledger.open(store, key, origin=origin, readonly=True)
    written: dict[str, str] = {}
    try:
        if args.out is not None:
            checkpoint = export_ledger(ledger, args.out)
            written["out"] = str(args.out)
        if args.tiles is not None:
            checkpoint = export_tiles(ledger, args.tiles)
            written["tiles"] = str(args.tiles)
    finally:
        ledger.close()
    print(json.dumps({"ok": True, **written, "tree_size": checkpoint.size}))
    return 0


def _backup(args: argparse.Namespace) -> int:
    store, key, origin = _configured(args)
    # a reader beside the daemon: a checkpoint of receipts appended since the latest is signed
    # for the export, not stored (the daemon signs its own at its next interval)
    ledger = Ledger.open(store, key, origin=origin, readonly=True)
    try:
        manifest = backup_ledger(ledger, args.out, store_kind=_store_kind(args), progress=_progress("backup"))
    finally:
        ledger.close()
    print(json.dumps({"ok": True, "out": str(args.out), "tree_size": manifest.size, "root": manifest.root.hex()}))
    return 0


def _restore(args: argparse.Namespace) -> int:
    print(f"tai-autonomics: ledger restore: checking {args.directory}", file=sys.stderr)
    backup = check_backup(args.directory, workers=args.workers)  # before the target is opened (or created)
    store, key, origin = _configured(args, readonly=False)
    try:
        report = restore_ledger(backup, store, key, origin=origin, progress=_progress("restore"))
    finally:
        store.close()
    print(json.dumps({"ok": True, **report.to_json()}))
    return 0


def _fill_bundles(args: argparse.Namespace) -> int:
    _configured(args)[0].close()  # read-only first: a missing SQLite ledger is an error, not a new empty one
    store, _, _ = _configured(args, readonly=False)
    try:
        report = fill_bundles(store, progress=_progress("fill-bundles"))
    finally:
        store.close()
    print(json.dumps({"ok": True, **report.to_json()}))
    return 0


def _progress(what: str, every_s: float = 2.0) -> Callable[[int, int], None]:
    """A progress callback printing to stderr at most every ``every_s`` seconds, and at the end."""
    last = time.monotonic()

    def report(done: int, total: int) -> None:
        nonlocal last
        now = time.monotonic()
        if done == total or now - last >= every_s:
            last = now
            print(f"tai-autonomics: ledger {what}: {done}/{total} receipts", file=sys.stderr)

    return report


def _verify_stored(args: argparse.Namespace) -> int:
    store, key, origin = _configured(args)
    try:
        return _report(lambda: verify_store(store, key.public, origin=origin))
    finally:
        store.close()


def _verify_export(args: argparse.Namespace) -> int:
    return _report(lambda: verify_export(args.directory, workers=args.workers))


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _report(run: Callable[[], VerifyReport]) -> int:
    """Print the verification outcome as one JSON line; exit 1 when verification fails."""
    try:
        report: VerifyReport = run()
    except VerificationError as exc:
        print(json.dumps({"ok": False, "code": exc.code, "where": exc.where, "reason": exc.reason, **exc.detail}))
        print(f"tai-autonomics: verification failed: {exc.message}", file=sys.stderr)
        return 1
    print(json.dumps(report.to_json()))
    return 0
