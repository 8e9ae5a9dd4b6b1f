"""The ReceiptLedger actor on both thespian bases: appends, group commit, refusals, reads, restarts."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from tai_autonomics.errors import TaiError
from tai_autonomics.ledger import ConsistencyProof, open_checkpoint
from tai_autonomics.runtime import Node, NodeConfig, parse_tree
from tai_autonomics.runtime.messages import Call, Reply
from tests.helpers import free_port, listen_for, wait_until
from tests.ledger_actor.support import LEDGER, LOADERS, assert_proven, draft, public_key, run_loads


def refusal(node: Node, msg_type: str, payload) -> str:
    with pytest.raises(TaiError) as err:
        node.call(LEDGER, msg_type, payload)
    return err.value.code


def test_appends_across_chains_are_chained_and_proven(node: Node, ledger: Path) -> None:
    status = node.call(LEDGER, "status")
    first = node.call(LEDGER, "checkpoint")
    receipts = [node.call(LEDGER, "append", draft(n, chain=f"policy-{n % 2}")) for n in range(6)]
    receipts.append(node.call(LEDGER, "append", {"kind": "pricing.quoted", "mode": "eval", "payload": {"p": 1}}))

    assert [r["leaf_index"] for r in receipts] == list(range(7))
    for chain in ("policy-0", "policy-1"):
        mine = [r for r in receipts if r["chain"] == chain]
        assert [r["seq"] for r in mine] == [1, 2, 3]
        assert [r["prev"] for r in mine] == ["", mine[0]["hash"], mine[1]["hash"]]
        assert node.call(LEDGER, "receipts", {"chain": chain}) == mine
        assert node.call(LEDGER, "receipts", {"chain": chain, "after": 2, "limit": 5}) == mine[2:]
        assert all(r["key_id"] == status["key_id"] and "signature" in r for r in mine)
    advisory = receipts[-1]
    assert (advisory["authority"], advisory["chain"]) == ("advisory", status["session"])
    assert "session_mac" in advisory and "signature" not in advisory
    assert node.call(LEDGER, "receipt", {"id": receipts[3]["id"]}) == receipts[3]
    assert_proven(node, ledger, receipts)

    latest = node.call(LEDGER, "checkpoint")
    consistency = ConsistencyProof.from_json(node.call(LEDGER, "consistency", {"from": 3}))
    assert (consistency.from_size, consistency.to_size) == (3, 7)
    old = node.call(LEDGER, "proof", {"id": receipts[0]["id"], "tree_size": 3})
    assert old["tree_size"] == 3
    key = public_key(ledger)
    consistency.verify(_root_of_size(node, receipts, 3),
                       open_checkpoint(latest["note"], key, status["origin"]).root)
    assert (first["size"], latest["size"], latest["root"]) == (0, 7, base64.b64encode(
        open_checkpoint(latest["note"], key, status["origin"]).root).decode())
    assert node.call(LEDGER, "verify") == {**node.call(LEDGER, "verify"), "ok": True, "tree_size": 7, "chains": 3,
                                           "contractual": 6, "advisory": 1}
    status = node.call(LEDGER, "status")
    assert (status["size"], status["appended"], status["pending"]) == (7, 7, 0)
    assert node.call(LEDGER, "latest", {"limit": 3}) == receipts[4:]  # across chains, in leaf order
    assert node.call(LEDGER, "latest", {"limit": 1000}) == receipts and len(node.call(LEDGER, "latest")) == 7


def _root_of_size(node: Node, receipts: list[dict], size: int) -> bytes:
    """The root a verifier holding the first ``size`` receipts computes (RFC 9162 MTH)."""
    from tai_autonomics.ledger import MerkleTree, canonical_json, leaf_hash
    return MerkleTree(leaf_hash(canonical_json(r)) for r in receipts[:size]).root()


def test_concurrent_appends_are_group_committed_and_each_caller_gets_its_own(node: Node, ledger: Path) -> None:
    per_loader = 60
    drafts = {name: [draft(i * 1000 + n, chain=f"policy-{n % 3}") for n in range(per_loader)]
              for i, name in enumerate(LOADERS)}
    results = run_loads(node, drafts, window=per_loader)

    receipts = []
    for name, summary in results.items():
        got = [result["receipt"] for result in summary["results"]]
        assert [r["payload"]["n"] for r in got] == [d["payload"]["n"] for d in drafts[name]]
        assert [r["operation_id"] for r in got] == [d["operation_id"] for d in drafts[name]]
        receipts += got
    total = per_loader * len(LOADERS)
    assert sorted(r["leaf_index"] for r in receipts) == list(range(total))
    status = node.call(LEDGER, "status")
    assert status["appended"] == total
    assert status["batches"] < total / 2, status  # a mean batch above 2 (many more on simpleSystemBase)
    assert_proven(node, ledger, receipts)
    assert node.call(LEDGER, "verify")["tree_size"] == total


def test_bad_drafts_are_refused_alone(node: Node, ledger: Path) -> None:
    incarnation = node.call(LEDGER, "$info")["incarnation"]
    bad = [
        {"kind": "Not A Kind", "mode": "prod", "chain": "policy-a", "payload": {}},
        {"kind": "deploy.intent", "mode": "prod", "payload": {}},  # a contractual receipt needs its chain
        {"kind": "deploy.intent", "mode": "prod", "chain": "policy-a", "payload": {"x": float("nan")}},
        {"kind": "deploy.intent", "mode": "sideways", "chain": "policy-a", "payload": {}},
        {"kind": "deploy.intent", "mode": "prod", "chain": "policy-a", "payload": {}, "extra": 1},
        {"kind": "deploy.intent", "mode": "prod", "chain": "policy-a"},
        "not an object",
        # refused only while sealing, inside the batch: the others of that batch still commit
        {"kind": "pricing.quoted", "mode": "eval", "chain": "someone-elses-session", "payload": {}},
    ]
    mixed = [item for n, b in enumerate(bad) for item in (draft(n), b)]
    results = run_loads(node, {LOADERS[0]: mixed}, window=len(mixed))[LOADERS[0]]["results"]

    assert [r.get("error") for r in results[1::2]] == ["ledger_bad_draft"] * len(bad)
    good = [r["receipt"] for r in results[::2]]
    assert [r["payload"]["n"] for r in good] == list(range(len(bad)))
    assert [r["seq"] for r in good] == list(range(1, len(bad) + 1))
    assert node.call(LEDGER, "$info")["incarnation"] == incarnation
    assert node.call(LEDGER, "status")["size"] == len(bad)
    assert_proven(node, ledger, good)


def test_bad_reads_are_refused_without_a_crash(node: Node, ledger: Path) -> None:
    incarnation = node.call(LEDGER, "$info")["incarnation"]
    receipt = node.call(LEDGER, "append", draft(1))
    assert refusal(node, "receipt", {"id": "no-such-id"}) == "ledger_not_found"
    assert refusal(node, "receipt", {"id": 7}) == "ledger_bad_request"
    assert refusal(node, "receipt", None) == "ledger_bad_request"
    assert refusal(node, "proof", {"id": receipt["id"], "tree_size": 5}) == "ledger_proof_invalid"
    assert refusal(node, "proof", {"id": receipt["id"], "tree_size": True}) == "ledger_bad_request"
    assert refusal(node, "consistency", {"from": 2, "to": 1}) == "ledger_proof_invalid"
    assert refusal(node, "consistency", {"from": "1"}) == "ledger_bad_request"
    assert refusal(node, "receipts", {"chain": "policy-a", "limit": 0}) == "ledger_bad_draft"
    assert refusal(node, "latest", {"limit": 0}) == "ledger_bad_request"
    assert refusal(node, "latest", {"limit": 1001}) == "ledger_bad_request"
    assert refusal(node, "latest", {"limit": "5"}) == "ledger_bad_request"
    assert refusal(node, "rewrite", {}) == "unknown_message"
    assert node.call(LEDGER, "$info")["incarnation"] == incarnation


def test_a_restart_mid_stream_stores_exactly_the_acknowledged_receipts(node: Node, ledger: Path) -> None:
    """The supervisor restarts the ledger while appends stream in. Pending appends are committed
    and answered on the way out; calls still queued for the old incarnation fail (the runtime
    calls at most once) and were not stored; the new incarnation carries on the chains."""
    before = node.call(LEDGER, "$info")["incarnation"]
    drafts = {name: [draft(i * 1000 + n, chain=f"policy-{n % 2}") for n in range(80)] for i, name in enumerate(LOADERS)}
    for name, items in drafts.items():
        node.call(name, "start", {"drafts": items, "window": 8})
    wait_until(lambda: sum(node.call(name, "progress") for name in LOADERS) >= 40, what="appends under way")
    node.call("root", "restart_child", LEDGER)
    results = [r for name in LOADERS for r in node.call(name, "results", timeout=60)["results"]]

    assert node.whereis(LEDGER, wait=10, after=before).incarnation != before
    assert {r["error"] for r in results if "error" in r} <= {"actor_crashed"}
    receipts = [r["receipt"] for r in results if "receipt" in r]
    assert len(receipts) > 40
    assert sorted(r["leaf_index"] for r in receipts) == list(range(len(receipts)))
    for chain in ("policy-0", "policy-1"):
        mine = sorted((r for r in receipts if r["chain"] == chain), key=lambda r: r["seq"])
        assert node.call(LEDGER, "receipts", {"chain": chain, "limit": 1000}) == mine
    assert_proven(node, ledger, receipts)
    assert node.call(LEDGER, "verify")["tree_size"] == len(receipts)


def test_append_many_commits_with_the_others_and_refuses_only_bad_drafts(node: Node, ledger: Path) -> None:
    many = [draft(n, chain="policy-m") for n in range(30)]
    many[7] = {"kind": "deploy.intent", "mode": "prod", "payload": {}}  # no chain
    drafts = {LOADERS[0]: many, LOADERS[1]: [draft(100 + n) for n in range(30)]}
    node.call(LOADERS[0], "start", {"drafts": drafts[LOADERS[0]], "window": 3, "per_call": 10})
    node.call(LOADERS[1], "start", {"drafts": drafts[LOADERS[1]], "window": 30})
    results = {name: node.call(name, "results", timeout=60)["results"] for name in drafts}

    assert results[LOADERS[0]][7] == {"error": "ledger_bad_draft"}
    receipts = [r["receipt"] for name in drafts for r in results[name] if "receipt" in r]
    assert len(receipts) == 59
    assert [r["payload"]["n"] for r in receipts[:29]] == [n for n in range(30) if n != 7]
    assert node.call(LEDGER, "append_many", {"drafts": []}) == []
    assert node.call(LEDGER, "append_many", {"drafts": ["bad"]}) == [
        {"error": {"code": "ledger_bad_draft", "message": "an append takes a JSON object "
                   "{kind, mode, payload, chain?, operation_id?}"}}]
    assert refusal(node, "append_many", {"drafts": [draft(0)] * 1001}) == "ledger_bad_request"
    status = node.call(LEDGER, "status")
    assert (status["appended"], status["size"]) == (59, 59)
    assert status["batches"] < 59
    assert_proven(node, ledger, receipts)


def test_rotate_epoch_starts_a_new_eval_epoch_on_the_session_chain(node: Node, ledger: Path) -> None:
    advisory = {"kind": "pricing.quoted", "mode": "eval", "payload": {"price": 1}}
    first = node.call(LEDGER, "append", advisory)
    rotated = node.call(LEDGER, "rotate_epoch")
    after = node.call(LEDGER, "append", advisory)

    assert (rotated["kind"], rotated["payload"]) == ("ledger.epoch_rotated", {"from_epoch": 0, "to_epoch": 1})
    assert [r["epoch"] for r in (first, rotated, after)] == [0, 0, 1]
    assert [r["seq"] for r in (first, rotated, after)] == [1, 2, 3]
    assert node.call(LEDGER, "status")["epoch"] == 1
    report = node.call(LEDGER, "verify")
    assert (report["advisory"], report["session_macs_checked"]) == (3, 3)  # both epochs, within the session


def test_only_the_session_that_made_advisory_receipts_can_check_their_macs(node: Node, ledger: Path) -> None:
    """docs/specification.md §4: the session secret is never stored, so a new incarnation (a new
    session) checks the old session's advisory receipts for form only, and MACs its own."""
    node.call(LEDGER, "append", {"kind": "pricing.quoted", "mode": "eval", "payload": {"price": 1}})
    def incarnation() -> tuple[str, str]:
        child = next(c for c in node.call("root", "which_children") if c["name"] == LEDGER)
        return child["incarnation"], child["state"]

    before = incarnation()[0]
    node.call("root", "restart_child", LEDGER)
    wait_until(lambda: incarnation()[0] not in (before, None) and incarnation()[1] == "running",
               what="a new ReceiptLedger")
    node.call(LEDGER, "append", {"kind": "pricing.quoted", "mode": "eval", "payload": {"price": 2}})
    report = node.call(LEDGER, "verify")
    assert (report["advisory"], report["session_macs_checked"], report["chains"]) == (2, 1, 2)


def test_appends_go_on_while_verify_reads_the_store(tmp_path: Path) -> None:
    """``verify`` reads through its own connection on a worker thread (multiprocess base: on the
    in-process base a worker thread is the caller's), so an append sent after it is answered first."""
    with Node(NodeConfig(base="multiprocTCPBase", admin_port=free_port())) as node:
        node.start_tree(parse_tree({"root": "root", "supervisors": {"root": {"children": [LEDGER]}}, "workers": {
            LEDGER: {"actor": "tai_autonomics.actors.receipt_ledger:ReceiptLedger",
                     "args": {"context": {"data_dir": str(tmp_path / "var"), "profile": "dev"}}}}}))
        for start in range(0, 3000, 1000):
            node.call(LEDGER, "append_many", {"drafts": [draft(n) for n in range(start, start + 1000)]}, timeout=60)
        address = node.whereis(LEDGER).address
        node._system.tell(address, Call("verify", "verify", None))
        node._system.tell(address, Call("append", "append", draft(3000)))
        replies = [listen_for(node, 60, lambda m: isinstance(m, Reply)) for _ in range(2)]
        assert [r.ref for r in replies] == ["append", "verify"], replies
        assert replies[0].value["leaf_index"] == 3000
        report = replies[1].value
        assert report["ok"] is True and report["tree_size"] in (3000, 3001) and report["contractual"] >= 3000
