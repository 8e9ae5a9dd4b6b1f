"""SIGKILL of the ReceiptLedger's process while appends stream in (only separate OS processes
can show it): nothing acknowledged is lost, and the stored ledger verifies, online and offline."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tai_autonomics.cli import main
from tai_autonomics.runtime import Node, NodeConfig
from tests.helpers import free_port, wait_until
from tests.ledger_actor.support import LEDGER, LOADERS, assert_proven, draft

CHAINS = ("policy-0", "policy-1", "policy-2")


@pytest.fixture(scope="module")
def node() -> Iterator[Node]:
    with Node(NodeConfig(base="multiprocTCPBase", admin_port=free_port())) as n:
        yield n


def test_sigkill_mid_stream_loses_no_acknowledged_receipt(node: Node, ledger: Path, capsys) -> None:
    acked: list[dict] = []
    for kill in range(3):
        for i, name in enumerate(LOADERS):
            drafts = [draft(kill * 10_000 + i * 1000 + n, chain=CHAINS[n % 3]) for n in range(60)]
            node.call(name, "start", {"drafts": drafts, "window": 6})
        wait_until(lambda: sum(node.call(name, "progress") for name in LOADERS) >= 30, what="appends under way")
        victim = node.call(LEDGER, "$info")
        os.kill(victim["pid"], signal.SIGKILL)
        results = [r for name in LOADERS for r in node.call(name, "results", timeout=60)["results"]]
        assert {r["error"] for r in results if "error" in r} <= {"actor_crashed"}
        acked += [r["receipt"] for r in results if "receipt" in r]
        assert node.whereis(LEDGER, wait=10, after=victim["incarnation"]).pid != victim["pid"]

    for receipt in acked:
        assert node.call(LEDGER, "receipt", {"id": receipt["id"]}) == receipt
    for chain in CHAINS:
        stored = node.call(LEDGER, "receipts", {"chain": chain, "limit": 1000})
        assert [r["seq"] for r in stored] == list(range(1, len(stored) + 1))
        assert {r["id"] for r in acked if r["chain"] == chain} <= {r["id"] for r in stored}
    assert_proven(node, ledger, acked)
    size = node.call(LEDGER, "status")["size"]
    assert size >= len(acked) > 90
    assert node.call(LEDGER, "verify")["tree_size"] == size

    capsys.readouterr()
    assert main(["ledger", "verify", "--data-dir", str(ledger)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["ok"], report["tree_size"]) == (True, size)
