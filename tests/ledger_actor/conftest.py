"""A ReceiptLedger in a supervision tree with load actors beside it, on a node per thespian base.

The helpers in support.py check what a third party would: each receipt's inclusion proof against the signed
checkpoint, with nothing but the ledger's public key.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tai_autonomics.runtime import Node, parse_tree
from tests.ledger_actor.support import LEDGER, LOADERS


@pytest.fixture
def ledger(node: Node, tmp_path: Path) -> Iterator[Path]:
    """Start ReceiptLedger (data in ``tmp_path/var``) and the load actors; yield the data dir."""
    data_dir = tmp_path / "var"
    node.start_tree(parse_tree({
        "root": "root",
        "supervisors": {"root": {"intensity": 10, "period": 60, "children": [LEDGER, *LOADERS]}},
        "workers": {LEDGER: {"actor": "tai_autonomics.actors.receipt_ledger:ReceiptLedger",
                             "args": {"context": {"data_dir": str(data_dir), "profile": "dev"}}},
                    **{name: {"actor": "bench._actors:AppendLoad"} for name in LOADERS}},
    }))
    yield data_dir
    node.stop_tree()
