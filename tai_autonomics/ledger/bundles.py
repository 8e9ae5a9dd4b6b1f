"""``ledger fill-bundles``: store the full entry bundles of a ledger's history, offline.

A ledger written before bundles were stored (docs/receipts.md, "The log as tiles") serves its
history's bundles assembled from their receipts: correct, but 256 receipts read per bundle. This
walks the receipts once and stores each full bundle not stored yet, so that those are served from
one row or document too. Opening a ledger never does this (a start stays O(1) in the ledger's
size). It is safe beside the daemon: a full bundle is a function of receipts that never change,
and one stored already (by the daemon meanwhile, or by an earlier run) is left as it is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tai_autonomics.ledger.errors import StoreCorruptError
from tai_autonomics.ledger.store import LedgerStore
from tai_autonomics.ledger.tiles import TILE_WIDTH, Bundle, full_bundle

_BUNDLES_READ = 16  # bundles whose receipts are read (and written) at once: about 4,096 receipts


@dataclass(frozen=True, slots=True)
class FillReport:
    """What :func:`fill_bundles` found and did: full bundles in the tree, and how many it stored."""

    bundles: int
    written: int

    def to_json(self) -> dict[str, Any]:
        return {"bundles": self.bundles, "written": self.written}


def fill_bundles(store: LedgerStore, *, progress: Callable[[int, int], None] | None = None) -> FillReport:
    """Store every full entry bundle of ``store``'s tree that is not stored; ``progress`` hears
    (receipts done, receipts in full bundles). StoreCorruptError if a receipt is missing."""
    count = store.size() // TILE_WIDTH
    written = 0
    for first in range(0, count, _BUNDLES_READ):
        missing = [index for index in range(first, min(count, first + _BUNDLES_READ)) if store.bundle(index) is None]
        if missing:
            start, end = missing[0] * TILE_WIDTH, (missing[-1] + 1) * TILE_WIDTH
            leaves = list(store.leaves(start, end))
            if [leaf.leaf_index for leaf in leaves] != list(range(start, end)):
                raise StoreCorruptError(f"ledger store is missing receipts between {start} and {end}")
            bundles = []
            for index in missing:
                offset = index * TILE_WIDTH - start
                data = full_bundle([leaf.data for leaf in leaves[offset : offset + TILE_WIDTH]])
                if data is not None:
                    bundles.append(Bundle(index, data))
            written += store.add_bundles(bundles)
        if progress is not None:
            progress(min(count, first + _BUNDLES_READ) * TILE_WIDTH, count * TILE_WIDTH)
    return FillReport(count, written)
