"""CertManager core: warnings once per threshold, pre-flight, atomic renewal, backoff, revocation — on a fake clock."""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import os

import pytest
from cryptography.hazmat.primitives import serialization
from trust_makers import NOW

from tai_autonomics import logs
from tai_autonomics.trust import (
    CertExpired,
    CertificateAuthority,
    CertificateVerifier,
    CertManager,
    CertNotLoaded,
    CertRevoked,
    CertStateCorrupt,
    CertValidityTooShort,
    CoverageLimit,
    Policy,
    RenewalFailed,
    generate_private_key,
    load_certificate,
    load_certificates,
    sample_policy,
)
from tai_autonomics.trust._files import private_key_pem

DAY = dt.timedelta(days=1)
PEM = serialization.Encoding.PEM


class Clock:
    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now

    def advance_to(self, remaining: dt.timedelta, manager: CertManager) -> None:
        self.now = manager.current.not_after - remaining


class CaRenewer:
    """The insurer's renewal endpoint, played by a real CA; records the CSRs it was sent."""

    def __init__(self, ca: CertificateAuthority, clock: Clock, policy: Policy | None = None, days: int = 90) -> None:
        self.ca, self.clock, self.policy, self.days = ca, clock, policy or sample_policy(), days
        self.csrs: list[bytes] = []

    def renew(self, csr_pem: bytes) -> bytes:
        self.csrs.append(csr_pem)
        certificate = self.ca.issue(
            csr_pem, self.policy, self.clock.now - dt.timedelta(minutes=5), self.clock.now + self.days * DAY
        )
        return certificate.public_bytes(PEM) + b"".join(c.public_bytes(PEM) for c in self.ca.intermediates)


class FailingRenewer:
    def __init__(self) -> None:
        self.calls = 0

    def renew(self, csr_pem: bytes) -> bytes:
        self.calls += 1
        raise RenewalFailed("insurer unavailable (test)", code="insurance_service_unavailable")


@pytest.fixture(scope="module")
def root() -> CertificateAuthority:
    return CertificateAuthority.generate("Insurer Root", now=NOW - 365 * DAY)


@pytest.fixture(scope="module")
def issuing(root) -> CertificateAuthority:
    return root.create_intermediate("Insurer Issuing CA", now=NOW - 365 * DAY)


@pytest.fixture
def clock() -> Clock:
    return Clock(NOW)


@pytest.fixture
def make_manager(tmp_path, root, clock):
    def make(renewer=None, **options) -> CertManager:
        return CertManager(
            tmp_path / "data",
            CertificateVerifier(root.certificate, clock=clock),
            renewer=renewer,
            clock=clock,
            **options,
        )

    return make


@pytest.fixture
def json_log():
    """The project's JSON log lines, captured; the root logger is restored afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    stream = io.StringIO()
    logs.configure("DEBUG", stream)
    yield stream
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def installed(make_manager, issuing, clock):
    """A manager holding a certificate from the intermediate that expires 60 days from NOW."""

    def install(renewer=None, **options) -> CertManager:
        manager = make_manager(renewer, **options)
        key = generate_private_key()
        certificate = issuing.issue(key.public_key(), sample_policy(), NOW - DAY, NOW + 60 * DAY)
        manager.install(certificate.public_bytes(PEM) + issuing.certificate.public_bytes(PEM), private_key_pem(key))
        return manager

    return install


def _current_file(manager: CertManager) -> bytes:
    return (manager.data_dir / "current.pem").read_bytes()


# --- warnings -------------------------------------------------------------------------------------


def test_warnings_fire_once_per_threshold(installed, clock):
    manager = installed()
    fired = []
    for remaining in [
        31 * DAY,
        30 * DAY,
        29 * DAY,
        8 * DAY,
        7 * DAY,
        6 * DAY,
        2 * DAY,
        DAY,
        dt.timedelta(hours=1),
        dt.timedelta(seconds=1),
        dt.timedelta(0),
        -DAY,
    ]:
        clock.advance_to(remaining, manager)
        fired += [(remaining, w.threshold_days) for w in manager.check_expiry()]
        fired += [(remaining, w.threshold_days) for w in manager.check_expiry()]  # a second check at the same time
    assert fired == [(30 * DAY, 30), (7 * DAY, 7), (DAY, 1)]


def test_a_late_first_check_reports_only_the_tightest_threshold(installed, clock):
    manager = installed()
    clock.advance_to(5 * DAY, manager)
    assert [w.threshold_days for w in manager.check_expiry()] == [7]
    clock.advance_to(3 * DAY, manager)
    assert manager.check_expiry() == []
    clock.advance_to(dt.timedelta(hours=20), manager)
    [warning] = manager.check_expiry()
    assert warning.threshold_days == 1 and warning.to_dict()["seconds_left"] == 20 * 3600


def test_warnings_survive_a_restart(installed, make_manager, clock):
    manager = installed()
    clock.advance_to(29 * DAY, manager)
    assert len(manager.check_expiry()) == 1
    restarted = make_manager()
    assert restarted.load().fingerprint == manager.current.fingerprint
    assert restarted.check_expiry() == []
    clock.advance_to(6 * DAY, restarted)
    assert [w.threshold_days for w in restarted.check_expiry()] == [7]


def test_warning_is_logged_as_a_json_line(installed, clock, json_log):
    manager = installed()
    clock.advance_to(29 * DAY, manager)
    manager.check_expiry()
    line = json.loads(json_log.getvalue().splitlines()[-1])
    assert line["event"] == "cert.expiry_warning" and line["threshold_days"] == 30 and line["severity"] == "WARNING"


# --- pre-flight -----------------------------------------------------------------------------------


def test_preflight(installed, make_manager, clock):
    with pytest.raises(CertNotLoaded):
        make_manager().preflight(0)
    manager = installed()
    assert manager.preflight(3600).fingerprint == manager.current.fingerprint
    clock.advance_to(dt.timedelta(minutes=10), manager)
    manager.preflight(600)
    with pytest.raises(CertValidityTooShort) as info:
        manager.preflight(601)
    assert "601 s" in info.value.message
    clock.advance_to(-dt.timedelta(seconds=1), manager)
    with pytest.raises(CertExpired):
        manager.preflight(0)


def test_load_without_a_certificate_says_what_to_do(make_manager):
    with pytest.raises(CertNotLoaded, match="install one"):
        make_manager().load()


def test_load_refuses_a_certificate_that_expired_while_stopped(installed, make_manager, clock):
    manager = installed()
    clock.advance_to(-DAY, manager)
    with pytest.raises(CertExpired):
        make_manager().load()


# --- renewal --------------------------------------------------------------------------------------


def test_renewal_swaps_atomically_and_archives_the_old_certificate(installed, issuing, clock, make_manager):
    renewer = CaRenewer(issuing, clock)
    manager = installed(renewer)
    old = manager.current
    clock.advance_to(44 * DAY, manager)
    assert manager.renewal_due()

    outcome = manager.renew()

    assert outcome.renewed and outcome.error is None and outcome.consecutive_failures == 0
    new = manager.current
    assert new.fingerprint != old.fingerprint and outcome.certificate == new
    assert new.not_after == clock.now + 90 * DAY
    assert outcome.next_attempt_at == new.not_after - dt.timedelta(days=45) == manager.next_renewal_at
    assert not manager.renewal_due()
    archived = list((manager.data_dir / "archive").iterdir())
    assert [load_certificate(p.read_bytes()) for p in archived] == [old.certificate]
    assert b"PRIVATE KEY" not in archived[0].read_bytes()
    stored = load_certificates(_current_file(manager))
    assert stored[0] == new.certificate and stored[1] == issuing.certificate
    assert oct(os.stat(manager.data_dir / "current.pem").st_mode & 0o777) == "0o600"
    key = serialization.load_pem_private_key(_current_file(manager), password=None)
    assert key.public_key() == new.certificate.public_key() == manager.private_key.public_key()
    assert make_manager().load().fingerprint == new.fingerprint


def test_the_new_certificate_is_validated_before_the_file_changes(installed, issuing, clock):
    seen = []

    class WatchingRenewer(CaRenewer):
        def renew(self, csr_pem: bytes) -> bytes:
            seen.append(_current_file(manager))
            return super().renew(csr_pem)

    manager = installed(WatchingRenewer(issuing, clock))
    before = _current_file(manager)
    manager.renew()
    assert seen == [before] and _current_file(manager) != before


def test_a_crash_during_the_swap_leaves_the_old_certificate_whole(installed, issuing, clock, monkeypatch, make_manager):
    manager = installed(CaRenewer(issuing, clock))
    before = _current_file(manager)
    real_replace = os.replace

    def crash_on_current(src, dst):
        if str(dst).endswith("current.pem"):
            raise OSError("disk full (test)")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", crash_on_current)
    with pytest.raises(OSError):
        manager.renew()
    monkeypatch.setattr(os, "replace", real_replace)
    assert _current_file(manager) == before
    assert not [p for p in manager.data_dir.iterdir() if p.name.endswith(".tmp")]
    assert make_manager().load().fingerprint == manager.current.fingerprint


def test_failed_renewal_keeps_the_old_certificate_and_backs_off(installed, clock, make_manager):
    renewer = FailingRenewer()
    manager = installed(renewer, retry_base=dt.timedelta(minutes=1), retry_cap=dt.timedelta(minutes=10))
    before, fingerprint = _current_file(manager), manager.current.fingerprint
    clock.advance_to(44 * DAY, manager)
    delays = []
    for _ in range(6):
        assert manager.renewal_due()
        outcome = manager.renew()
        assert not outcome.renewed and outcome.error.code == "insurance_service_unavailable"
        assert outcome.certificate.fingerprint == fingerprint
        delays.append(outcome.next_attempt_at - clock.now)
        assert manager.next_renewal_at == outcome.next_attempt_at
        clock.now = outcome.next_attempt_at - dt.timedelta(seconds=1)
        assert not manager.renewal_due()
        clock.now = outcome.next_attempt_at
    assert delays == [dt.timedelta(minutes=m) for m in (1, 2, 4, 8, 10, 10)]
    assert renewer.calls == 6 and outcome.consecutive_failures == 6
    assert _current_file(manager) == before and manager.preflight(0).fingerprint == fingerprint
    restarted = make_manager(renewer, retry_base=dt.timedelta(minutes=1), retry_cap=dt.timedelta(minutes=10))
    restarted.load()
    clock.now -= dt.timedelta(seconds=1)
    assert not restarted.renewal_due()  # the backoff survives a restart


@pytest.mark.parametrize("defect", ["garbage", "other_key", "other_policy", "untrusted_ca", "already_expired"])
def test_invalid_renewal_answers_are_refused(installed, issuing, clock, defect):
    other_policy = Policy(
        policy_id="someone-else",
        coverage_limits={"x": CoverageLimit(1, 1)},
        authorized_sku=("x",),
        customer_name="Mallory",
        customer_account="acct-666",
    )

    class BadRenewer(CaRenewer):
        def renew(self, csr_pem: bytes) -> bytes:
            if defect == "garbage":
                return b"<html>502 Bad Gateway</html>"
            if defect == "other_key":
                stranger = generate_private_key().public_key()
                certificate = issuing.issue(stranger, self.policy, clock.now - DAY, clock.now + DAY)
                return certificate.public_bytes(PEM) + issuing.certificate.public_bytes(PEM)
            if defect == "already_expired":
                certificate = issuing.issue(csr_pem, self.policy, clock.now - 9 * DAY, clock.now - DAY)
                return certificate.public_bytes(PEM) + issuing.certificate.public_bytes(PEM)
            if defect == "untrusted_ca":
                self.ca = CertificateAuthority.generate("Insurer Root")
            return super().renew(csr_pem)

    manager = installed(BadRenewer(issuing, clock, other_policy if defect == "other_policy" else None))
    before = _current_file(manager)
    outcome = manager.renew()
    expected = {
        "garbage": "cert_malformed",
        "other_key": "cert_key_mismatch",
        "other_policy": "cert_renewal_mismatch",
        "untrusted_ca": "cert_untrusted_issuer",
        "already_expired": "cert_expired",
    }[defect]
    assert not outcome.renewed and outcome.error.code == expected
    assert _current_file(manager) == before


def test_an_expired_certificate_loads_only_when_asked_and_preflight_refuses_it(installed, make_manager, clock):
    manager = installed()
    clock.now = manager.current.not_after + DAY
    with pytest.raises(CertExpired):
        make_manager().load()
    restarted = make_manager()
    assert restarted.load(outside_validity_ok=True).fingerprint == manager.current.fingerprint
    with pytest.raises(CertExpired):
        restarted.preflight(0)
    assert restarted.renewal_due()


def test_a_split_renewal_completes_later_but_never_over_a_replaced_certificate(installed, issuing, clock):
    """begin/complete is what the actor uses (it cannot block on the insurer actor); renew() is the same two halves."""
    renewer = CaRenewer(issuing, clock)
    manager = installed()
    first, second = manager.begin_renewal(), manager.begin_renewal()
    assert "key" not in repr(first)
    assert manager.complete_renewal(first, renewer.renew(first.csr_pem)).renewed
    late = manager.complete_renewal(second, renewer.renew(second.csr_pem))
    assert not late.renewed and late.error.code == "cert_renewal_failed" and late.consecutive_failures == 0
    assert manager.current == late.certificate and not manager.renewal_due()  # the stale attempt counts for nothing
    failed = manager.renewal_failed(manager.begin_renewal(), RenewalFailed("insurer down (test)"))
    assert not failed.renewed and failed.consecutive_failures == 1 and manager.current == late.certificate


def test_renew_without_a_renewer_is_a_typed_error(installed):
    with pytest.raises(RenewalFailed):
        installed().renew()


# --- revocation -----------------------------------------------------------------------------------


def test_revocation_takes_effect_at_once_and_survives_restart(installed, issuing, clock, make_manager):
    manager = installed(CaRenewer(issuing, clock))
    manager.preflight(60)
    assert manager.mark_revoked("key compromise reported by insurer")
    with pytest.raises(CertRevoked, match="key compromise"):
        manager.preflight(0)
    assert manager.revoked and manager.renewal_due()  # a new key is the remedy, so renew right away
    assert manager.next_renewal_at == clock.now
    restarted = make_manager(CaRenewer(issuing, clock))
    restarted.load()
    with pytest.raises(CertRevoked):
        restarted.preflight(0)
    assert restarted.renew().renewed
    assert not restarted.revoked and restarted.preflight(60)


def test_revocation_of_a_replaced_certificate_is_ignored(installed, issuing, clock):
    manager = installed(CaRenewer(issuing, clock))
    old = manager.current.fingerprint
    manager.renew()
    assert not manager.mark_revoked("late report", fingerprint=old)
    manager.preflight(0)
    assert manager.mark_revoked("current", fingerprint=manager.current.fingerprint)
    with pytest.raises(CertRevoked):
        manager.preflight(0)


def test_corrupt_state_is_refused_rather_than_forgetting_a_revocation(installed, make_manager):
    manager = installed()
    manager.mark_revoked("revoked")
    (manager.data_dir / "state.json").write_text("{not json")
    with pytest.raises(CertStateCorrupt):
        make_manager().load()


# --- secrets --------------------------------------------------------------------------------------


def test_private_keys_stay_out_of_logs_reprs_and_errors(installed, issuing, clock, json_log):
    class FailsOnce(CaRenewer):
        calls = 0

        def renew(self, csr_pem: bytes) -> bytes:
            self.calls += 1
            if self.calls == 1:
                raise RenewalFailed("insurer unavailable (test)")
            return super().renew(csr_pem)

    manager = installed(FailsOnce(issuing, clock))
    installed_key = manager.private_key
    clock.advance_to(29 * DAY, manager)
    manager.check_expiry()
    failed = manager.renew()
    renewed = manager.renew()
    manager.mark_revoked("test")
    assert not failed.renewed and renewed.renewed
    texts = [json_log.getvalue(), repr(manager), repr(issuing), repr(failed), repr(renewed), failed.error.message]
    for key in (installed_key, manager.private_key):
        body = "".join(private_key_pem(key).decode().splitlines()[1:-1])
        for text in texts:
            assert "PRIVATE KEY" not in text
            assert not any(body[i : i + 24] in text for i in range(0, len(body) - 24, 12))
