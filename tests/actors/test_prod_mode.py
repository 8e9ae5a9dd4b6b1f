"""ProdMode: fail-fast prod start, guards (mode, certificate pre-flight, SKU, coverage), and
read_only and back — on both thespian bases."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tai_autonomics.errors import CertValidityTooShort, InvalidRequest, ModeRefusal, SkuNotAuthorized
from tai_autonomics.runtime import Node, StartError, parse_tree
from tests.helpers import wait_until

STUBS = "tests.actors.stubs"
POLICY = "dev-policy-0001"


def start(node: Node, *, cert: dict | None = None, insurer: dict | None = None, ledger: dict | None = None,
          mode: str = "prod", **prod_args: Any) -> None:
    node.start_tree(parse_tree({"root": "root", "supervisors": {"root": {"intensity": 5, "children": [
        "ReceiptLedger", "CertManager", "InsuranceClient", "ProdMode", "Subscriber"]}}, "workers": {
        "Subscriber": {"actor": f"{STUBS}:AuthoritySubscriber"},
        "ReceiptLedger": {"actor": f"{STUBS}:LedgerStub", "args": ledger or {}},
        "CertManager": {"actor": f"{STUBS}:CertManagerStub", "args": cert or {}},
        "InsuranceClient": {"actor": f"{STUBS}:InsuranceStub", "args": insurer or {}},
        "ProdMode": {"actor": "tai_autonomics.actors.prod_mode:ProdMode",
                     "args": {"context": {"mode": mode}, **prod_args}}}}))


@pytest.fixture
def running(node: Node):
    yield node
    node.stop_tree()


def guard(node: Node, sku: str = "sku-001", **extra: Any) -> dict:
    return node.call("ProdMode", "guard", {"sku_id": sku, **extra})


def kinds(node: Node) -> list[str]:
    return [r["kind"] for r in node.call("ReceiptLedger", "appended")]


def test_prod_start_decides_prod_and_records_it(running: Node) -> None:
    start(running)
    assert running.call("ProdMode", "mode")["mode"] == "prod"
    wait_until(lambda: kinds(running) == ["mode.changed", "insurance.verified"], what="mode and verdict receipts")
    receipt = running.call("ReceiptLedger", "appended")[0]
    assert (receipt["chain"], receipt["mode"], receipt["payload"]["to"]) == (POLICY, "prod", "prod")
    assert guard(running) == {"mode": "prod", "chain": POLICY, "authority": "contractual",
                              "limit": {"limit_count": 1_000_000, "limit_cost": "1000000000"}}


@pytest.mark.parametrize(("cert", "insurer", "why"), [
    ({"broken": "certificate expired on 2026-01-01"}, {}, "certificate: certificate expired on 2026-01-01"),
    ({"revoked": True}, {}, "certificate: certificate revoked by the insurer"),
    ({}, {"failing": "policy_not_found"}, "insurer: insurer says policy_not_found"),
])
def test_prod_start_without_insurance_fails_fast_saying_why(node: Node, cert, insurer, why: str) -> None:
    with pytest.raises(StartError) as err:
        start(node, cert=cert, insurer=insurer)
    assert f"production start refused: {why}" in err.value.message


def test_eval_mode_refuses_writes(running: Node) -> None:
    start(running, mode="eval")
    with pytest.raises(ModeRefusal) as err:
        guard(running)
    assert err.value.code == "mode_refused" and err.value.detail["mode"] == "eval"
    wait_until(lambda: kinds(running) == ["mode.changed"], what="advisory mode.changed")
    assert running.call("ReceiptLedger", "appended")[0]["mode"] == "eval"


def test_the_guard_answers_the_skus_coverage_limit_and_refuses_an_unknown_sku(running: Node) -> None:
    """The reservation is the ledger's, in the intent's transaction: ProdMode only says what
    the policy allows, however often it is asked (it counts nothing itself)."""
    start(running)
    for _ in range(5):
        assert guard(running, "sku-002")["limit"] == {"limit_count": 3, "limit_cost": "30000"}
    with pytest.raises(SkuNotAuthorized) as unknown:
        guard(running, "sku-404")
    assert unknown.value.code == "sku_not_authorized"
    assert "coverage.exceeded" not in kinds(running)


def test_certificate_preflight_refuses_operations_that_would_outlive_it(running: Node) -> None:
    start(running, cert={"valid_for_s": 600}, preflight_buffer_s=300)
    guard(running, timeout_s=60)
    with pytest.raises(CertValidityTooShort) as err:
        guard(running, timeout_s=400)
    assert err.value.code == "cert_validity_too_short"


@pytest.mark.parametrize("manual_resume", [False, True])
def test_read_only_when_insurance_is_lost_and_back(running: Node, manual_resume: bool) -> None:
    start(running, check_interval_s=0.05, manual_resume=manual_resume)
    running.call("InsuranceClient", "set", {"failing": "insurance_cache_stale"})
    wait_until(lambda: running.call("ProdMode", "mode")["mode"] == "read_only", what="read_only")
    with pytest.raises(ModeRefusal) as err:
        guard(running)
    assert err.value.code == "mode_refused" and err.value.detail["mode"] == "read_only"
    assert err.value.detail["reason"] == "insurer: insurer says insurance_cache_stale"
    assert err.value.detail["reason"] in err.value.message
    running.call("InsuranceClient", "set", {"failing": None})
    if manual_resume:
        asked = running.call("InsuranceClient", "asked")
        wait_until(lambda: running.call("InsuranceClient", "asked") >= asked + 2, what="checks with the insurer back")
        with pytest.raises(ModeRefusal):
            guard(running)  # the insurer is back, but only an operator resumes
        assert running.call("ProdMode", "resume")["mode"] == "prod"
    else:
        wait_until(lambda: running.call("ProdMode", "mode")["mode"] == "prod", what="back to prod")
    assert guard(running)["mode"] == "prod"


def test_a_revoked_certificate_keeps_read_only_although_the_insurer_confirms_the_policy(running: Node) -> None:
    """The periodic check used to go read_only on the revocation and back to prod on the policy's confirmation."""
    start(running, check_interval_s=0.05)
    running.call("CertManager", "set", {"revoked": True})
    wait_until(lambda: running.call("ProdMode", "mode")["mode"] == "read_only", what="read_only")
    asked = running.call("InsuranceClient", "asked")
    wait_until(lambda: running.call("InsuranceClient", "asked") >= asked + 3, what="checks confirming the policy")
    assert running.call("ProdMode", "mode") == {"mode": "read_only", "reason": "certificate revoked by the insurer",
                                                "configured": "prod", "manual_resume": False}
    assert [r["payload"]["to"] for r in running.call("ReceiptLedger", "appended")
            if r["kind"] == "mode.changed"] == ["prod", "read_only"]
    running.call("CertManager", "set", {"revoked": False})  # renewed: a new certificate
    wait_until(lambda: running.call("ProdMode", "mode")["mode"] == "prod", what="back to prod")


@pytest.mark.parametrize("bad", [None, {"cost": "1"}, {"sku_id": 7}, {"sku_id": "sku-001", "timeout_s": True},
                                 {"sku_id": "sku-001", "timeout_s": -1}])
def test_bad_guard_requests_are_refused(running: Node, bad) -> None:
    start(running)
    with pytest.raises(InvalidRequest) as err:
        running.call("ProdMode", "guard", bad)
    assert err.value.code == "invalid_request"


def test_pricing_is_allowed_in_eval_as_advisory_and_in_prod_as_contractual(running: Node) -> None:
    start(running, mode="eval")
    assert guard(running, operation="pricing") == {"mode": "eval", "chain": None, "authority": "advisory"}
    running.stop_tree()
    start(running)
    assert guard(running, operation="pricing") == {"mode": "prod", "chain": POLICY, "authority": "contractual"}


@pytest.mark.parametrize("mode", ["prod", "eval"])
def test_record_writes_a_shell_command_receipt_under_the_modes_authority_once_durable(running: Node, mode) -> None:
    start(running, mode=mode)
    payload = {"subject": "token:admin", "role": "admin", "session": "s1", "command": "tree", "line": "tree"}
    receipt = running.call("ProdMode", "record", {"kind": "shell.command", "payload": payload})
    assert (receipt["kind"], receipt["payload"], receipt["mode"]) == ("shell.command", payload, mode)
    assert receipt["chain"] == (POLICY if mode == "prod" else None)  # None: the ledger's session chain
    assert receipt in running.call("ReceiptLedger", "appended")  # answered after the ledger's answer


@pytest.mark.parametrize("bad", [None, {"kind": "deploy.intent", "payload": {}}, {"kind": "shell.command"},
                                 {"kind": "shell.command", "payload": "tree"}])
def test_record_takes_only_the_kinds_recorded_for_others(running: Node, bad) -> None:
    start(running)
    with pytest.raises(InvalidRequest) as err:
        running.call("ProdMode", "record", bad)
    assert err.value.code == "invalid_request"
    assert "deploy.intent" not in kinds(running)


def test_insurance_verdicts_are_receipts_on_each_change_and_again_while_one_holds(running: Node) -> None:
    """docs/specification.md §4: a receipt per change of the insurer's verdict, restated every
    ``verdict_repeat_s`` (an hour by default) while it holds; checks in between record nothing."""
    start(running, check_interval_s=0.05, verdict_repeat_s=0.5)

    def verdicts() -> list[tuple[str, bool]]:
        return [(r["kind"], r["payload"]["repeat"]) for r in running.call("ReceiptLedger", "appended")
                if r["kind"].startswith("insurance.")]

    wait_until(lambda: ("insurance.verified", True) in verdicts(), what="the verdict restated")
    assert verdicts()[0] == ("insurance.verified", False)
    asked = running.call("InsuranceClient", "asked")
    assert len(verdicts()) < asked  # most checks recorded nothing
    running.call("InsuranceClient", "set", {"failing": "insurance_revoked"})
    wait_until(lambda: verdicts()[-1] == ("insurance.verification_failed", False), what="the failed verdict")
    failed = next(r for r in running.call("ReceiptLedger", "appended") if r["kind"] == "insurance.verification_failed")
    assert failed["payload"] == {"policy_id": POLICY, "repeat": False, "code": "insurance_revoked",
                                 "reason": "insurer says insurance_revoked"}
    assert failed["chain"] == POLICY and failed["mode"] == "prod"
    running.call("InsuranceClient", "set", {"failing": None})
    wait_until(lambda: verdicts()[-1] == ("insurance.verified", False), what="verified again")


def test_every_change_of_mode_is_pushed_to_the_subscribed_operation_actors(running: Node) -> None:
    """Operation actors guard writes on what ProdMode pushes (no call to ProdMode per deploy)."""
    start(running, check_interval_s=0.05)
    assert running.call("Subscriber", "modes") == ["prod"]  # the subscription's answer
    running.call("InsuranceClient", "set", {"failing": "insurance_cache_stale"})
    wait_until(lambda: running.call("Subscriber", "modes")[-1:] == ["read_only"], what="read_only pushed")
    running.call("InsuranceClient", "set", {"failing": None})
    wait_until(lambda: running.call("Subscriber", "modes")[-1:] == ["prod"], what="prod pushed again")


def test_a_certificate_expired_at_call_time_is_refused_and_reported_to_prod_mode(running: Node) -> None:
    """Timers freeze between requests on Cloud Run: the pushed authority still says prod, the
    guard's clock says expired; ProdMode, told so, records the move to read_only and pushes it."""
    start(running, cert={"valid_for_s": 1}, preflight_buffer_s=0)
    not_after = time.time() + 1
    wait_until(lambda: time.time() > not_after, what="the certificate's expiry")
    assert running.call("ProdMode", "mode")["mode"] == "prod"  # nothing has looked at the clock yet
    running.call("ProdMode", "certificate_expired")
    assert running.call("ProdMode", "mode")["reason"] == "certificate expired"
    wait_until(lambda: running.call("Subscriber", "modes")[-1:] == ["read_only"], what="read_only pushed")
    wait_until(lambda: [r["payload"]["to"] for r in running.call("ReceiptLedger", "appended")
                                if r["kind"] == "mode.changed"] == ["prod", "read_only"],
               what="the mode.changed receipts")
