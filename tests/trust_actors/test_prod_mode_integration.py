"""main's ProdMode on the real trust actors: the calls it makes (CertManager ``subscribe``, InsuranceClient
``verify_policy``) answer in the shapes it reads, and an expired certificate or an unconfirmable
policy refuses the production start with the reason. (CertManager's notices to it:
test_certificate_notices.py.)"""

from __future__ import annotations

import httpx
import pytest

from tai_autonomics.runtime import Node, StartError
from tai_autonomics.trust import sample_policy
from tests.helpers import wait_until
from tests.trust_actors.actors import recorded
from tests.trust_actors.support import POLICY_ID, Trust
from tests.trust_actors.test_cert_manager_actor import shift_to


def test_prod_starts_on_a_valid_certificate_and_an_active_policy(node: Node, tree, admin: httpx.Client) -> None:
    tree(prod_mode=True)
    status = node.call("ProdMode", "status")
    assert (status["mode"], status["policy_id"]) == ("prod", POLICY_ID)
    assert status["certificate_seconds_left"] > 80 * 86400


def test_an_expired_certificate_refuses_the_production_start(node: Node, tree, trust: Trust,
                                                            admin: httpx.Client) -> None:
    trust.install_certificate(admin)
    with pytest.raises(StartError) as refused:
        tree(prod_mode=True, cert=shift_to(-1, trust))
    assert "production start refused: certificate: the insurance certificate expired at" in str(refused.value)


def test_a_revoked_policy_refuses_the_production_start(node: Node, tree, trust: Trust,
                                                      admin: httpx.Client) -> None:
    trust.install_certificate(admin)
    admin.put(f"/admin/policies/{POLICY_ID}", json={"policy": sample_policy().to_dict(), "status": "revoked"}
              ).raise_for_status()
    with pytest.raises(StartError) as refused:
        tree(prod_mode=True)
    assert "production start refused: insurer" in str(refused.value) and "revoked" in str(refused.value)


def _changes(trust: Trust) -> list[tuple[str, str]]:
    return [(r["payload"]["from"], r["payload"]["to"]) for r in recorded(trust.receipts, "mode.changed")]


def _recorded_changes(node: Node, trust: Trust, count: int) -> bool:
    """Whether ``count`` mode.changed receipts are stored; asks ProdMode first, which on the in-process
    base is what runs the actors (their timers included) meanwhile."""
    node.call("ProdMode", "mode")
    return len(_changes(trust)) == count


def test_a_ledger_that_cannot_store_holds_read_only_until_a_receipt_is_stored(node: Node, tree, trust: Trust) -> None:
    """docs/reliability.md: the start's own receipt refused for a full disk sends prod to read_only at
    once; the retries of that receipt are the probe, and once it is stored the mode comes back, each
    change recorded in order."""
    tree(prod_mode={"ledger_retry_s": 0.05}, ledger={"answers": {"mode.changed": ["ledger_unavailable"] * 3}})
    wait_until(lambda: _recorded_changes(node, trust, 3), timeout=10, what="three mode.changed receipts")
    assert _changes(trust) == [("", "prod"), ("prod", "read_only"), ("read_only", "prod")]
    assert node.call("ProdMode", "mode")["mode"] == "prod"


def test_the_probe_goes_on_through_a_ledger_restart(node: Node, tree, trust: Trust) -> None:
    """Told the disk is full, ProdMode keeps retrying its read_only receipt even when an attempt fails
    for another reason (the ledger crashed under it): else nothing would ever find the disk back."""
    tree(prod_mode={"ledger_retry_s": 0.05},
         ledger={"answers": {"mode.changed": ["", "actor_crashed", "ledger_unavailable", "actor_crashed"]}})
    wait_until(lambda: _recorded_changes(node, trust, 1), timeout=10, what="the start's receipt")
    node.call("ProdMode", "ledger_unavailable", {"reason": "the disk is full"})
    assert node.call("ProdMode", "mode") == {"mode": "read_only", "reason": "ledger: the disk is full",
                                              "configured": "prod", "manual_resume": False}
    wait_until(lambda: _recorded_changes(node, trust, 3), timeout=10, what="read_only and prod recorded")
    assert _changes(trust) == [("", "prod"), ("prod", "read_only"), ("read_only", "prod")]
    assert node.call("ProdMode", "mode")["mode"] == "prod"
