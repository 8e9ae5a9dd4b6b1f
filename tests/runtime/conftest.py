"""A node per thespian base; each test starts its own tree on it and stops it afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tai_autonomics.runtime import Node, NodeConfig, parse_tree
from tests.conftest import free_port

MULTIPROCESS = ["multiprocUnixBase", "multiprocTCPBase"]
BASES = ["simpleSystemBase", *MULTIPROCESS]


@pytest.fixture(scope="module", params=BASES)
def node(request: pytest.FixtureRequest) -> Iterator[Node]:
    with Node(NodeConfig(base=request.param, admin_port=free_port())) as n:
        yield n


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
