"""``ledger export``: the docs/receipts.md directory a customer verifies offline, and (``--tiles``)
the same log as a C2SP ``tlog-tiles`` directory that standard tile clients read."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from tai_autonomics.ledger.core import Ledger
from tai_autonomics.ledger.errors import ExportFailed
from tai_autonomics.ledger.note import Checkpoint
from tai_autonomics.ledger.tiles import TILE_HEIGHT, TILE_WIDTH, tile_path
from tai_autonomics.ledger.verify import CHECKPOINT_FILE, PROOFS_FILE, PUBLIC_KEY_FILE, RECEIPTS_FILE

_PROGRESS_EVERY = 50_000


def export_ledger(ledger: Ledger, out_dir: str | Path, *,
                  progress: Callable[[int, int], None] | None = None) -> Checkpoint:
    """Write receipts.jsonl, proofs.jsonl (each receipt's inclusion proof, same order),
    checkpoint (the signed note covering all of them) and public_key.pem into ``out_dir``;
    ``progress`` hears (receipts written, receipts in all) every ``_PROGRESS_EVERY`` receipts."""
    out = Path(out_dir)
    checkpoint = ledger.checkpoint()
    try:
        out.mkdir(parents=True, exist_ok=True)
        with open(out / RECEIPTS_FILE, "wb") as receipts, open(out / PROOFS_FILE, "w", encoding="ascii") as proofs:
            for receipt, proof in zip(ledger.iter_receipts(0, checkpoint.size), ledger.leaf_proofs(checkpoint.size),
                                      strict=True):
                receipts.write(receipt.data + b"\n")
                proofs.write(json.dumps(proof.to_json(), separators=(",", ":")) + "\n")
                if progress is not None and (receipt.leaf_index + 1) % _PROGRESS_EVERY == 0:
                    progress(receipt.leaf_index + 1, checkpoint.size)
        (out / CHECKPOINT_FILE).write_text(checkpoint.note, encoding="utf-8")
        (out / PUBLIC_KEY_FILE).write_bytes(ledger.public_key.pem())
    except OSError as exc:
        raise ExportFailed(f"cannot write the export to {out}: {exc.strerror}") from None
    return checkpoint


def export_tiles(ledger: Ledger, out_dir: str | Path) -> Checkpoint:
    """Write the log of the latest checkpoint into ``out_dir`` as the gateway's ``/tlog/`` serves
    it: ``checkpoint`` (the signed note), every hash tile ``tile/<L>/<N>`` (the last of each level
    partial, ``.p/<W>``) and every entry bundle ``tile/entries/<N>``."""
    out = Path(out_dir)
    checkpoint = ledger.checkpoint()
    size = checkpoint.size
    try:
        out.mkdir(parents=True, exist_ok=True)
        for index, width in _tiles_of_level(size):
            _write(out / tile_path("entries", index, width), ledger.entry_bundle(index, width, size))
        level = 0
        while size >> (TILE_HEIGHT * level):
            for index, width in _tiles_of_level(size >> (TILE_HEIGHT * level)):
                _write(out / tile_path(level, index, width), ledger.tile(level, index, width, size))
            level += 1
        (out / CHECKPOINT_FILE).write_text(checkpoint.note, encoding="utf-8")
    except OSError as exc:
        raise ExportFailed(f"cannot write the tiles to {out}: {exc.strerror}") from None
    return checkpoint


def _tiles_of_level(count: int) -> list[tuple[int, int]]:
    """``(index, width)`` of the tiles holding ``count`` hashes of one level: full ones, then a partial."""
    full, rest = divmod(count, TILE_WIDTH)
    return [(index, TILE_WIDTH) for index in range(full)] + ([(full, rest)] if rest else [])


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
