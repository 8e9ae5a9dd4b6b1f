"""Acquisition and Publisher in a real tree, with the sandbox as the outside parties over real sockets.

The tree: the real ReceiptLedger (SQLite in the test's tmp dir), a ProdMode that answers ``guard``
as each test configures it, and the two operation actors under ``operations`` (driven by
support.py's ``Ops``; the sandbox fixture is tests/fixtures/sandbox.py's).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tai_autonomics.runtime import Node, NodeConfig
from tai_autonomics.sandbox import SandboxServer
from tests.actors.operation_actors.support import Ops
from tests.helpers import free_port


@pytest.fixture(scope="module")
def node(request: pytest.FixtureRequest) -> Iterator[Node]:
    base = getattr(request, "param", "multiprocTCPBase")
    with Node(NodeConfig(base=base, admin_port=free_port())) as n:
        yield n


@pytest.fixture
def ops(node: Node, sandbox: SandboxServer, tmp_path: Path) -> Iterator[Ops]:
    driver = Ops(node, sandbox.url, tmp_path)
    yield driver
    if driver.started:
        node.stop_tree()
