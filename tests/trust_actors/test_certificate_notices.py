"""CertManager's ``certificate_changed`` notices keep ProdMode's copy of the certificate current, on the
real actors (both bases): a renewal lets deploys through, a revocation or the certificate's expiry stops
them, without waiting for ProdMode's periodic check (an hour here), also after CertManager restarted.

"At once" is observed by polling a real condition (ProdMode's status or mode) for a few seconds: the
notice travels CertManager → ProdMode while the test's call travels test → ProdMode, in no set order."""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization

from tai_autonomics.actors.cert_manager import RENEW_CALL_TIMEOUT_S
from tai_autonomics.errors import InsuranceNotVerified, TaiError
from tai_autonomics.runtime import Node
from tai_autonomics.sandbox import SandboxServer
from tai_autonomics.trust import (
    CertificateAuthority,
    CertificateVerifier,
    CertManager,
    generate_key_and_csr,
    sample_policy,
)
from tai_autonomics.trust._files import private_key_pem
from tests.helpers import wait_until
from tests.trust_actors.support import POLICY_ID, Trust, restart

NO_PERIODIC_CHECK = {"check_interval_s": 3600}  # ProdMode's safety net never fires during a test
NO_EARLY_RENEWAL = {"renew_before_days": 0}  # CertManager renews only when told (renew_now)
HOUR_S = 3600
PROMPTLY_S = 10  # generous on a shared machine; the notice takes milliseconds
# A deploy of 60 s needs the certificate for 2 h + 60 s: the 1-hour one is too short, a renewed one (90 days) is not.
SHORT_BUFFER = {**NO_PERIODIC_CHECK, "preflight_buffer_s": 2 * HOUR_S}


def install_certificate_valid_for(trust: Trust, sandbox: SandboxServer, seconds: float) -> str:
    """Install a certificate from the sandbox insurer's CA valid for ``seconds`` more; its fingerprint.

    (The sandbox insurer issues 90-day certificates; this one is signed by the same CA directly.)
    """
    config = sandbox.sandbox.config
    ca = CertificateAuthority.load(config.ca_dir or config.insurer_dir / "ca")
    key, csr = generate_key_and_csr("insured-daemon")
    now = dt.datetime.now(dt.UTC)
    certificate = ca.issue(csr, sample_policy(), now - dt.timedelta(minutes=5), now + dt.timedelta(seconds=seconds))
    manager = CertManager(trust.cert_dir, CertificateVerifier.from_files(trust.anchor))
    return manager.install(certificate.public_bytes(serialization.Encoding.PEM), private_key_pem(key)).fingerprint


def guard(node: Node, timeout_s: float = 60) -> dict[str, Any]:
    return node.call("ProdMode", "guard", {"sku_id": "sku-001", "cost": "1", "operation_id": "op-1",
                                           "timeout_s": timeout_s})


def refused(node: Node) -> TaiError:
    with pytest.raises(TaiError) as refusal:
        guard(node)
    return refusal.value


def seconds_left(node: Node) -> int:
    return node.call("ProdMode", "status")["certificate_seconds_left"]


def mode(node: Node) -> str:
    return node.call("ProdMode", "mode")["mode"]


def test_a_renewal_lets_deploys_through_at_once(node: Node, tree, trust: Trust, admin: httpx.Client,
                                                sandbox_server: SandboxServer) -> None:
    install_certificate_valid_for(trust, sandbox_server, HOUR_S)
    tree(prod_mode=SHORT_BUFFER, cert=NO_EARLY_RENEWAL)
    assert refused(node).code == "cert_validity_too_short" and mode(node) == "prod"
    assert node.call("CertManager", "$state")["subscribers"] == ["ProdMode"]

    renewed = node.call("CertManager", "renew_now", timeout=RENEW_CALL_TIMEOUT_S)
    assert renewed["renewed"] is True, renewed
    wait_until(lambda: seconds_left(node) > 80 * 86400, timeout=PROMPTLY_S, what="ProdMode told of the renewal")
    assert guard(node) == {"mode": "prod", "chain": POLICY_ID, "authority": "contractual",
                           "limit": {"limit_count": 1_000_000, "limit_cost": "1000000000"}}


@pytest.mark.parametrize("source", ["revoked call", "insurer"])
def test_a_revocation_stops_deploys_at_once_and_for_good(node: Node, tree, trust: Trust, admin: httpx.Client,
                                                         source: str) -> None:
    fingerprint = trust.install_certificate(admin)
    tree(prod_mode=NO_PERIODIC_CHECK)
    assert guard(node)["mode"] == "prod"
    if source == "revoked call":
        assert node.call("CertManager", "revoked", {"reason": "policy cancelled", "fingerprint": fingerprint}) \
            == {"revoked": True}
    else:
        serial = node.call("CertManager", "status")["serial"]
        admin.post(f"/insurer/v1/certificates/{serial}/revoke", json={"reason": "key_compromise"}).raise_for_status()
        assert node.call("CertManager", "check_revocation", timeout=40) == {"status": "revoked", "revoked": True}

    wait_until(lambda: mode(node) == "read_only", timeout=PROMPTLY_S, what="ProdMode told of the revocation")
    refusal = refused(node)
    assert (refusal.code, refusal.detail["reason"]) == ("mode_refused", "certificate revoked by the insurer")
    # The insurer still confirms the policy, but not the certificate: no way back to prod while it is revoked
    # (neither ProdMode's own check after the notice, nor an operator's resume).
    with pytest.raises(InsuranceNotVerified) as resume:
        node.call("ProdMode", "resume", timeout=40)
    assert resume.value.code == "insurance_not_verified"
    assert mode(node) == "read_only"


def test_after_a_certmanager_restart_a_renewal_still_reaches_prodmode(node: Node, tree, trust: Trust,
                                                                     admin: httpx.Client,
                                                                     sandbox_server: SandboxServer) -> None:
    install_certificate_valid_for(trust, sandbox_server, HOUR_S)
    tree(prod_mode=SHORT_BUFFER, cert=NO_EARLY_RENEWAL)
    assert refused(node).code == "cert_validity_too_short"

    restart(node, "CertManager")  # kill -9 on the multiprocess base: its subscribers are gone with it
    renewed = node.call("CertManager", "renew_now", timeout=RENEW_CALL_TIMEOUT_S)  # maybe before ProdMode is back
    assert renewed["renewed"] is True, renewed
    wait_until(lambda: seconds_left(node) > 80 * 86400, timeout=PROMPTLY_S, what="ProdMode told of the renewal")
    assert guard(node)["mode"] == "prod"
    wait_until(lambda: node.call("CertManager", "$state")["subscribers"] == ["ProdMode"], timeout=PROMPTLY_S,
               what="ProdMode subscribed to the new CertManager")

    # and the new incarnation's notices reach it too: a revocation
    node.call("CertManager", "revoked", {"reason": "policy cancelled", "fingerprint": renewed["fingerprint"]})
    wait_until(lambda: mode(node) == "read_only", timeout=PROMPTLY_S, what="ProdMode told of the revocation")


def test_the_certificate_expiring_sends_prod_to_read_only_without_a_deploy_or_a_check(
        node: Node, tree, trust: Trust, admin: httpx.Client, sandbox_server: SandboxServer) -> None:
    """CertManager's timer at notAfter: an idle daemon does not stay in prod on an expired certificate
    until ProdMode's next check (a deploy's own pre-flight would refuse it anyway)."""
    install_certificate_valid_for(trust, sandbox_server, 6)
    tree(prod_mode={**NO_PERIODIC_CHECK, "preflight_buffer_s": 0}, cert=NO_EARLY_RENEWAL)
    assert mode(node) == "prod"
    wait_until(lambda: mode(node) == "read_only", timeout=6 + PROMPTLY_S, what="read_only at expiry")
    reason = node.call("ProdMode", "mode")["reason"]
    assert reason.startswith("certificate: the insurance certificate expired at"), reason
