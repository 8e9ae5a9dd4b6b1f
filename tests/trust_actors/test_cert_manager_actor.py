"""The CertManager actor in a real tree, on both bases, renewing and checking revocation through the
InsuranceClient actor against the sandbox over real sockets; receipts go to a recording ReceiptLedger."""

from __future__ import annotations

import datetime as dt

import httpx
import pytest

from tai_autonomics.actors.cert_manager import RENEW_CALL_TIMEOUT_S
from tai_autonomics.actors.insurance_client import CALL_TIMEOUT_S
from tai_autonomics.errors import TaiError
from tai_autonomics.runtime import Node, StartError
from tests.trust_actors.actors import recorded
from tests.trust_actors.support import POLICY_ID, Trust, restart

DAY_S = 86400.0
NO_EARLY_RENEWAL = {"renew_before_days": 0}  # so shifting the clock near expiry does not start a renewal


def call(node: Node, msg_type: str, payload=None, timeout: float = CALL_TIMEOUT_S):
    return node.call("CertManager", msg_type, payload, timeout=timeout)


def refusal(node: Node, msg_type: str, payload=None) -> TaiError:
    with pytest.raises(TaiError) as refused:
        call(node, msg_type, payload)
    return refused.value


def shift_to(days_left: float, trust: Trust) -> dict[str, float]:
    """Args that shift the actor's clock so the installed certificate has ``days_left`` days to go."""
    not_after, now = trust.held().not_after, dt.datetime.now(dt.timezone.utc)
    return {**NO_EARLY_RENEWAL, "clock_offset_s": (not_after - now).total_seconds() - days_left * DAY_S}


def test_status_and_preflight(node: Node, tree, trust: Trust, admin: httpx.Client) -> None:
    fingerprint = trust.install_certificate(admin)
    tree()
    status = call(node, "status")
    assert (status["loaded"], status["policy_id"], status["fingerprint"]) == (True, POLICY_ID, fingerprint)
    assert status["revoked"] is False and status["days_left"] in (89, 90)
    assert status["policy"]["authorized_sku"]
    assert call(node, "preflight", {"seconds": 3600})["policy_id"] == POLICY_ID
    assert refusal(node, "preflight", {"seconds": 100 * DAY_S}).code == "cert_validity_too_short"
    assert refusal(node, "preflight", {"seconds": "soon"}).code == "invalid_request"


def test_warnings_fire_once_per_threshold_across_restarts(node: Node, tree, trust: Trust,
                                                          admin: httpx.Client) -> None:
    trust.install_certificate(admin)
    expected = []
    for days_left, threshold in ((29.5, 30), (6.5, 7), (0.5, 1)):
        tree(cert=shift_to(days_left, trust))
        fired = call(node, "check_expiry")["warnings"]  # the start's own check may have sent it already
        assert [w["threshold_days"] for w in fired] in ([], [threshold])
        assert call(node, "check_expiry") == {"warnings": []}
        expected.append(threshold)
        warnings = recorded(trust.receipts, "insurance.expiry_warning")
        assert [w["payload"]["threshold_days"] for w in warnings] == expected
        assert all((w["mode"], w["chain"]) == ("prod", POLICY_ID) for w in warnings)
        restart(node, "CertManager")  # the warnings fired are remembered on disk
        assert call(node, "check_expiry") == {"warnings": []}
        node.stop_tree()
    assert len(recorded(trust.receipts)) == 3


def test_a_warning_the_ledger_refused_is_sent_again_at_the_next_check(node: Node, tree, trust: Trust,
                                                                      admin: httpx.Client) -> None:
    trust.install_certificate(admin)
    tree(cert=shift_to(20, trust), ledger={"refuse": 1})  # the ledger refuses the warning's first append
    call(node, "check_expiry")  # the warning fires here or in the start's own check: refused either way
    assert call(node, "check_expiry") == {"warnings": []}  # nothing new is due, but the refused one was resent
    [warning] = recorded(trust.receipts, "insurance.expiry_warning")
    assert warning["payload"]["threshold_days"] == 30
    call(node, "check_expiry")
    assert len(recorded(trust.receipts)) == 1


def test_renewal_through_the_sandbox_swaps_the_certificate_and_records_it(
        node: Node, tree, trust: Trust, admin: httpx.Client) -> None:
    old = trust.install_certificate(admin)
    tree()
    outcome = call(node, "renew_now", timeout=RENEW_CALL_TIMEOUT_S)
    assert outcome["renewed"] is True and outcome["error"] is None and outcome["fingerprint"] != old
    assert call(node, "status")["fingerprint"] == outcome["fingerprint"] == trust.held().fingerprint
    [receipt] = recorded(trust.receipts, "cert.renewed")
    assert (receipt["chain"], receipt["payload"]["old_fingerprint"]) == (POLICY_ID, old)
    assert receipt["payload"]["fingerprint"] == outcome["fingerprint"]
    assert len(list((trust.cert_dir / "archive").iterdir())) == 1
    restart(node, "CertManager")
    assert call(node, "status")["fingerprint"] == outcome["fingerprint"]


@pytest.mark.parametrize(("fault", "code"), [({"kind": "expired_certificate"}, "cert_expired"),
                                             ({"kind": "outage"}, "insurance_service_unavailable")])
def test_a_failed_renewal_keeps_the_old_certificate(node: Node, tree, trust: Trust, admin: httpx.Client,
                                                    fault: dict, code: str) -> None:
    old = trust.install_certificate(admin)
    tree()
    admin.post("/admin/faults", json={**fault, "endpoint": "insurer.renew_certificate"}).raise_for_status()
    outcome = call(node, "renew_now", timeout=RENEW_CALL_TIMEOUT_S)
    assert (outcome["renewed"], outcome["error"]["code"], outcome["failures"]) == (False, code, 1)
    assert outcome["fingerprint"] == call(node, "status")["fingerprint"] == old
    assert call(node, "preflight", {"seconds": 60})["policy_id"] == POLICY_ID
    assert recorded(trust.receipts, "cert.renewed") == []


def test_the_renewal_schedule_is_configurable(node: Node, tree, trust: Trust, admin: httpx.Client) -> None:
    """renew_before_days (fractional) and the backoff after a failure: renew_retry_base_s, doubling up to
    renew_retry_cap_s (the defaults, 60 s doubling to 6 h, would take real minutes to see in a test)."""
    trust.install_certificate(admin)
    tree(cert={"renew_before_days": 0.5, "renew_retry_base_s": 600, "renew_retry_cap_s": 900})
    status = call(node, "status")
    window = dt.datetime.fromisoformat(status["not_after"]) - dt.datetime.fromisoformat(status["next_renewal_at"])
    assert window == dt.timedelta(hours=12)
    admin.post("/admin/faults", json={"kind": "outage", "endpoint": "insurer.renew_certificate"}).raise_for_status()
    waits = []
    for failures in (1, 2, 3):
        outcome = call(node, "renew_now", timeout=RENEW_CALL_TIMEOUT_S)
        assert (outcome["renewed"], outcome["failures"]) == (False, failures)
        wait = dt.datetime.fromisoformat(outcome["next_attempt_at"]) - dt.datetime.now(dt.timezone.utc)
        waits.append(round(wait.total_seconds() / 100))
    assert waits == [6, 9, 9]  # 600 s, then 1200 s capped at 900 s


@pytest.mark.parametrize(("args", "message"), [
    ({"renew_retry_base_s": 0}, "renew_retry_base_s must be a number > 0, not 0"),
    ({"renew_retry_cap_s": "1h"}, "renew_retry_cap_s must be a number > 0, not '1h'"),
    ({"renew_retry_base_s": 10, "renew_retry_cap_s": 5}, "renew_retry_cap_s (5) must not be less than"),
    ({"renew_before_days": -1}, "renew_before_days must be a number >= 0, not -1"),
    ({"check_interval_s": float("nan")}, "check_interval_s must be a number > 0, not nan"),
    ({"sync_interval_s": 31}, "sync_interval_s must be at most 30 (adoption within 60 s), not 31"),
    ({"renew_lease_s": 0}, "renew_lease_s must be a number > 0, not 0"),
])
def test_a_bad_renewal_schedule_fails_the_start_naming_the_arg(node: Node, tree, args: dict, message: str) -> None:
    with pytest.raises(StartError) as refused:
        tree(cert=args)
    assert "child 'CertManager' failed to start" in str(refused.value) and message in str(refused.value)


def test_revocation_reported_by_the_insurer_takes_effect_at_once_and_survives_a_restart(
        node: Node, tree, trust: Trust, admin: httpx.Client) -> None:
    trust.install_certificate(admin)
    tree()
    assert call(node, "check_revocation") == {"status": "valid", "revoked": False}
    serial = call(node, "status")["serial"]
    admin.post(f"/insurer/v1/certificates/{serial}/revoke", json={"reason": "key_compromise"}).raise_for_status()
    assert call(node, "check_revocation") == {"status": "revoked", "revoked": True}
    assert refusal(node, "preflight", {"seconds": 0}).code == "cert_revoked"
    # the restarted actor's first check renews at once (a new key is the remedy): let the insurer refuse
    admin.post("/admin/faults", json={"kind": "reject", "classification": "permission_denied",
                                      "endpoint": "insurer.renew_certificate"}).raise_for_status()
    restart(node, "CertManager")
    assert call(node, "status")["revoked"] is True
    assert refusal(node, "preflight", {"seconds": 0}).code == "cert_revoked"
    refused = call(node, "renew_now", timeout=RENEW_CALL_TIMEOUT_S)  # joins the first check's renewal, if in flight
    assert (refused["renewed"], refused["error"]["code"]) == (False, "insurer_rejected")
    admin.post("/admin/reset").raise_for_status()
    renewed = call(node, "renew_now", timeout=RENEW_CALL_TIMEOUT_S)
    assert renewed["renewed"] is True, renewed
    assert call(node, "preflight", {"seconds": 0})["policy_id"] == POLICY_ID


def test_a_revoked_call_takes_effect_only_for_the_current_certificate(node: Node, tree, trust: Trust,
                                                                     admin: httpx.Client) -> None:
    fingerprint = trust.install_certificate(admin)
    tree()
    assert call(node, "revoked", {"reason": "late news", "fingerprint": "00" * 32}) == {"revoked": False}
    assert call(node, "preflight", {"seconds": 0})["policy_id"] == POLICY_ID
    assert call(node, "revoked", {"reason": "policy cancelled", "fingerprint": fingerprint}) == {"revoked": True}
    assert refusal(node, "preflight", {"seconds": 0}).code == "cert_revoked"


def test_prod_without_a_valid_certificate_fails_the_start_and_eval_starts_without_one(
        node: Node, tree, trust: Trust) -> None:
    trust.cert_dir.mkdir()
    (trust.cert_dir / "current.pem").write_text("not a certificate")
    with pytest.raises(StartError) as invalid:
        tree(mode="prod")
    assert "child 'CertManager' failed to start" in str(invalid.value)
    assert "current.pem holds no readable unencrypted PEM private key" in str(invalid.value)
    (trust.cert_dir / "current.pem").unlink()
    with pytest.raises(StartError) as missing:
        tree(mode="prod", install=False)
    assert "no insurance certificate at" in str(missing.value)
    tree(mode="eval", install=False)
    assert call(node, "status")["reason"]["code"] == "cert_not_loaded"
    assert refusal(node, "preflight", {"seconds": 0}).code == "cert_not_loaded"
    assert refusal(node, "renew_now").code == "cert_not_loaded"


def test_an_expired_certificate_loads_in_prod_and_is_refused_by_preflight(node: Node, tree, trust: Trust,
                                                                          admin: httpx.Client) -> None:
    """A CertManager restarted after expiry must let the daemon go read_only, not fail to start."""
    trust.install_certificate(admin)
    tree(mode="prod", cert=shift_to(-1, trust))
    expired = refusal(node, "status")  # what fails ProdMode's prod start, or sends a running daemon read_only
    assert expired.code == "cert_expired" and expired.detail["status"]["days_left"] < 0
    assert refusal(node, "preflight", {"seconds": 0}).code == "cert_expired"
    assert node.call("CertManager", "$state")["problem"] == "cert_expired"


def test_the_configured_first_certificate_is_installed_once(node: Node, tree, trust: Trust,
                                                            admin: httpx.Client) -> None:
    """The dev profile hands over its dev CA's certificate and key; renewals must not be undone by it."""
    certificate, key = trust.issue_certificate(admin)
    (trust.data_dir / "first.pem").write_bytes(certificate)
    (trust.data_dir / "first-key.pem").write_bytes(key)
    first = {"trust": {"cert_file": str(trust.data_dir / "first.pem"),
                       "key_file": str(trust.data_dir / "first-key.pem")}}
    tree(install=False, context_overrides=first)
    installed = call(node, "status")["fingerprint"]
    renewed = call(node, "renew_now", timeout=RENEW_CALL_TIMEOUT_S)["fingerprint"]
    assert renewed != installed
    node.stop_tree()
    tree(install=False, context_overrides=first)
    assert call(node, "status")["fingerprint"] == renewed
