"""InsuranceClient: the daemon's only way to talk to the insurer's HTTP API (docs/specification.md §5).

A plain class; the InsuranceClient actor wraps one instance. Per call:

- each HTTP attempt has a timeout (5 s) and runs inside a ``pybreaker`` circuit breaker: after
  ``breaker_fail_max`` transient failures in a row it opens and calls fail at once with
  :class:`InsuranceCircuitOpenError`; after ``breaker_reset_s`` one trial call is let through
  (half-open), whose outcome closes or re-opens it. State changes are logged, passed to
  ``on_breaker_change`` and readable with :meth:`InsuranceClient.breaker_state`;
- transient failures (connect errors, timeouts, dropped connections, 5xx, 429) are retried, up to
  ``attempts`` in all, after an exponential backoff with jitter (1 s, 2 s, 4 s..., capped at
  8 s); a ``Retry-After`` on 429/503 is waited out instead when it is longer, and when it is
  longer than ``max_retry_after_s`` the call gives up at once and says so. Other 4xx answers
  are never retried;
- every answer that is acted on (2xx and 4xx) must carry a valid insurer signature over the exact
  body bytes, or the call fails with ``insurer_signature_invalid`` — never accepted, never
  retried, never replaced by a cached answer;
- policy status is cached for ``cache_ttl_s`` (1 h): while the insurer is unavailable a fresh
  entry is returned (``from_cache=True``), a stale one raises :class:`InsuranceCacheStaleError`
  (which sends prod mode to ``read_only``); at most ``cached_policies`` (1,000) policies are
  held, the least recently fetched dropped first.

For ``/metrics`` (the gateway asks the actor's ``status``, as it cannot see these from its own
process): :attr:`InsuranceClient.request_durations` times every HTTP attempt, and
:attr:`InsuranceClient.cache_lookups` counts each time the cache is asked for an answer — a
``hit`` (fresh entry) or a ``miss`` (none, or stale). The cache is a fallback, asked only when the
insurer is unavailable or by :meth:`InsuranceClient.cached_policy_status`; a miss then means the
cache could not cover for the insurer.

Time is injectable: ``clock`` (monotonic seconds, for the cache and the breaker), ``sleep`` (the
backoff waits) and ``rng`` (jitter), so tests run scaled-down schedules with a fake clock.

Every network operation also exists as *steps* (``policy_status_steps`` etc.): a generator that
yields the seconds to wait before its next attempt and returns the result (or raises the typed
error). The plain methods drive the steps with ``sleep``; the InsuranceClient actor drives them
with timers, so it keeps answering other calls between attempts instead of sleeping. Either way
one operation ends within :attr:`InsuranceClient.max_call_duration_s` (nominally).
"""

from __future__ import annotations

import bisect
import json
import logging
import random
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
import pybreaker
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from tai_autonomics import logs
from tai_autonomics.retry_after import parse_retry_after as _parse_retry_after
from tai_autonomics.trust.insurer_errors import (
    CertificateNotFoundError,
    InsuranceCacheStaleError,
    InsuranceCircuitOpenError,
    InsuranceError,
    InsuranceExpiredError,
    InsuranceRevokedError,
    InsuranceServiceUnavailableError,
    InsurerKeyInvalidError,
    InsurerRejectedError,
    InsurerResponseInvalidError,
    InsurerSignatureInvalidError,
    PolicyNotFoundError,
    RateLimitedError,
)
from tai_autonomics.trust.insurer_signature import load_public_keys, verify_body

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 5.0
DEFAULT_CACHE_TTL_S = 3600.0
# policy statuses kept, the least recently fetched dropped first: a caller may ask about any
# policy the insurer knows, so the cache is bounded by this, not by the policies asked about so far
DEFAULT_CACHED_POLICIES = 1_000
API_PREFIX = "/insurer/v1"
REQUEST_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""Upper bounds of :class:`RequestDurations`: 1 s is one of them, the alert rules' insurer latency threshold."""


@dataclass(frozen=True)
class RetryPolicy:
    """Attempts and backoff; the defaults are docs/specification.md §5's. Tests scale the seconds down."""

    attempts: int = 3
    base_s: float = 1.0
    factor: float = 2.0
    cap_s: float = 8.0
    jitter: float = 0.2  # up to this fraction of the delay is added at random
    max_retry_after_s: float = 8.0

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.base_s < 0 or self.factor < 1 or self.cap_s < 0 or not 0 <= self.jitter <= 1:
            raise ValueError(f"invalid retry policy {self!r}")

    def longest_wait_s(self) -> float:
        """The longest single wait between two attempts (a backoff or an accepted Retry-After)."""
        return max(self.cap_s, self.max_retry_after_s)

    def backoff(self, retry: int, rng: random.Random) -> float:
        """Seconds to wait before retry number ``retry`` (1 for the second attempt)."""
        nominal = min(self.cap_s, self.base_s * self.factor ** (retry - 1))
        return min(self.cap_s, nominal * (1.0 + self.jitter * rng.random()))


T = TypeVar("T")

Steps = Generator[float, None, T]
"""A network operation in steps: yields seconds to wait before continuing, returns the result."""


def run_steps(steps: Steps[T], sleep: Callable[[float], None]) -> T:
    """Drive ``steps`` to the end, waiting each yielded delay with ``sleep``; its result or its error."""
    try:
        delay = next(steps)
        while True:
            sleep(delay)
            delay = steps.send(None)
    except StopIteration as done:
        return done.value


@dataclass(frozen=True)
class PolicyStatus:
    policy_id: str
    status: str  # active | revoked | expired
    as_of: str  # the insurer's time of the answer (RFC 3339)
    fetched_at: float  # client clock when it was fetched
    from_cache: bool
    age_s: float
    detail: dict[str, Any] = field(default_factory=dict, compare=False)  # period_end, revoked_at, reason


@dataclass(frozen=True)
class CertificateStatus:
    serial: str  # lowercase hex
    policy_id: str
    status: str  # valid | revoked | expired
    not_after: str
    revoked_at: str | None = None
    reason: str | None = None


class RequestDurations:
    """How long HTTP attempts took, in cumulative buckets (a Prometheus histogram's form).

    Counted where the requests are made, in the InsuranceClient actor's process, and sent to the
    gateway in the actor's ``status``: the gateway renders it as a histogram at each scrape. It
    starts at zero with the actor, which Prometheus reads as a counter reset.
    """

    def __init__(self, bounds: tuple[float, ...] = REQUEST_BUCKETS_S) -> None:
        self.bounds = bounds
        self._counts = [0] * (len(bounds) + 1)  # the last: above every bound
        self._sum = 0.0

    def observe(self, seconds: float) -> None:
        self._counts[bisect.bisect_left(self.bounds, seconds)] += 1  # a bound is inclusive (``le``)
        self._sum += seconds

    def snapshot(self) -> dict[str, Any]:
        """``{"buckets": [[upper bound, attempts ≤ it], ...], "count", "sum"}`` (JSON, cumulative)."""
        cumulative, total = [], 0
        for bound, count in zip(self.bounds, self._counts, strict=False):
            total += count
            cumulative.append([bound, total])
        return {"buckets": cumulative, "count": total + self._counts[-1], "sum": self._sum}


class _Transient(Exception):
    """One attempt failed in a way worth retrying (counted by the circuit breaker)."""

    def __init__(self, reason: str, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason, self.status, self.retry_after = reason, status, retry_after


class _ClockedStorage(pybreaker.CircuitMemoryStorage):
    """pybreaker reads wall time for the open → half-open timeout; this makes it read ``clock`` instead.

    ``opened_at`` is reported as "now minus the clock time elapsed since opening", which is what
    pybreaker compares against ``reset_timeout``.
    """

    def __init__(self, clock: Callable[[], float]) -> None:
        super().__init__(pybreaker.STATE_CLOSED)
        self._clock = clock
        self._opened_clock: float | None = None

    @property
    def opened_at(self) -> datetime | None:
        if self._opened_clock is None:
            return None
        return datetime.now(timezone.utc) - timedelta(seconds=self._clock() - self._opened_clock)

    @opened_at.setter
    def opened_at(self, _wall: datetime) -> None:
        self._opened_clock = self._clock()


class _BreakerLog(pybreaker.CircuitBreakerListener):
    def __init__(self, notify: Callable[[str | None, str], None] | None) -> None:
        self._notify = notify

    def state_change(self, cb: pybreaker.CircuitBreaker, old_state: Any, new_state: Any) -> None:
        old = old_state.name if old_state is not None else None
        logs.event(log, "insurer circuit breaker state changed", logging.WARNING, old_state=old,
                   new_state=new_state.name, fail_counter=cb.fail_counter)
        if self._notify is not None:
            self._notify(old, new_state.name)


@dataclass
class _CacheEntry:
    status: PolicyStatus
    fetched_at: float


class InsuranceClient:
    """Talks to one insurer about one policy; see the module docstring for the guarantees.

    Not thread-safe: one instance belongs to one caller (the InsuranceClient actor). ``close()``
    releases its connections.
    """

    def __init__(
        self,
        base_url: str,
        policy_id: str,
        insurer_keys: Mapping[str, Ed25519PublicKey],
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        retry: RetryPolicy = RetryPolicy(),
        breaker_fail_max: int = 5,
        breaker_reset_s: float = 30.0,
        cache_ttl_s: float = DEFAULT_CACHE_TTL_S,
        cached_policies: int = DEFAULT_CACHED_POLICIES,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        on_breaker_change: Callable[[str | None, str], None] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not insurer_keys:
            raise ValueError("at least one insurer public key is needed to check insurer signatures")
        self.policy_id = policy_id
        self._keys = dict(insurer_keys)
        self._retry, self._timeout_s = retry, timeout_s
        self._cache_ttl_s = cache_ttl_s
        self._clock, self._sleep = clock, sleep
        self._rng = rng or random.Random()
        if cached_policies < 1:
            raise ValueError("cached_policies must be at least 1")
        self._cache: OrderedDict[str, _CacheEntry] = OrderedDict()
        self._cached_policies = cached_policies
        self.cache_lookups = {"hit": 0, "miss": 0}
        self.request_durations = RequestDurations()
        self._http = httpx.Client(base_url=base_url.rstrip("/") + API_PREFIX, timeout=timeout_s, transport=transport)
        self._breaker = pybreaker.CircuitBreaker(
            fail_max=breaker_fail_max, reset_timeout=breaker_reset_s,
            exclude=[lambda exc: not isinstance(exc, _Transient)],
            state_storage=_ClockedStorage(clock), listeners=[_BreakerLog(on_breaker_change)], name="insurer",
        )

    # --- lifecycle -------------------------------------------------------------------------

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> InsuranceClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def max_call_duration_s(self) -> float:
        """How long one operation can take: every attempt timing out, the longest wait between each.

        Nominal: httpx applies ``timeout_s`` per phase (connect, write, each read), so a server
        that trickles its answer can stretch one attempt further.
        """
        attempts = self._retry.attempts
        return attempts * self._timeout_s + (attempts - 1) * self._retry.longest_wait_s()

    def breaker_state(self) -> str:
        """``closed``, ``open`` or ``half-open`` (open turns half-open at the first call after the timeout)."""
        return self._breaker.current_state

    # --- policy status ---------------------------------------------------------------------

    def policy_status(self, policy_id: str | None = None) -> PolicyStatus:
        """Ask the insurer; if it is unavailable, answer from a fresh cache entry or raise.

        Raises PolicyNotFoundError, InsurerSignatureInvalidError, InsuranceCacheStaleError (insurer
        unavailable, cache older than the TTL), or the unavailability error when nothing is cached.
        """
        return run_steps(self.policy_status_steps(policy_id), self._sleep)

    def policy_status_steps(self, policy_id: str | None = None) -> Steps[PolicyStatus]:
        """:meth:`policy_status` in steps (see the module docstring)."""
        policy_id = policy_id or self.policy_id
        try:
            body = yield from self._call_steps("GET", f"/policies/{quote(policy_id, safe='')}")
        except PolicyNotFoundError:
            self._cache.pop(policy_id, None)
            raise
        except InsuranceServiceUnavailableError as unavailable:
            if policy_id not in self._cache:
                self.cache_lookups["miss"] += 1
                raise
            try:
                cached = self.cached_policy_status(policy_id)
            except InsuranceCacheStaleError as stale:
                stale.detail["insurer_error"] = unavailable.code
                raise
            logs.event(log, "insurer unavailable; using the cached policy status", logging.WARNING,
                       policy_id=policy_id, age_s=round(cached.age_s, 3), reason=unavailable.code)
            return cached
        now = self._clock()
        status = PolicyStatus(
            policy_id=_field(body, "policy_id", str), status=_field(body, "status", str),
            as_of=_field(body, "as_of", str),
            fetched_at=now, from_cache=False, age_s=0.0,
            detail={k: body[k] for k in ("period_end", "revoked_at", "reason") if k in body},
        )
        if status.policy_id != policy_id or status.status not in ("active", "revoked", "expired"):
            raise InsurerResponseInvalidError("the insurer answered about another policy or with an unknown status",
                                              detail={"policy_id": status.policy_id, "status": status.status})
        self._cache[policy_id] = _CacheEntry(status, now)
        self._cache.move_to_end(policy_id)
        while len(self._cache) > self._cached_policies:
            self._cache.popitem(last=False)
        return status

    def cached_policy_status(self, policy_id: str | None = None) -> PolicyStatus:
        """The cached status if it is younger than the TTL; no network. Raises InsuranceCacheStaleError.

        Counted in :attr:`cache_lookups`; :meth:`peek_policy_status` is the same answer, uncounted.
        """
        try:
            status = self.peek_policy_status(policy_id)
        except InsuranceCacheStaleError:
            self.cache_lookups["miss"] += 1
            raise
        self.cache_lookups["hit"] += 1
        return status

    def peek_policy_status(self, policy_id: str | None = None) -> PolicyStatus:
        """:meth:`cached_policy_status` without counting a lookup: for reporting the cache's state
        (the actor's ``status``, asked at every scrape, must not turn the hit rate into a scrape rate)."""
        policy_id = policy_id or self.policy_id
        entry = self._cache.get(policy_id)
        if entry is None:
            raise InsuranceCacheStaleError(f"no policy status for {policy_id!r} has been fetched from the insurer",
                                           detail={"policy_id": policy_id, "age_s": None, "ttl_s": self._cache_ttl_s})
        age = self._clock() - entry.fetched_at
        if age >= self._cache_ttl_s:
            raise InsuranceCacheStaleError(
                f"the cached policy status is {age:.0f} s old (TTL {self._cache_ttl_s:.0f} s) and the insurer "
                "cannot confirm it", detail={"policy_id": policy_id, "age_s": age, "ttl_s": self._cache_ttl_s,
                                            "last_status": entry.status.status})
        return PolicyStatus(**{**entry.status.__dict__, "from_cache": True, "age_s": age})

    def verify_policy(self, policy_id: str | None = None) -> PolicyStatus:
        """:meth:`policy_status`, raising InsuranceRevokedError / InsuranceExpiredError unless it is active."""
        return run_steps(self.verify_policy_steps(policy_id), self._sleep)

    def verify_policy_steps(self, policy_id: str | None = None) -> Steps[PolicyStatus]:
        """:meth:`verify_policy` in steps."""
        status = yield from self.policy_status_steps(policy_id)
        if status.status == "revoked":
            raise InsuranceRevokedError(f"policy {status.policy_id!r} was revoked by the insurer",
                                        detail={"policy_id": status.policy_id, **status.detail})
        if status.status == "expired":
            raise InsuranceExpiredError(f"policy {status.policy_id!r} has expired",
                                        detail={"policy_id": status.policy_id, **status.detail})
        return status

    # --- certificates ----------------------------------------------------------------------

    def renew(self, csr_pem: bytes, *, current_serial: int | str | None = None) -> bytes:
        """A new certificate (PEM) for the CSR's key under this client's policy, for CertManager to validate."""
        return run_steps(self.renew_steps(csr_pem, current_serial=current_serial), self._sleep)

    def renew_steps(self, csr_pem: bytes, *, current_serial: int | str | None = None) -> Steps[bytes]:
        """:meth:`renew` in steps (one Idempotency-Key for all its attempts)."""
        payload: dict[str, Any] = {"csr_pem": csr_pem.decode("ascii")}
        if current_serial is not None:
            payload["current_serial"] = _serial_hex(current_serial)
        path = f"/policies/{quote(self.policy_id, safe='')}/certificates/renew"
        body = yield from self._call_steps("POST", path, json_body=payload, idempotency_key=uuid.uuid4().hex)
        if _field(body, "policy_id", str) != self.policy_id:
            raise InsurerResponseInvalidError("the insurer issued a certificate for another policy",
                                              detail={"policy_id": body["policy_id"]})
        return _field(body, "certificate_pem", str).encode("ascii")

    def certificate_status(self, serial: int | str) -> CertificateStatus:
        """Revocation status of a certificate the insurer issued (``serial`` as int or hex)."""
        return run_steps(self.certificate_status_steps(serial), self._sleep)

    def certificate_status_steps(self, serial: int | str) -> Steps[CertificateStatus]:
        """:meth:`certificate_status` in steps."""
        body = yield from self._call_steps("GET", f"/certificates/{quote(_serial_hex(serial), safe='')}")
        return CertificateStatus(
            serial=_field(body, "serial", str), policy_id=_field(body, "policy_id", str),
            status=_field(body, "status", str), not_after=_field(body, "not_after", str),
            revoked_at=body.get("revoked_at"), reason=body.get("reason"),
        )

    # --- transport -------------------------------------------------------------------------

    def _call_steps(self, method: str, path: str, *, json_body: dict[str, Any] | None = None,
                    idempotency_key: str | None = None) -> Steps[dict[str, Any]]:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self._breaker.call(self._attempt, method, path, json_body, headers)
            except pybreaker.CircuitBreakerError:
                raise InsuranceCircuitOpenError(
                    "the insurer circuit breaker is open after repeated failures; not calling the insurer",
                    detail={"path": path, "breaker_state": self.breaker_state()},
                ) from None
            except _Transient as failure:
                delay = self._delay_before_retry(attempt, failure)
                if delay is None:
                    raise _unavailable(failure, path, attempt) from None
                logs.event(log, "insurer call failed; retrying", logging.WARNING, path=path, attempt=attempt,
                           reason=failure.reason, delay_s=round(delay, 3))
                yield delay
                continue
            return self._verified(response, path)

    def _delay_before_retry(self, attempt: int, failure: _Transient) -> float | None:
        """Seconds to wait before the next attempt, or None to give up now."""
        if attempt >= self._retry.attempts:
            return None
        backoff = self._retry.backoff(attempt, self._rng)
        if failure.retry_after is None:
            return backoff
        if failure.retry_after > self._retry.max_retry_after_s:
            return None
        return max(backoff, failure.retry_after)

    def _attempt(self, method: str, path: str, json_body: dict[str, Any] | None,
                 headers: dict[str, str]) -> httpx.Response:
        started = time.monotonic()  # real time even with an injected clock: this is the network's latency
        try:
            response = self._http.request(method, path, json=json_body, headers=headers)
        except httpx.TimeoutException as exc:
            raise _Transient(f"timeout: {type(exc).__name__}") from None
        except httpx.TransportError as exc:
            raise _Transient(f"transport: {type(exc).__name__}") from None
        finally:
            self.request_durations.observe(time.monotonic() - started)
        if response.status_code >= 500 or response.status_code == 429:
            retry_after = None
            if response.status_code in (429, 503):
                retry_after = _parse_retry_after(response.headers.get("retry-after"))
            raise _Transient(f"HTTP {response.status_code}", response.status_code, retry_after)
        return response

    def _verified(self, response: httpx.Response, path: str) -> dict[str, Any]:
        verify_body(self._keys, response.content, response.headers)
        try:
            body = json.loads(response.content)
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = None
        if not isinstance(body, dict):
            raise InsurerResponseInvalidError("the insurer's answer is not a JSON object",
                                              detail={"path": path, "status": response.status_code})
        if response.is_success:
            return body
        raise _rejection(response.status_code, body, path)


def _field(body: dict[str, Any], name: str, kind: type) -> Any:
    value = body.get(name)
    if not isinstance(value, kind):
        raise InsurerResponseInvalidError(f"the insurer's answer lacks a valid {name!r}", detail={"field": name})
    return value


def _serial_hex(serial: int | str) -> str:
    return format(serial, "x") if isinstance(serial, int) else serial.lower()


def _unavailable(failure: _Transient, path: str, attempts: int) -> InsuranceServiceUnavailableError:
    detail = {"path": path, "attempts": attempts, "last_failure": failure.reason}
    if failure.retry_after is not None:
        detail["retry_after_s"] = failure.retry_after
    if failure.status == 429:
        return RateLimitedError(f"the insurer is rate limiting us ({failure.reason})", detail=detail)
    return InsuranceServiceUnavailableError(
        f"the insurer is unavailable after {attempts} attempt(s): {failure.reason}", detail=detail)


def _rejection(status: int, body: dict[str, Any], path: str) -> InsuranceError:
    error = _object(body.get("error"))
    code, message = error.get("code"), error.get("message")
    code = code if isinstance(code, str) else ""
    message = message if isinstance(message, str) else f"HTTP {status}"
    insurer_detail = _object(error.get("detail"))
    detail = {"path": path, "status": status, "insurer_code": code, "insurer_detail": insurer_detail}
    if code == "policy_not_found":
        return PolicyNotFoundError(f"the insurer has no such policy: {message}", detail=detail)
    if code == "certificate_not_found":
        return CertificateNotFoundError(f"the insurer has no such certificate: {message}", detail=detail)
    if code == "certificate_revoked" or insurer_detail.get("status") == "revoked":
        return InsuranceRevokedError(f"the insurer refused: {message}", detail=detail)
    if insurer_detail.get("status") == "expired":
        return InsuranceExpiredError(f"the insurer refused: {message}", detail=detail)
    return InsurerRejectedError(f"the insurer refused the request: {message}", detail=detail)


def _object(value: Any) -> dict[str, Any]:
    """``value`` if the insurer sent a JSON object there, else an empty one."""
    return value if isinstance(value, dict) else {}


__all__ = [
    "CertificateNotFoundError", "CertificateStatus", "InsuranceCacheStaleError", "InsuranceCircuitOpenError",
    "InsuranceClient", "InsuranceError", "InsuranceExpiredError", "InsuranceRevokedError",
    "InsuranceServiceUnavailableError", "InsurerKeyInvalidError", "InsurerRejectedError", "InsurerResponseInvalidError",
    "InsurerSignatureInvalidError", "PolicyNotFoundError", "PolicyStatus", "RateLimitedError", "RequestDurations",
    "RetryPolicy",
    "Steps", "load_public_keys", "run_steps",
]
