"""Where the ReceiptLedger gets its key and store from (``args["context"]``), and what it says
when that is wrong: a clear start failure that never shows key material."""

from __future__ import annotations

from pathlib import Path

import pytest

from tai_autonomics.ledger import LedgerKey
from tai_autonomics.runtime import Node, StartError, parse_tree
from tests.ledger_actor.support import LEDGER, draft


def start(node: Node, context: dict) -> None:
    node.start_tree(parse_tree({"root": "root", "supervisors": {"root": {"children": [LEDGER]}}, "workers": {
        LEDGER: {"actor": "tai_autonomics.actors.receipt_ledger:ReceiptLedger", "args": {"context": context}}}}))


def test_a_configured_key_file_signs_and_never_shows(node: Node, tmp_path: Path) -> None:
    key = LedgerKey.generate()
    pem = tmp_path / "ledger.pem"
    pem.write_bytes(key.private_pem())
    start(node, {"data_dir": str(tmp_path / "var"), "profile": "prod",
                 "ledger": {"key_file": str(pem), "origin": "example.test/ledger"}})
    try:
        receipt = node.call(LEDGER, "append", draft(1))
        status = node.call(LEDGER, "status")
        checkpoint = node.call(LEDGER, "checkpoint")
    finally:
        node.stop_tree()
    assert receipt["key_id"] == status["key_id"] == key.key_id
    assert checkpoint["note"].startswith("example.test/ledger\n1\n")
    secret = key.private_pem().decode().splitlines()[1]
    assert secret not in repr((receipt, status, checkpoint))
    assert not (tmp_path / "var" / "ledger_key.pem").exists()


@pytest.mark.parametrize(("context", "reason"), [
    (lambda tmp: {"profile": "prod"}, "no ledger key configured"),
    (lambda tmp: {"ledger": {"store": "etcd"}}, "ledger store 'etcd' is not available"),
    (lambda tmp: {"profile": "prod", "ledger": {"key_file": str(tmp / "not-a-key.pem")}},
     "not-a-key.pem: not an unencrypted PEM"),
])
def test_a_bad_configuration_fails_the_start_and_says_why(node: Node, tmp_path: Path, context, reason: str) -> None:
    (tmp_path / "not-a-key.pem").write_text("-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----\n")
    with pytest.raises(StartError) as err:
        start(node, {"data_dir": str(tmp_path / "var"), **context(tmp_path)})
    assert reason in err.value.message
    assert "c2VjcmV0" not in err.value.message
    assert not (tmp_path / "var" / "ledger_key.pem").exists()
