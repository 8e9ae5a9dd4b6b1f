"""Each test starts its own tree on the node of its base (tests/fixtures/runtime.py) and stops it afterwards."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tai_autonomics.runtime import Node, parse_tree


@pytest.fixture
def tree(node: Node, tmp_path: Path):
    """``tree(supervisors, workers)`` starts a tree rooted at ``root``; stopped after the test."""

    def start(supervisors: dict[str, Any], workers: dict[str, Any]) -> Path:
        for spec in workers.values():
            spec.setdefault("args", {}).setdefault("log", str(tmp_path / "events.log"))
        node.start_tree(parse_tree({"root": "root", "supervisors": supervisors, "workers": workers}))
        return tmp_path / "events.log"

    yield start
    node.stop_tree()
