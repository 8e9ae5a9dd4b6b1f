"""An operation actor whose ledger dies under it (issue 14).

The chaos bench saw Acquisition crash each time ReceiptLedger was SIGKILLed while a deploy's
outcome receipt was on its way to it (``RuntimeError: the deploy.completed receipt of ... was not
recorded: ReceiptLedger exited before answering``), which answered every other deploy in flight
``actor_crashed``. Here the same state, made on purpose and without the bench: the real tree on
multiprocess thespian (the real ReceiptLedger on SQLite, SIGKILLed by itself when the outcome
receipt reaches it: :class:`tests.actors.stubs.LedgerDyingOnOutcome`), the sandbox's customer
endpoint over real sockets.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tai_autonomics.runtime import CallError, Node, parse_tree
from tests.actors.operation_actors.support import FAST, Ops
from tests.actors.stubs import DIE_ON_OUTCOME


@pytest.fixture
def ops(node: Node, sandbox, tmp_path: Path) -> Iterator[Ops]:
    """ReceiptLedger (dying on cue), ProdMode's stand-in and Acquisition, as in the daemon's tree."""
    context = {"mode": "prod", "profile": "dev", "data_dir": str(tmp_path), "sandbox": {"url": sandbox.url}}
    node.start_tree(parse_tree({"root": "root", "supervisors": {
        "root": {"intensity": 5, "children": ["ReceiptLedger", "ProdMode", "operations"]},
        "operations": {"intensity": 5, "children": ["Acquisition"]}}, "workers": {
        "ReceiptLedger": {"actor": "tests.actors.stubs:LedgerDyingOnOutcome", "args": {"context": context}},
        "ProdMode": {"actor": "tests.actors.operation_actors.stubs:ProdModeStub", "args": {"mode": "prod"}},
        "Acquisition": {"actor": "tai_autonomics.actors.acquisition:Acquisition",
                        "args": {"context": context, **FAST}}}}))
    yield Ops(node, sandbox.url, tmp_path)
    node.stop_tree()


def _child(ops: Ops, supervisor: str, name: str) -> dict[str, Any]:
    return next(c for c in ops.call(supervisor, "which_children", None) if c["name"] == name)


def test_an_outcome_receipt_lost_with_the_ledger_is_offered_again_without_a_crash(ops: Ops) -> None:
    (ops.data_dir / DIE_ON_OUTCOME).touch()
    try:
        result = ops.deploy(key="ledger-died")
    except CallError as refused:
        result = refused.code
    assert isinstance(result, dict), f"the deploy was refused: {result}"  # was actor_crashed
    assert result["status"] == "completed"
    acquisition = _child(ops, "operations", "Acquisition")
    assert acquisition["restarts"] == 0, f"Acquisition crashed: {acquisition['last_crash']}"
    assert _child(ops, "root", "ReceiptLedger")["restarts"] == 1  # it did die holding the outcome
    assert [r["kind"] for r in result["receipts"]] == ["deploy.intent", "deploy.completed"]
    assert ops.kinds() == ["deploy.intent", "deploy.completed"]  # recorded once
    assert len(ops.requests("customer.deploy")) == 1  # the customer was not asked again
    assert ops.call("Acquisition", "status", None)["unrecorded"] == 0
