"""The ReceiptLedger on the Firestore store (Google's emulator), on both thespian bases: the
same appends and proofs as on SQLite, and a restarted incarnation rebuilds from Firestore."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tai_autonomics.runtime import Node, NodeConfig, parse_tree
from tests.helpers import BASES, EMULATOR_PROJECT, free_port
from tests.ledger_actor.support import LEDGER, LOADERS, assert_proven, draft, run_loads

PROJECT_ENV = "TAI_TEST_FIRESTORE_PROJECT"


@pytest.fixture(scope="module", params=BASES)
def node(request: pytest.FixtureRequest, firestore_emulator: str) -> Iterator[Node]:
    """A node started after the emulator's address and project are in the environment, so that
    the actor processes it forks inherit them."""
    os.environ[PROJECT_ENV] = EMULATOR_PROJECT
    try:
        with Node(NodeConfig(base=request.param, admin_port=free_port())) as n:
            yield n
    finally:
        os.environ.pop(PROJECT_ENV, None)


def test_appends_on_firestore_survive_a_restart(node: Node, tmp_path: Path) -> None:
    ledger_name = f"actor-{uuid.uuid4().hex}"
    node.start_tree(parse_tree({
        "root": "root",
        "supervisors": {"root": {"intensity": 5, "children": [LEDGER, *LOADERS[:2]]}},
        "workers": {LEDGER: {"actor": "tai_autonomics.actors.receipt_ledger:ReceiptLedger", "args": {"context": {
                        "data_dir": str(tmp_path), "profile": "dev",
                        "ledger": {"store": "firestore", "firestore_project_env": PROJECT_ENV,
                                   "firestore_ledger": ledger_name}}}},
                    **{name: {"actor": "bench._actors:AppendLoad"} for name in LOADERS[:2]}},
    }))
    try:
        drafts = {name: [draft(i * 100 + n, chain=f"policy-{n % 2}") for n in range(15)]
                  for i, name in enumerate(LOADERS[:2])}
        receipts = [r["receipt"] for run in run_loads(node, drafts, window=15).values() for r in run["results"]]
        assert sorted(r["leaf_index"] for r in receipts) == list(range(30))
        assert node.call(LEDGER, "status")["batches"] < 30
        before = node.call(LEDGER, "$info")["incarnation"]
        node.call("root", "restart_child", LEDGER)
        node.whereis(LEDGER, wait=10, after=before)
        assert node.call(LEDGER, "status")["size"] == 30
        after = node.call(LEDGER, "append", draft(999, chain="policy-0"))
        assert (after["leaf_index"], after["seq"]) == (30, 17)  # 8 per loader were on policy-0
        assert_proven(node, tmp_path, [*receipts, after])
        assert node.call(LEDGER, "verify", timeout=30)["tree_size"] == 31
    finally:
        node.stop_tree()
