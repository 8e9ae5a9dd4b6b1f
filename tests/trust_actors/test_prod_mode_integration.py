"""main's ProdMode on the real trust actors: the calls it makes (CertManager ``subscribe``, InsuranceClient
``verify_policy``) answer in the shapes it reads, and an expired certificate or an unconfirmable
policy refuses the production start with the reason. (CertManager's notices to it:
test_certificate_notices.py.)"""

from __future__ import annotations

import httpx
import pytest

from tai_autonomics.runtime import Node, StartError
from tai_autonomics.trust import sample_policy
from tests.trust_actors.conftest import POLICY_ID, Trust
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
