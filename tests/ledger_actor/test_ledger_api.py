"""The ledger's client helpers against a real ReceiptLedger on the in-process base: ``read_chain``
and ``aread_chain`` page through a chain, ``proof_query`` asks for a proof in an older tree."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tai_autonomics.actors.ledger_api import ReceiptsQuery, aread_chain, proof_query, read_chain
from tai_autonomics.actors.names import RECEIPT_LEDGER
from tai_autonomics.ledger import InclusionProof
from tai_autonomics.runtime import Node, NodeConfig, parse_tree
from tests.helpers import free_port
from tests.ledger_actor.support import draft


@pytest.fixture
def ledger_node(tmp_path: Path) -> Iterator[Node]:
    """A ReceiptLedger alone in a tree, with 7 receipts on ``policy-a`` and 3 on ``policy-b``, interleaved."""
    with Node(NodeConfig(base="simpleSystemBase", admin_port=free_port())) as node:
        node.start_tree(parse_tree({
            "root": "root", "supervisors": {"root": {"children": [RECEIPT_LEDGER]}},
            "workers": {RECEIPT_LEDGER: {"actor": "tai_autonomics.actors.receipt_ledger:ReceiptLedger",
                                         "args": {"context": {"data_dir": str(tmp_path / "var"), "profile": "dev"}}}},
        }))
        try:
            chains = ["policy-a", "policy-b"] * 3 + ["policy-a"] * 4
            node.call(RECEIPT_LEDGER, "append_many", {"drafts": [draft(n, chain=c) for n, c in enumerate(chains)]})
            yield node
        finally:
            node.stop_tree()


def _recording(node: Node, asked: list[ReceiptsQuery]) -> Any:
    def fetch(query: ReceiptsQuery) -> list[dict[str, Any]]:
        asked.append(query)
        return node.call(RECEIPT_LEDGER, "receipts", query)
    return fetch


@pytest.mark.parametrize(("page", "pages"), [(3, 3), (7, 2), (1000, 1), (1, 8)])
def test_read_chain_reads_every_receipt_of_the_chain_page_by_page(ledger_node: Node, page: int, pages: int) -> None:
    everything = ledger_node.call(RECEIPT_LEDGER, "receipts", {"chain": "policy-a", "limit": 1000})
    assert [r["seq"] for r in everything] == list(range(1, 8))
    asked: list[ReceiptsQuery] = []
    assert list(read_chain(_recording(ledger_node, asked), "policy-a", page=page)) == everything
    assert len(asked) == pages  # a full page asks once more; a short one ends the chain
    assert [q["after"] for q in asked] == [min(n * page, 7) for n in range(pages)]
    assert {(q["chain"], q["limit"]) for q in asked} == {("policy-a", page)}


def test_read_chain_starts_after_a_seq_and_reads_an_empty_chain(ledger_node: Node) -> None:
    asked: list[ReceiptsQuery] = []
    assert [r["seq"] for r in read_chain(_recording(ledger_node, asked), "policy-a", after=5, page=2)] == [6, 7]
    assert [q["after"] for q in asked] == [5, 7]
    assert list(read_chain(_recording(ledger_node, []), "policy-none")) == []


def test_aread_chain_reads_the_same_as_read_chain(ledger_node: Node) -> None:
    fetch = _recording(ledger_node, [])

    async def afetch(query: ReceiptsQuery) -> list[dict[str, Any]]:
        return fetch(query)

    async def collect() -> list[dict[str, Any]]:
        return [r async for r in aread_chain(afetch, "policy-b", page=2)]

    found = asyncio.run(collect())
    assert [r["seq"] for r in found] == [1, 2, 3]
    assert found == list(read_chain(fetch, "policy-b", page=2))


def test_proof_query_asks_for_the_current_tree_or_an_older_one(ledger_node: Node) -> None:
    first = ledger_node.call(RECEIPT_LEDGER, "receipts", {"chain": "policy-a", "limit": 1})[0]
    assert proof_query(first["id"]) == {"id": first["id"]}
    current = InclusionProof.from_json(ledger_node.call(RECEIPT_LEDGER, "proof", proof_query(first["id"])))
    older = InclusionProof.from_json(ledger_node.call(RECEIPT_LEDGER, "proof", proof_query(first["id"], 3)))
    assert (current.leaf_index, current.tree_size, older.tree_size) == (first["leaf_index"], 10, 3)
