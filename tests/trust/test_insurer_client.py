"""InsuranceClient against the sandbox over real sockets on 127.0.0.1.

Backoff schedules are scaled down (RetryPolicy seconds) and the cache TTL and breaker reset
timeout run on an injected clock, so nothing here waits for real seconds; the retries and the
waits between them are read back from the sandbox's request log (arrival timestamps).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tai_autonomics.sandbox import SandboxConfig, SandboxServer
from tai_autonomics.trust import CertificateVerifier, CertManager, Policy, generate_key_and_csr, sample_policy
from tai_autonomics.trust.insurer_client import (
    CertificateNotFoundError, InsuranceCacheStaleError, InsuranceCircuitOpenError, InsuranceClient,
    InsuranceExpiredError, InsuranceRevokedError, InsuranceServiceUnavailableError, InsurerRejectedError,
    InsurerSignatureInvalidError, PolicyNotFoundError, RateLimitedError, RetryPolicy, _parse_retry_after,
)
from tai_autonomics.trust.insurer_signature import load_public_keys

POLICY_ID = sample_policy().policy_id
FAST = RetryPolicy(base_s=0.05, factor=2.0, cap_s=0.4, jitter=0.2, max_retry_after_s=1.0)
SLACK_S = 0.5  # scheduling slack on a shared 2-core machine, on top of the largest allowed wait


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(scope="module")
def sandbox_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxServer]:
    with SandboxServer(SandboxConfig(data_dir=tmp_path_factory.mktemp("sandbox"))) as server:
        yield server


@pytest.fixture
def sandbox(sandbox_server: SandboxServer) -> SandboxServer:
    with httpx.Client(base_url=sandbox_server.url) as admin:
        admin.post("/admin/reset").raise_for_status()
    return sandbox_server


@pytest.fixture
def admin(sandbox: SandboxServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sandbox.url) as client:
        yield client


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_client(sandbox: SandboxServer, clock: FakeClock) -> Iterator[Callable[..., InsuranceClient]]:
    keys = load_public_keys(sandbox.sandbox.config.insurer_public_key_file.read_bytes())
    clients: list[InsuranceClient] = []

    def make(url: str | None = None, **overrides: Any) -> InsuranceClient:
        options: dict[str, Any] = {"timeout_s": 2.0, "retry": FAST, "clock": clock, "rng": random.Random(7),
                                   "breaker_fail_max": 5, "breaker_reset_s": 30.0}
        options.update(overrides)
        client = InsuranceClient(url or sandbox.url, POLICY_ID, keys, **options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def add_fault(admin: httpx.Client, **fault: Any) -> str:
    response = admin.post("/admin/faults", json=fault)
    response.raise_for_status()
    return response.json()["id"]


def requests_to(admin: httpx.Client, endpoint: str = "insurer.*") -> list[dict[str, Any]]:
    return admin.get("/admin/requests", params={"endpoint": endpoint}).json()["requests"]


def gaps(entries: list[dict[str, Any]]) -> list[float]:
    return [b["time"] - a["time"] for a, b in zip(entries, entries[1:], strict=False)]


def csr() -> bytes:
    _, request = generate_key_and_csr("insured-daemon")
    return request.public_bytes(serialization.Encoding.PEM)


# --- policy status -------------------------------------------------------------------------


def test_active_policy_status_is_fetched_signed_and_cached(make_client: Callable, admin: httpx.Client) -> None:
    client = make_client()
    status = client.verify_policy()
    assert (status.policy_id, status.status, status.from_cache) == (POLICY_ID, "active", False)
    assert client.cached_policy_status().from_cache
    assert len(requests_to(admin)) == 1  # the cached read made no request


def test_unknown_policy_is_policy_not_found_without_retry(make_client: Callable, admin: httpx.Client) -> None:
    with pytest.raises(PolicyNotFoundError) as caught:
        make_client().policy_status("no-such-policy")
    assert caught.value.code == "policy_not_found"
    assert len(requests_to(admin)) == 1


def test_revoked_and_expired_policies_are_typed_errors(make_client: Callable, admin: httpx.Client) -> None:
    policy = sample_policy().to_dict()
    admin.put(f"/admin/policies/{POLICY_ID}", json={"policy": policy, "status": "revoked", "reason": "fraud"}
              ).raise_for_status()
    client = make_client()
    with pytest.raises(InsuranceRevokedError) as revoked:
        client.verify_policy()
    assert revoked.value.code == "insurance_revoked" and revoked.value.detail["reason"] == "fraud"
    past = (datetime.now(timezone.utc) - timedelta(days=1)).isoformat()
    admin.put(f"/admin/policies/{POLICY_ID}", json={"policy": policy, "period_end": past}).raise_for_status()
    with pytest.raises(InsuranceExpiredError) as expired:
        client.verify_policy()
    assert expired.value.code == "insurance_expired"


# --- retries, backoff, Retry-After ---------------------------------------------------------


def test_5xx_is_retried_three_times_with_exponential_backoff(make_client: Callable, admin: httpx.Client) -> None:
    add_fault(admin, kind="error", endpoint="insurer.policy_status", status=502)
    with pytest.raises(InsuranceServiceUnavailableError) as caught:
        make_client().policy_status()
    assert caught.value.code == "insurance_service_unavailable" and caught.value.detail["attempts"] == 3
    entries = requests_to(admin)
    assert [e["status"] for e in entries] == [502, 502, 502]
    first, second = gaps(entries)
    assert 0.05 <= first <= 0.05 * 1.2 + SLACK_S
    assert 0.10 <= second <= 0.10 * 1.2 + SLACK_S


def test_a_transient_error_then_success_returns_the_answer(make_client: Callable, admin: httpx.Client) -> None:
    add_fault(admin, kind="outage", endpoint="insurer.policy_status", times=2)
    assert make_client().policy_status().status == "active"
    assert [e["status"] for e in requests_to(admin)] == [503, 503, 200]


@pytest.mark.parametrize("kind", ["rate_limit", "outage"])
def test_retry_after_is_honoured_on_429_and_503(make_client: Callable, admin: httpx.Client, kind: str) -> None:
    add_fault(admin, kind=kind, endpoint="insurer.policy_status", retry_after_s=0.3, times=1)
    assert make_client().policy_status().status == "active"
    entries = requests_to(admin)
    assert [e["status"] for e in entries] == [429 if kind == "rate_limit" else 503, 200]
    assert 0.3 <= gaps(entries)[0] <= 0.3 + SLACK_S  # backoff alone would have waited ~0.05 s


def test_retry_after_longer_than_allowed_gives_up_at_once(make_client: Callable, admin: httpx.Client) -> None:
    add_fault(admin, kind="rate_limit", endpoint="insurer.policy_status", retry_after_s=30)
    with pytest.raises(RateLimitedError) as caught:
        make_client().policy_status()
    assert caught.value.code == "rate_limited" and caught.value.detail["retry_after_s"] == 30
    assert len(requests_to(admin)) == 1


def test_persistent_429_is_rate_limited_after_three_attempts(make_client: Callable, admin: httpx.Client) -> None:
    add_fault(admin, kind="rate_limit", endpoint="insurer.policy_status", retry_after_s=0)
    with pytest.raises(RateLimitedError):
        make_client().policy_status()
    assert [e["status"] for e in requests_to(admin)] == [429, 429, 429]


def test_4xx_is_not_retried(make_client: Callable, admin: httpx.Client) -> None:
    add_fault(admin, kind="reject", endpoint="insurer.policy_status", classification="permission_denied")
    with pytest.raises(InsurerRejectedError) as caught:
        make_client().policy_status()
    assert caught.value.detail["status"] == 403 and caught.value.detail["insurer_code"] == "permission_denied"
    assert len(requests_to(admin)) == 1


def test_a_hang_longer_than_the_timeout_is_retried_then_unavailable(make_client: Callable,
                                                                    admin: httpx.Client) -> None:
    add_fault(admin, kind="timeout", endpoint="insurer.policy_status", delay_s=10)
    with pytest.raises(InsuranceServiceUnavailableError) as caught:
        make_client(timeout_s=0.2).policy_status()
    assert caught.value.detail["last_failure"].startswith("timeout")
    entries = requests_to(admin)  # recorded on arrival; the last may still be in its hang
    assert len(entries) == 3 and all(e["faults"] == ["timeout"] for e in entries)
    assert all(e["status"] == 504 and e["duration_s"] < 5 for e in entries[:2])


def test_a_dropped_connection_is_transient(make_client: Callable, admin: httpx.Client) -> None:
    add_fault(admin, kind="outage", endpoint="insurer.policy_status", mode="drop", times=1)
    assert make_client().policy_status().status == "active"
    assert [e["dropped"] for e in requests_to(admin)] == [True, False]


def test_latency_below_the_timeout_is_tolerated(make_client: Callable, admin: httpx.Client) -> None:
    add_fault(admin, kind="latency", endpoint="insurer.policy_status", delay_s=0.1)
    assert make_client().policy_status().status == "active"
    assert requests_to(admin)[0]["duration_s"] >= 0.1


def test_every_http_attempt_is_timed_failed_ones_too(make_client: Callable, admin: httpx.Client) -> None:
    client = make_client()
    add_fault(admin, kind="latency", endpoint="insurer.policy_status", delay_s=0.3, times=1)
    client.policy_status()
    add_fault(admin, kind="error", endpoint="insurer.policy_status", times=1)
    client.policy_status()  # an error, retried, then the answer
    timed = client.request_durations.snapshot()
    at_most = dict(timed["buckets"])
    assert (timed["count"], at_most[0.25]) == (3, 2), timed  # the delayed one is above 0.25 s, the others below
    assert timed["sum"] >= 0.3 and at_most[10.0] == 3


def test_an_error_rate_is_survived_by_retries(make_client: Callable, admin: httpx.Client) -> None:
    admin.put("/admin/faults", json={"seed": 3, "faults": [
        {"kind": "error", "endpoint": "insurer.policy_status", "probability": 0.3}]}).raise_for_status()
    client = make_client()
    for _ in range(10):
        assert client.policy_status().status == "active"
    statuses = [e["status"] for e in requests_to(admin)]
    assert statuses.count(200) == 10 and 500 in statuses


TRANSIENT_KINDS = {"error": 500, "outage": 503, "rate_limit": 429}
EXTRA = {"rate_limit": {"retry_after_s": 0}, "reject": {"classification": "permission_denied"}}  # reject: a 403
FAULT_SPECS = st.lists(st.tuples(st.sampled_from(["error", "outage", "rate_limit", "reject", "bad_signature"]),
                                 st.integers(1, 4)), max_size=3)


def expected_outcome(specs: list[tuple[str, int]]) -> tuple[str, int]:
    """What the client must do for these faults (each fires on requests 1..times): outcome and requests made."""
    for attempt in (1, 2, 3):
        active = [kind for kind, times in specs if times >= attempt]
        decisive = next((kind for kind in active if kind != "bad_signature"), None)
        if decisive in TRANSIENT_KINDS:
            if attempt == 3:
                return ("rate_limited" if decisive == "rate_limit" else "insurance_service_unavailable"), 3
            continue
        if "bad_signature" in active:
            return "insurer_signature_invalid", attempt
        return ("insurer_rejected" if decisive == "reject" else "ok"), attempt
    raise AssertionError("three attempts always decide")


@pytest.fixture
def transport() -> Iterator[httpx.HTTPTransport]:
    """One connection pool for many short-lived clients (building one per client costs an SSL context)."""
    with httpx.HTTPTransport() as shared:
        yield shared


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(specs=FAULT_SPECS)
def test_any_fault_sequence_gives_the_modelled_outcome_and_request_count(
        make_client: Callable, admin: httpx.Client, transport: httpx.HTTPTransport,
        specs: list[tuple[str, int]]) -> None:
    admin.post("/admin/reset").raise_for_status()
    faults = [{"kind": kind, "endpoint": "insurer.policy_status", "times": times,
               **EXTRA.get(kind, {})} for kind, times in specs]
    admin.put("/admin/faults", json={"faults": faults}).raise_for_status()
    client = make_client(retry=RetryPolicy(base_s=0.001, cap_s=0.004), transport=transport)
    try:
        client.policy_status()
        outcome = "ok"
    except (InsuranceServiceUnavailableError, InsurerRejectedError, InsurerSignatureInvalidError) as exc:
        outcome = exc.code
    assert (outcome, len(requests_to(admin))) == expected_outcome(specs)


# --- cache ---------------------------------------------------------------------------------


def test_fresh_cache_keeps_operations_going_and_stale_cache_is_reported(
        make_client: Callable, admin: httpx.Client, clock: FakeClock) -> None:
    client = make_client(cache_ttl_s=3600)
    client.policy_status()
    outage = add_fault(admin, kind="outage", endpoint="insurer.*")
    clock.advance(3599)
    cached = client.verify_policy()
    assert cached.from_cache and cached.status == "active" and cached.age_s == pytest.approx(3599)
    clock.advance(1)
    with pytest.raises(InsuranceCacheStaleError) as stale:
        client.policy_status()
    assert stale.value.code == "insurance_cache_stale" and stale.value.detail["age_s"] == pytest.approx(3600)
    assert stale.value.detail["insurer_error"] in ("insurance_service_unavailable", "insurance_circuit_open")
    with pytest.raises(InsuranceCacheStaleError):
        client.cached_policy_status()
    admin.delete(f"/admin/faults/{outage}").raise_for_status()
    clock.advance(30)  # the outage opened the breaker; its reset timeout passes
    assert client.policy_status().from_cache is False  # the insurer is back: fresh again


def test_cache_lookups_count_hits_and_misses_but_not_peeks(make_client: Callable, admin: httpx.Client,
                                                           clock: FakeClock) -> None:
    client = make_client(cache_ttl_s=3600, breaker_fail_max=100)
    client.policy_status()
    assert client.cache_lookups == {"hit": 0, "miss": 0}  # the insurer answered: the cache was not asked
    add_fault(admin, kind="outage", endpoint="insurer.*")
    assert client.policy_status().from_cache  # hit
    assert client.peek_policy_status().from_cache  # not counted: a look at the cache's state
    clock.advance(3600)
    with pytest.raises(InsuranceCacheStaleError):
        client.policy_status()  # miss: stale
    with pytest.raises(InsuranceCacheStaleError):
        client.peek_policy_status()
    assert client.cache_lookups == {"hit": 1, "miss": 1}
    empty = make_client()
    with pytest.raises(InsuranceServiceUnavailableError):
        empty.policy_status()  # miss: nothing cached
    with pytest.raises(InsuranceCacheStaleError):
        empty.cached_policy_status()  # miss
    assert empty.cache_lookups == {"hit": 0, "miss": 2}


def test_the_cache_holds_the_latest_policies_fetched_not_every_policy_asked_about(
        make_client: Callable, admin: httpx.Client) -> None:
    """Any policy the insurer knows may be asked about: the cache keeps the last ``cached_policies``."""
    ids = [f"{POLICY_ID}-{n}" for n in range(5)]
    for policy_id in ids:
        policy = {**sample_policy().to_dict(), "policy_id": policy_id}
        admin.put(f"/admin/policies/{policy_id}", json={"policy": policy}).raise_for_status()
    client = make_client(cached_policies=3, breaker_fail_max=100)
    for policy_id in ids:
        assert client.policy_status(policy_id).status == "active"
    add_fault(admin, kind="outage", endpoint="insurer.*")
    assert all(client.policy_status(policy_id).from_cache for policy_id in ids[2:])
    for policy_id in ids[:2]:  # the least recently fetched were dropped
        with pytest.raises(InsuranceServiceUnavailableError):
            client.policy_status(policy_id)
    with pytest.raises(ValueError):
        make_client(cached_policies=0)


def test_without_cache_an_unreachable_insurer_is_unavailable(make_client: Callable, sandbox: SandboxServer,
                                                             clock: FakeClock) -> None:
    client = make_client(breaker_fail_max=10)
    client.policy_status()
    sandbox.stop()  # nothing listens on the port: connection refused
    try:
        cached = client.policy_status()
        assert cached.from_cache
        with pytest.raises(InsuranceServiceUnavailableError) as caught:
            client.certificate_status(1)
        assert caught.value.detail["last_failure"].startswith("transport: ConnectError")
        with pytest.raises(InsuranceCacheStaleError):
            make_client().cached_policy_status()
        with pytest.raises(InsuranceServiceUnavailableError):
            make_client().policy_status()
    finally:
        sandbox.start()


# --- circuit breaker -----------------------------------------------------------------------


def test_breaker_opens_after_repeated_failures_and_half_opens_after_the_reset_timeout(
        make_client: Callable, admin: httpx.Client, clock: FakeClock) -> None:
    changes: list[tuple[str, str]] = []
    client = make_client(breaker_fail_max=3, breaker_reset_s=30, on_breaker_change=lambda a, b: changes.append((a, b)))
    error = add_fault(admin, kind="error", endpoint="insurer.*")
    with pytest.raises(InsuranceCircuitOpenError):  # the third failed attempt trips it
        client.certificate_status(1)
    assert client.breaker_state() == "open" and len(requests_to(admin)) == 3
    with pytest.raises(InsuranceCircuitOpenError) as open_error:
        client.certificate_status(1)
    assert open_error.value.code == "insurance_circuit_open" and len(requests_to(admin)) == 3  # not attempted
    clock.advance(30)
    with pytest.raises(InsuranceCircuitOpenError):  # the half-open trial fails: open again
        client.certificate_status(1)
    assert len(requests_to(admin)) == 4 and client.breaker_state() == "open"
    admin.delete(f"/admin/faults/{error}").raise_for_status()
    clock.advance(29)
    with pytest.raises(InsuranceCircuitOpenError):
        client.policy_status()
    clock.advance(1)
    assert client.policy_status().status == "active"  # the trial succeeds: closed
    assert client.breaker_state() == "closed"
    assert changes == [("closed", "open"), ("open", "half-open"), ("half-open", "open"),
                       ("open", "half-open"), ("half-open", "closed")]


def test_4xx_answers_do_not_count_against_the_breaker(make_client: Callable, admin: httpx.Client) -> None:
    client = make_client(breaker_fail_max=2)
    for _ in range(4):
        with pytest.raises(PolicyNotFoundError):
            client.policy_status("missing")
    assert client.breaker_state() == "closed"


def test_an_open_breaker_falls_back_to_a_fresh_cache(make_client: Callable, admin: httpx.Client) -> None:
    client = make_client(breaker_fail_max=1)
    client.policy_status()
    add_fault(admin, kind="error", endpoint="insurer.*")
    assert client.policy_status().from_cache
    assert client.breaker_state() == "open"
    assert client.policy_status().from_cache


# --- signatures ----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["corrupt", "missing", "unknown_key"])
def test_bad_signatures_are_rejected_never_retried_never_masked_by_cache(
        make_client: Callable, admin: httpx.Client, mode: str) -> None:
    client = make_client()
    client.policy_status()
    add_fault(admin, kind="bad_signature", endpoint="insurer.*", mode=mode)
    with pytest.raises(InsurerSignatureInvalidError) as caught:
        client.policy_status()
    assert caught.value.code == "insurer_signature_invalid"
    with pytest.raises(InsurerSignatureInvalidError):
        client.renew(csr())
    assert len(requests_to(admin)) == 3
    assert client.breaker_state() == "closed"


def test_an_error_answer_with_a_bad_signature_is_not_trusted(make_client: Callable, admin: httpx.Client) -> None:
    add_fault(admin, kind="bad_signature", endpoint="insurer.*")
    with pytest.raises(InsurerSignatureInvalidError):
        make_client().policy_status("no-such-policy")  # a forged "not found" must not count as one


# --- certificates --------------------------------------------------------------------------


def test_renew_returns_a_certificate_for_the_csr_key_under_the_policy(
        make_client: Callable, sandbox: SandboxServer, admin: httpx.Client) -> None:
    key, request = generate_key_and_csr("insured-daemon")
    add_fault(admin, kind="outage", endpoint="insurer.renew_certificate", times=1)
    pem = make_client().renew(request.public_bytes(serialization.Encoding.PEM))
    certificate = x509.load_pem_x509_certificate(pem)
    assert certificate.public_key().public_numbers() == key.public_key().public_numbers()
    assert Policy.from_certificate(certificate) == sample_policy()
    ca = x509.load_pem_x509_certificate(admin.get("/insurer/v1/ca").json()["certificate_pem"].encode())
    certificate.verify_directly_issued_by(ca)
    assert [e["status"] for e in requests_to(admin, "insurer.renew_certificate")] == [503, 201]


def test_renew_with_expired_certificate_fault_delivers_an_expired_certificate(
        make_client: Callable, admin: httpx.Client) -> None:
    add_fault(admin, kind="expired_certificate", endpoint="insurer.renew_certificate")
    certificate = x509.load_pem_x509_certificate(make_client().renew(csr()))
    assert certificate.not_valid_after_utc < datetime.now(timezone.utc)


def test_revocation_status_is_reported(make_client: Callable, admin: httpx.Client) -> None:
    client = make_client()
    add_fault(admin, kind="revoked_certificate", endpoint="insurer.renew_certificate", times=1)
    revoked = x509.load_pem_x509_certificate(client.renew(csr()))
    good = x509.load_pem_x509_certificate(client.renew(csr()))
    assert client.certificate_status(revoked.serial_number).status == "revoked"
    assert client.certificate_status(good.serial_number).status == "valid"
    admin.post(f"/insurer/v1/certificates/{good.serial_number:x}/revoke", json={"reason": "superseded"}
               ).raise_for_status()
    status = client.certificate_status(good.serial_number)
    assert (status.status, status.reason) == ("revoked", "superseded")
    with pytest.raises(InsuranceRevokedError):
        client.renew(csr(), current_serial=good.serial_number)
    with pytest.raises(CertificateNotFoundError):
        client.certificate_status(0xABC)


def test_renew_under_a_revoked_policy_is_refused(make_client: Callable, admin: httpx.Client) -> None:
    admin.put(f"/admin/policies/{POLICY_ID}", json={"policy": sample_policy().to_dict(), "status": "revoked"}
              ).raise_for_status()
    with pytest.raises(InsuranceRevokedError):
        make_client().renew(csr())


def test_cert_manager_renews_through_the_client_and_keeps_the_old_certificate_on_bad_answers(
        make_client: Callable, admin: httpx.Client, tmp_path: Any) -> None:
    client = make_client()
    anchor = x509.load_pem_x509_certificate(admin.get("/insurer/v1/ca").json()["certificate_pem"].encode())
    key, request = generate_key_and_csr("insured-daemon")
    manager = CertManager(tmp_path, CertificateVerifier(anchor), renewer=client)
    manager.install(client.renew(request.public_bytes(serialization.Encoding.PEM)),
                    key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
    renewed = manager.renew()
    assert renewed.renewed and renewed.error is None
    expected = {"expired_certificate": "cert_expired", "bad_signature": "insurer_signature_invalid",
                "outage": "insurance_service_unavailable"}
    for kind, code in expected.items():
        admin.put("/admin/faults", json={"faults": [{"kind": kind, "endpoint": "insurer.renew_certificate"}]}
                  ).raise_for_status()
        failed = manager.renew()
        assert not failed.renewed and manager.current == renewed.certificate
        assert failed.error.code == code


def test_steps_yield_the_waits_between_attempts_instead_of_sleeping(make_client: Callable, admin: httpx.Client) -> None:
    """What the actor drives with timers: the same retries, the waits handed back to the caller."""
    add_fault(admin, kind="outage", endpoint="insurer.policy_status", retry_after_s=0.3, times=2)
    client = make_client(sleep=lambda seconds: pytest.fail("the steps must not sleep"))
    steps = client.policy_status_steps()
    waits = [next(steps), steps.send(None)]
    with pytest.raises(StopIteration) as done:
        steps.send(None)
    assert waits == [0.3, 0.3] and done.value.value.status == "active"
    assert [e["status"] for e in requests_to(admin)] == [503, 503, 200]
    assert make_client(timeout_s=5.0, retry=RetryPolicy()).max_call_duration_s == 3 * 5 + 2 * 8


# --- pure parts ----------------------------------------------------------------------------


@given(retry=st.integers(1, 10), seed=st.integers(0, 2**32), base=st.floats(0, 10), cap=st.floats(0, 60),
       jitter=st.floats(0, 1))
def test_backoff_is_exponential_jittered_and_capped(retry: int, seed: int, base: float, cap: float,
                                                    jitter: float) -> None:
    policy = RetryPolicy(base_s=base, cap_s=cap, jitter=jitter)
    nominal = min(cap, base * 2 ** (retry - 1))
    assert nominal <= policy.backoff(retry, random.Random(seed)) <= min(cap, nominal * (1 + jitter))


def test_default_backoff_is_specs_1_2_4_capped_at_8() -> None:
    policy, rng = RetryPolicy(jitter=0), random.Random(0)
    assert [policy.backoff(n, rng) for n in (1, 2, 3, 4, 5)] == [1, 2, 4, 8, 8]
    assert (policy.attempts, RetryPolicy().jitter > 0) == (3, True)


@given(st.text(max_size=40))
def test_any_retry_after_header_parses_to_none_or_non_negative_seconds(value: str) -> None:
    seconds = _parse_retry_after(value)
    assert seconds is None or seconds >= 0


def test_retry_after_accepts_seconds_and_http_dates() -> None:
    assert _parse_retry_after("3") == 3.0
    assert _parse_retry_after("-1") is None
    assert _parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert 50 < _parse_retry_after(
        (datetime.now(timezone.utc) + timedelta(seconds=60)).strftime("%a, %d %b %Y %H:%M:%S GMT")) <= 60
