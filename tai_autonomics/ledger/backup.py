"""``ledger backup`` and ``ledger restore``: a consistent copy of the ledger at a signed checkpoint,
and the same ledger rebuilt from it in an empty store of either kind (docs/backup.md).

A backup is an export (:func:`~tai_autonomics.ledger.export.export_ledger`: every receipt up to
the latest signed checkpoint, its inclusion proof, the checkpoint and the public key) plus a
manifest, ``backup.json``, naming the checkpoint's size and root, the store it came from, when it
was taken, and each file's length and SHA-256. It is taken online: receipts up to a signed
checkpoint never change, so appends going on meanwhile only make the backup older than the live
log, never inconsistent.

Restore checks everything before it writes anything: the manifest, every receipt, signature and
inclusion proof against the signed checkpoint (:func:`~tai_autonomics.ledger.verify.verify_export`,
which names the file and line of a bad byte), each file's digest, and that the configured ledger
key is the one that signed the backup (a restored ledger the daemon cannot extend is no restore).
It refuses a store that holds receipts. It then appends the receipts through the store's own
atomic append, in batches the store can take, with what the receipts imply recomputed from them
by the same rules ``ledger verify`` recounts with: the coverage counters, operation records and
idempotency claims (:class:`~tai_autonomics.ledger.operations.Recount`), the pricing index,
the tree's tiles and the full entry bundles. After the last batch, the backup's own checkpoint
is stored (checkpoints are not part of a batch: docs/specification.md §4). Finally the ledger
is opened on the store, which checks its right edge against that checkpoint, and whose checkpoint
must be byte-identical.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tai_autonomics.ledger.canonical import canonical_json, parse_json
from tai_autonomics.ledger.core import Ledger
from tai_autonomics.ledger.errors import CanonicalJSONError, LedgerError, VerificationError
from tai_autonomics.ledger.export import export_ledger
from tai_autonomics.ledger.indexes import prices_of
from tai_autonomics.ledger.keys import LedgerKey, LedgerPublicKey
from tai_autonomics.ledger.note import Checkpoint, open_checkpoint
from tai_autonomics.ledger.operations import Recount
from tai_autonomics.ledger.receipts import Receipt, rfc3339_utc
from tai_autonomics.ledger.store import EffectReads, LedgerStore, LogHead, SealedBatch
from tai_autonomics.ledger.tiles import Bundler, TiledTree
from tai_autonomics.ledger.verify import CHECKPOINT_FILE, PROOFS_FILE, PUBLIC_KEY_FILE, RECEIPTS_FILE, verify_export

MANIFEST_FILE = "backup.json"
FORMAT = "tai-autonomics-ledger-backup"
FORMAT_VERSION = 1
BACKUP_FILES = (RECEIPTS_FILE, PROOFS_FILE, CHECKPOINT_FILE, PUBLIC_KEY_FILE)
_RESTORE_BATCH = 4096  # receipts per restored batch on a store that takes many (SQLite: one fsync each)
_DIGEST_CHUNK = 1 << 20

#: called with (receipts done, receipts in all) as long work goes on
Progress = Callable[[int, int], None]


class BackupInvalid(LedgerError):
    """A backup directory is incomplete, altered or not a backup; ``detail`` names the file (and
    entry). Nothing was written."""

    code = "ledger_backup_invalid"


class BackupFailed(LedgerError):
    """A backup could not be written where asked (the place exists and is not empty, or refuses writes)."""

    code = "ledger_backup_failed"


class RestoreFailed(LedgerError):
    """A restore wrote the backup's receipts but the restored ledger does not prove the backup's checkpoint."""

    code = "ledger_restore_failed"


class RestoreRefused(LedgerError):
    """The restore's target cannot take the backup (it holds receipts, or its key did not sign
    the backup). Nothing was written."""

    code = "ledger_restore_refused"


@dataclass(frozen=True, slots=True)
class Manifest:
    """What ``backup.json`` records about a backup."""

    size: int
    root: bytes
    origin: str
    store: str
    created: str
    files: dict[str, dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": FORMAT_VERSION, "tree_size": self.size, "root": self.root.hex(),
                "origin": self.origin, "store": self.store, "created": self.created, "files": self.files}

    def encode(self) -> bytes:
        """One line of RFC 8785 canonical JSON whose ``sha256`` member is the digest of the
        canonical JSON of the others: any changed byte of the manifest shows."""
        body = self.to_json()
        return canonical_json({**body, "sha256": hashlib.sha256(canonical_json(body)).hexdigest()}) + b"\n"


@dataclass(frozen=True, slots=True)
class CheckedBackup:
    """A backup directory :func:`check_backup` found sound: its manifest, signed checkpoint and key."""

    directory: Path
    manifest: Manifest
    checkpoint: Checkpoint
    public: LedgerPublicKey


@dataclass(frozen=True, slots=True)
class RestoreReport:
    """What a restore wrote: the tree size and root (the backup's), and how."""

    size: int
    root: bytes
    batches: int
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return {"tree_size": self.size, "root": self.root.hex(), "batches": self.batches,
                "seconds": round(self.seconds, 3)}


def backup_ledger(ledger: Ledger, out_dir: str | Path, *, store_kind: str,
                  progress: Progress | None = None) -> Manifest:
    """Write a backup of ``ledger`` at its latest signed checkpoint into ``out_dir`` (missing or
    empty). The manifest is written last, under a temporary name then renamed: a directory
    without one is an interrupted backup, which restore refuses."""
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise BackupFailed(f"{out} exists and is not an empty directory: a backup goes into a new one")
    checkpoint = export_ledger(ledger, out, progress=progress)
    try:
        files = {name: _file_entry(out / name) for name in BACKUP_FILES}
        manifest = Manifest(checkpoint.size, checkpoint.root, checkpoint.origin, store_kind,
                            rfc3339_utc(datetime.now(timezone.utc)), files)
        partial = out / f".{MANIFEST_FILE}.partial"
        partial.write_bytes(manifest.encode())
        with open(partial, "rb") as written:
            os.fsync(written.fileno())
        partial.rename(out / MANIFEST_FILE)
    except OSError as exc:
        raise BackupFailed(f"cannot write the backup to {out}: {exc.strerror}") from None
    return manifest


def check_backup(directory: str | Path, *, workers: int | None = None) -> CheckedBackup:
    """Check a backup without writing anything: the manifest, every receipt, signature and proof
    against the signed checkpoint (naming the file and line of the first bad one), then each
    file's length and digest; BackupInvalid on the first problem. Separate from the restore, so
    that a bad backup is refused before the target store is even opened (or created)."""
    base = Path(directory)
    if not base.is_dir():
        raise BackupInvalid(f"{base} is not a directory", detail={"where": str(base)})
    manifest = _read_manifest(base)
    try:
        verify_export(base, workers=workers)
    except VerificationError as exc:
        raise BackupInvalid(f"backup {base}: {exc.message}", detail=exc.detail) from None
    except LedgerError as exc:  # verify_export reads the public key first: not a key
        raise BackupInvalid(f"backup {base}: {exc.message}", detail={"where": PUBLIC_KEY_FILE}) from None
    for name in BACKUP_FILES:
        if _file_entry(base / name) != manifest.files[name]:
            raise BackupInvalid(f"backup {base}: {name} is not the file the manifest describes "
                                f"(length or SHA-256 differs)", detail={"where": name})
    public = LedgerPublicKey.from_pem((base / PUBLIC_KEY_FILE).read_bytes(), PUBLIC_KEY_FILE)
    checkpoint = open_checkpoint((base / CHECKPOINT_FILE).read_text(encoding="utf-8"), public)
    if (checkpoint.size, checkpoint.root, checkpoint.origin) != (manifest.size, manifest.root, manifest.origin):
        raise BackupInvalid(f"backup {base}: {MANIFEST_FILE} names tree size {manifest.size} of "
                            f"{manifest.origin!r}, the checkpoint another tree", detail={"where": MANIFEST_FILE})
    return CheckedBackup(base, manifest, checkpoint, public)


def restore_ledger(backup: CheckedBackup, store: LedgerStore, key: LedgerKey, *, origin: str | None = None,
                   progress: Progress | None = None) -> RestoreReport:
    """Restore a checked backup into the empty ``store`` with ``key``, the one that signed it,
    for the log ``origin`` (default: the backup's); RestoreRefused, nothing written, if the key
    or the origin is another, or if the store holds receipts: the daemon configured so could not
    go on from the restored ledger. Then open the ledger on it, which checks the restored tree
    against the backup's checkpoint."""
    started = time.monotonic()
    checkpoint, public = backup.checkpoint, backup.public
    if public.raw != key.public.raw:
        raise RestoreRefused(f"the configured ledger key ({key.key_id}) did not sign this backup "
                             f"({public.key_id}): restore with the key the daemon will use")
    if origin is not None and origin != checkpoint.origin:
        raise RestoreRefused(f"the backup is of log {checkpoint.origin!r}, the target is configured for {origin!r} "
                             f"(--origin or the release file's [ledger] origin)")
    latest = store.checkpoint()
    held = max(store.size(), latest.size if latest is not None else 0)
    if held:
        raise RestoreRefused(f"the target ledger store holds {held} receipts: restore only into an empty store",
                             detail={"tree_size": held})
    batches = 0
    for batch in _batches(backup.directory / RECEIPTS_FILE, checkpoint, _batch_size(store)):
        store.append({receipt.chain for receipt in batch.receipts}, _sealer(batch),
                     EffectReads(usage=frozenset(batch.usage), operations=frozenset(
                         record.operation_id for record in batch.operations)))
        batches += 1
        if progress is not None:
            progress(batch.size, checkpoint.size)
    store.put_checkpoint(checkpoint)
    ledger = Ledger.open(store, key, origin=checkpoint.origin)
    if ledger.checkpoint().note != checkpoint.note:
        raise RestoreFailed(f"the restored ledger's checkpoint differs from the backup's (tree size {checkpoint.size})")
    return RestoreReport(checkpoint.size, checkpoint.root, batches, time.monotonic() - started)


def _sealer(batch: SealedBatch) -> Callable[[LogHead], SealedBatch]:
    """The batch as sealed already; the store checks that it extends its head exactly."""
    return lambda head: batch


def _batch_size(store: LedgerStore) -> int:
    """Receipts per restored batch. A restored batch opens and closes operations and reserves
    coverage for many receipts at once (up to five writes each on Firestore, where the ledger's
    own batches average fewer), so it takes three quarters of what the store allows."""
    return max(1, min(_RESTORE_BATCH, store.max_batch * 3 // 4))


def _batches(receipts_file: Path, final: Checkpoint, size: int) -> Iterator[SealedBatch]:
    """The backup's receipts as sealed batches of ``size``, each with what it changes (counters,
    records, prices, tiles, bundles); the tree they give must be ``final``'s, the checkpoint the restore
    stores after them (checkpoints are not part of a batch, docs/specification.md §4)."""
    tree, recount, bundler = TiledTree.built(), Recount(), Bundler.built()
    pending: list[Receipt] = []
    parsed: list[dict[str, Any]] = []
    with open(receipts_file, "rb") as lines:
        for index, line in enumerate(lines):
            data = line.rstrip(b"\n")
            try:
                fields = parse_json(data)
            except CanonicalJSONError as exc:  # checked already: the file changed since
                raise BackupInvalid(f"{RECEIPTS_FILE} line {index + 1}: {exc.message}") from None
            receipt = Receipt(index, data, fields)
            tree.append(receipt.leaf_hash)
            recount.add(fields)
            pending.append(receipt)
            parsed.append(fields)
            if len(pending) == size:
                yield _batch(pending, parsed, tree, recount, bundler, final)
                pending, parsed = [], []
    if pending:
        yield _batch(pending, parsed, tree, recount, bundler, final)
    if tree.size != final.size:
        raise _changed()


def _batch(receipts: list[Receipt], parsed: list[dict[str, Any]], tree: TiledTree, recount: Recount,
           bundler: Bundler, final: Checkpoint) -> SealedBatch:
    if tree.size > final.size or (tree.size == final.size and tree.root() != final.root):
        raise _changed()
    usage, records = recount.take_changed()
    prices = prices_of(parsed)
    bundles = bundler.add(receipts[0].leaf_index, [receipt.data for receipt in receipts])
    bundler.settle()  # a batch the store refuses ends the restore: none is retried
    return SealedBatch(receipts, tree.size, usage, records, tree.drain(), prices, bundles=bundles)


def _changed() -> BackupInvalid:
    return BackupInvalid(f"{RECEIPTS_FILE} changed while it was restored: it no longer gives the checkpoint's tree",
                         detail={"where": RECEIPTS_FILE})


def _read_manifest(base: Path) -> Manifest:
    path = base / MANIFEST_FILE
    try:
        raw = path.read_bytes()
        doc = json.loads(raw)
    except FileNotFoundError:
        raise BackupInvalid(f"backup {base}: no {MANIFEST_FILE} (not a backup, or one interrupted before it ended)",
                            detail={"where": MANIFEST_FILE}) from None
    except (OSError, ValueError) as exc:
        raise BackupInvalid(f"backup {base}: {MANIFEST_FILE} is not readable JSON ({exc})",
                            detail={"where": MANIFEST_FILE}) from None
    try:
        if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("version") != FORMAT_VERSION:
            raise ValueError(f"expected format {FORMAT!r} version {FORMAT_VERSION}")
        files = doc["files"]
        for name in BACKUP_FILES:
            entry = files[name]
            if set(entry) != {"bytes", "sha256"} or not isinstance(entry["bytes"], int) \
                    or not isinstance(entry["sha256"], str):
                raise ValueError(f"files.{name} must be {{bytes, sha256}}")
        size, root = doc["tree_size"], bytes.fromhex(doc["root"])
        if not isinstance(size, int) or isinstance(size, bool) or size < 0 or len(root) != 32:
            raise ValueError("tree_size must be a count and root 32 bytes of hex")
        manifest = Manifest(size, root, str(doc["origin"]), str(doc["store"]), str(doc["created"]),
                            {name: files[name] for name in BACKUP_FILES})
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise BackupInvalid(f"backup {base}: {MANIFEST_FILE} is not a backup manifest ({type(exc).__name__}: {exc})",
                            detail={"where": MANIFEST_FILE}) from None
    if manifest.encode() != raw:
        raise BackupInvalid(f"backup {base}: {MANIFEST_FILE} has been altered (its sha256 or canonical form differs)",
                            detail={"where": MANIFEST_FILE})
    return manifest


def _file_entry(path: Path) -> dict[str, Any]:
    """A file's length and SHA-256, as the manifest records them."""
    digest, length = hashlib.sha256(), 0
    try:
        with open(path, "rb") as source:
            while chunk := source.read(_DIGEST_CHUNK):
                digest.update(chunk)
                length += len(chunk)
    except OSError as exc:
        raise BackupInvalid(f"{path}: {exc.strerror}", detail={"where": path.name}) from None
    return {"bytes": length, "sha256": digest.hexdigest()}
