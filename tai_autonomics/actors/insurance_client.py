"""InsuranceClient actor: the daemon's one connection to the insurer (docs/specification.md §5).

It wraps one :class:`tai_autonomics.trust.insurer_client.InsuranceClient`, so the whole daemon
shares one circuit breaker and one policy-status cache.

Calls (payloads and replies are plain JSON-like values):

=========================  ==============================  =========================================
type                       payload                         reply
=========================  ==============================  =========================================
``policy_status``          ``{"policy_id"?: str}``         policy dict (below); a fresh cache entry
                                                           while the insurer is unavailable
``verify_policy``          ``{"policy_id"?: str}``         policy dict, refused unless ``active``
``cached_policy_status``   ``{"policy_id"?: str}``         policy dict from the cache, no network
``renew``                  ``{"csr_pem": str}``            ``{"certificate_pem": str}``
``certificate_status``     ``{"serial": str (hex) | int}`` ``{"serial", "policy_id", "status",
                                                           "not_after", "revoked_at", "reason"}``
``breaker_state``          —                               ``{"state": "closed"|"open"|"half-open"}``
``status``                 —                               ``{"configured", "url", "policy_id",
                                                           "breaker_state", "cache", "in_flight",
                                                           "call_timeout_s", "cache_lookups",
                                                           "request_seconds"}``
=========================  ==============================  =========================================

Policy dict: ``{"policy_id", "status" (active|revoked|expired), "as_of", "from_cache", "age_s",
"detail"}``. ``status.cache`` is ``null`` before the first answer, else ``{"status", "age_s",
"fresh"}`` for the configured policy. For the gateway's ``/metrics`` (asked at each scrape, so
reading it counts nothing): ``status.cache_lookups`` is ``{"hit", "miss"}`` (the policy-status
cache asked for an answer, since this incarnation started) and ``status.request_seconds`` the
insurer HTTP attempts' durations, ``{"buckets": [[le, count], ...], "count", "sum"}``; both
``null`` when unconfigured.

Refusals carry the core client's codes (docs/sandbox.md): ``insurance_service_unavailable``,
``insurance_circuit_open``, ``rate_limited``, ``insurance_cache_stale``, ``policy_not_found``,
``insurance_expired``, ``insurance_revoked``, ``certificate_not_found``, ``insurer_rejected``,
``insurer_response_invalid``, ``insurer_signature_invalid``; plus ``invalid_request`` (bad
payload) and ``insurance_not_configured`` (no insurer in the context, outside prod).

Retries never block the actor: each operation runs as the core's *steps*, and the backoff
between attempts is a timer, so ``status``, ``breaker_state`` and ``cached_policy_status`` are
answered during an insurer outage at once. One HTTP attempt still occupies the actor for up to
its timeout (5 s). A network call can take up to :data:`CALL_TIMEOUT_S` - 3 attempts timing out
plus the longest waits between them - so **callers of the network calls must use**
``timeout=CALL_TIMEOUT_S``; a configuration whose schedule could take longer fails the start.

Args (the worker's ``args`` in supervision.toml, all optional): ``timeout_s`` (5),
``attempts`` (3), ``backoff_base_s`` (1), ``backoff_cap_s`` (8), ``max_retry_after_s`` (8),
``breaker_fail_max`` (5), ``breaker_reset_s`` (30), ``cache_ttl_s`` (3600). From
``args["context"]``: ``mode`` (default ``"eval"``) and ``insurer`` = ``{"url",
"public_key_file", "policy_id"}``, where ``url_env`` / ``policy_id_env`` may name environment
variables holding the value instead (as rel/prod.toml does); without them the actor starts
unconfigured (refusing calls with ``insurance_not_configured``), except in ``prod``, where the
start fails naming what is missing.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tai_autonomics.errors import InvalidRequest, TaiError
from tai_autonomics.runtime import NOREPLY, ActorCrashed, Caller, Server
from tai_autonomics.trust import insurer_client as core
from tai_autonomics.trust.insurer_client import InsuranceCacheStaleError, RetryPolicy, Steps
from tai_autonomics.validation import valid_int, valid_seconds

CALL_TIMEOUT_S = 35.0
"""The timeout callers must give the network calls (the default schedule's worst case is 31 s)."""


class InsuranceNotConfigured(TaiError):
    """No insurer is configured (its URL or public key is missing): prod cannot start, eval cannot ask."""

    code = "insurance_not_configured"


@dataclass(frozen=True)
class _Resume:
    ref: str


@dataclass
class _InFlight:
    steps: Steps[Any]
    render: Callable[[Any], Any]
    caller: Caller


class InsuranceClient(Server):
    """See the module docstring."""

    def init(self, args: dict[str, Any]) -> None:
        self._in_flight: dict[str, _InFlight] = {}
        self._client: core.InsuranceClient | None = None
        self._url = ""
        context = args.get("context") or {}
        insurer = context.get("insurer") or {}
        settings = {key: _setting(insurer, key) for key in ("url", "public_key_file", "policy_id")}
        missing = [_describe(insurer, key) for key, value in settings.items() if not value]
        if missing:
            if context.get("mode") == "prod":
                raise InsuranceNotConfigured(f"prod mode needs the insurer's {', '.join(missing)} in the context")
            return
        retry = RetryPolicy(attempts=valid_int(args.get("attempts", 3), "attempts", minimum=1),
                            base_s=valid_seconds(args.get("backoff_base_s", 1.0), "backoff_base_s"),
                            cap_s=valid_seconds(args.get("backoff_cap_s", 8.0), "backoff_cap_s"),
                            max_retry_after_s=valid_seconds(args.get("max_retry_after_s", 8.0), "max_retry_after_s"))
        timeout_s = valid_seconds(args.get("timeout_s", core.DEFAULT_TIMEOUT_S), "timeout_s", positive=True)
        breaker_fail_max = valid_int(args.get("breaker_fail_max", 5), "breaker_fail_max", minimum=1)
        breaker_reset_s = valid_seconds(args.get("breaker_reset_s", 30.0), "breaker_reset_s")
        cache_ttl_s = valid_seconds(args.get("cache_ttl_s", core.DEFAULT_CACHE_TTL_S), "cache_ttl_s")
        keys = core.load_public_keys(Path(settings["public_key_file"]).read_bytes())  # args checked first
        client = core.InsuranceClient(settings["url"], settings["policy_id"], keys, timeout_s=timeout_s, retry=retry,
                                      breaker_fail_max=breaker_fail_max, breaker_reset_s=breaker_reset_s,
                                      cache_ttl_s=cache_ttl_s)
        if client.max_call_duration_s > CALL_TIMEOUT_S:
            client.close()
            raise ValueError(f"the retry schedule can take {client.max_call_duration_s:g} s, longer than the "
                             f"{CALL_TIMEOUT_S:g} s callers wait (CALL_TIMEOUT_S); shorten timeout_s or the backoff")
        self._client, self._url = client, settings["url"]

    def terminate(self, reason: str) -> None:
        for flight in self._in_flight.values():
            self.reply(flight.caller, error=ActorCrashed(f"{self.name} stopped before the insurer answered ({reason})",
                                                         detail={"actor": self.name}))
        self._in_flight.clear()
        if self._client is not None:
            self._client.close()

    # --- calls ----------------------------------------------------------------------------

    def call_policy_status(self, payload: Any) -> Any:
        return self._run(self._core().policy_status_steps(_policy_id(payload)), _policy)

    def call_verify_policy(self, payload: Any) -> Any:
        return self._run(self._core().verify_policy_steps(_policy_id(payload)), _policy)

    def call_cached_policy_status(self, payload: Any) -> dict[str, Any]:
        return _policy(self._core().cached_policy_status(_policy_id(payload)))

    def call_renew(self, payload: Any) -> Any:
        csr_pem = payload.get("csr_pem") if isinstance(payload, dict) else None
        if not isinstance(csr_pem, str) or not csr_pem.isascii():
            raise InvalidRequest("renew needs {'csr_pem': <PEM text>}")
        return self._run(self._core().renew_steps(csr_pem.encode("ascii")),
                         lambda pem: {"certificate_pem": pem.decode("ascii")})

    def call_certificate_status(self, payload: Any) -> Any:
        serial = payload.get("serial") if isinstance(payload, dict) else None
        if not (isinstance(serial, int) and serial > 0) and not (isinstance(serial, str) and _is_hex(serial)):
            raise InvalidRequest("certificate_status needs {'serial': <positive int or hex string>}")
        return self._run(self._core().certificate_status_steps(serial), asdict)

    def call_breaker_state(self, payload: Any) -> dict[str, str]:
        return {"state": self._core().breaker_state()}

    def call_status(self, payload: Any) -> dict[str, Any]:
        client = self._client
        if client is None:
            return {"configured": False, "url": None, "policy_id": None, "breaker_state": None, "cache": None,
                    "in_flight": 0, "call_timeout_s": CALL_TIMEOUT_S, "cache_lookups": None, "request_seconds": None}
        try:
            cached = client.peek_policy_status()
            cache: dict[str, object] | None = {"status": cached.status, "age_s": cached.age_s, "fresh": True}
        except InsuranceCacheStaleError as stale:
            age = stale.detail["age_s"]
            cache = None if age is None else {"status": stale.detail["last_status"], "age_s": age, "fresh": False}
        return {"configured": True, "url": self._url, "policy_id": client.policy_id,
                "breaker_state": client.breaker_state(), "cache": cache, "in_flight": len(self._in_flight),
                "call_timeout_s": CALL_TIMEOUT_S, "cache_lookups": dict(client.cache_lookups),
                "request_seconds": client.request_durations.snapshot()}

    def inspect_state(self) -> dict[str, Any]:
        return self.call_status(None)

    # --- running steps on timers ----------------------------------------------------------

    def _core(self) -> core.InsuranceClient:
        if self._client is None:
            raise InsuranceNotConfigured("no insurer is configured (context 'insurer': url, public_key_file, "
                                         "policy_id)")
        return self._client

    def _run(self, steps: Steps[Any], render: Callable[[Any], Any]) -> Any:
        """Start an operation; its caller is answered when the steps end (return NOREPLY)."""
        self._advance(uuid.uuid4().hex, _InFlight(steps, render, self.caller))
        return NOREPLY

    def _advance(self, ref: str, flight: _InFlight) -> None:
        try:
            delay = flight.steps.send(None)
        except StopIteration as done:
            self.reply(flight.caller, flight.render(done.value))
        except TaiError as refusal:
            self.reply(flight.caller, error=refusal)
        else:
            self._in_flight[ref] = flight
            self.start_timer(delay, _Resume(ref))

    def on_timer(self, payload: Any) -> None:
        if isinstance(payload, _Resume) and payload.ref in self._in_flight:
            flight = self._in_flight.pop(payload.ref)
            try:
                self._advance(payload.ref, flight)
            except Exception as bug:  # its caller hears of it now; then the actor crashes and restarts
                self.reply(flight.caller, error=bug)
                raise


def _setting(section: dict[str, Any], key: str) -> Any:
    """``section[key]``, or the environment variable named by ``section[key + "_env"]`` (release files name
    deployment-specific values that way)."""
    if section.get(key):
        return section[key]
    variable = section.get(f"{key}_env")
    return os.environ.get(variable) if variable else None


def _describe(section: dict[str, Any], key: str) -> str:
    variable = section.get(f"{key}_env")
    return f"{key} (environment variable {variable} is not set)" if variable else key


def _policy_id(payload: Any) -> str | None:
    policy_id = payload.get("policy_id") if isinstance(payload, dict) else None
    if policy_id is not None and (not isinstance(policy_id, str) or not policy_id):
        raise InvalidRequest("policy_id must be a non-empty string")
    return policy_id


def _policy(status: core.PolicyStatus) -> dict[str, Any]:
    return {"policy_id": status.policy_id, "status": status.status, "as_of": status.as_of,
            "from_cache": status.from_cache, "age_s": status.age_s, "detail": dict(status.detail)}


def _is_hex(text: str) -> bool:
    return 0 < len(text) <= 40 and all(c in "0123456789abcdefABCDEF" for c in text)
