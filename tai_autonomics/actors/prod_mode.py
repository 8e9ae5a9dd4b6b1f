"""ProdMode: decides the mode at start, keeps it current, and guards every write operation.

At start (a deferred start: the next sibling waits) it subscribes to CertManager's certificate
notices (the ``subscribe`` reply is the certificate and policy, as ``status``) and asks
InsuranceClient to verify the policy; in ``prod`` a failure, or a revoked certificate, fails the
tree's start with the reason, so the daemon exits non-zero saying why (docs/specification.md §2). It keeps no
coverage usage: the ledger reserves coverage in the transaction that records an operation's
intent, against counters every instance shares (docs/specification.md §10), so a start reads no history.

Every ``guard`` re-checks the certificate against the clock itself (a pure check: timers
freeze between requests on Cloud Run), then the mode and the SKU, and answers the SKU's coverage
limit, which the operation's intent reserves against. The certificate it checks is its own copy of
CertManager's, kept current
by CertManager's ``certificate_changed`` notices: a renewal lets deploys through at once, a
revocation (or expiry) sends ``prod`` to ``read_only`` at once. A notice is taken exactly as the
periodic check takes ``status``: the certificate, then the policy with the insurer. The periodic
check (every ``check_interval_s``) stays the safety net: it re-subscribes (idempotent) and moves
``prod`` to ``read_only`` and back (unless ``manual_resume``); it never returns to ``prod`` while
the certificate is revoked. Each transition is a ``mode.changed`` receipt. Each answer of the insurer
is an ``insurance.verified`` or ``insurance.verification_failed`` receipt when the verdict changes,
and at most hourly while it holds (:mod:`tai_autonomics.operations.verdicts`).

The ledger's disk. ReceiptLedger calls ``ledger_unavailable`` when its store stops taking writes
(disk full, file system read-only): ``prod`` goes to ``read_only`` at once, since no write could be
recorded. That transition's receipt cannot be stored yet either: ``mode.changed`` receipts are
recorded one at a time, in order, and one refused with ``ledger_unavailable`` is tried again every
``ledger_retry_s``. That retry is the probe: once it is stored the disk allows again, the mode goes
back to ``prod`` (if insurance holds, and not with ``manual_resume``) and that is recorded next.

CertManager keeps its subscribers in memory, so a restarted CertManager has none: ProdMode
re-subscribes as soon as the CertManager incarnation it called is gone (the runtime's registry
sends every actor that resolved a name a ``Moved`` notice when that incarnation goes, the
runtime's monitor, which calls ``on_down``). The ``subscribe`` reply is taken
like a notice, so a change made by the new incarnation before the re-subscription is not lost.
If re-subscribing fails (CertManager not back within the call's wait), that is a failed
certificate check (``read_only``, as the periodic check would decide), and the next periodic
check subscribes again.

Calls:

=========================  ===========================================  ===========================================
type                       payload                                      reply
=========================  ===========================================  ===========================================
``guard``                  ``{"sku_id", "timeout_s"?}`` or              ``{"mode", "chain", "authority", "limit":
                           ``{"operation": "pricing"}``                 {"limit_count", "limit_cost"}}``; refusals
                                                                        ``mode_refused``, ``cert_validity_too_short``,
                                                                        ``sku_not_authorized``, ``invalid_request``
``mode``                   —                                            ``{"mode", "reason", "configured",
                                                                        "manual_resume"}``
``drain``                  —                                            as ``mode``: ``draining`` from now on
``resume``                 —                                            as ``mode``; ``mode_not_read_only``,
                                                                        ``insurance_not_verified``
``status``                 —                                            ``mode`` + ``{"policy_id",
                                                                        "certificate_seconds_left"}``
``record``                 ``{"kind": "shell.command" | "contract.*",   the receipt, once durable; ``invalid_request``
                           "payload": {...}}``                          for another kind
``certificate_changed``    CertManager's notice: ``{"status": {...} |   ``null`` (CertManager ignores it)
                           null, "error": null | {"code", "message"}}``
``authority``              ``{"name"}``: an operation actor subscribes  the current :class:`Authority`
``certificate_expired``    an operation actor's guard saw the           ``null``
                           certificate expire in ``prod``
``ledger_unavailable``     ReceiptLedger's notice: ``{"reason"}``       ``null``
=========================  ===========================================  ===========================================

Operation actors (Acquisition, Publisher) guard their writes themselves: they subscribe with
``authority`` and ProdMode sends every subscriber ``authority_changed`` with the new
:class:`~tai_autonomics.operations.authority.Authority` (mode, certificate expiry, policy) on
every change, so a deploy makes no round trip here; ``guard`` applies the same rule
(``Authority.guard``) for callers that ask.

Args: ``manual_resume`` (false), ``check_interval_s`` (60), ``preflight_buffer_s`` (300),
``verdict_repeat_s`` (3600: how often a verdict that holds is recorded again), ``ledger_retry_s`` (1);
``context.mode`` (``prod`` or ``eval``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from tai_autonomics import logs
from tai_autonomics.actors import ledger_api, status_api
from tai_autonomics.actors.insurance_client import CALL_TIMEOUT_S
from tai_autonomics.actors.names import CERT_MANAGER
from tai_autonomics.errors import InvalidRequest, TaiError, rebuild
from tai_autonomics.ledger.errors import StoreUnavailable
from tai_autonomics.operations.authority import CERTIFICATE_EXPIRED, Authority
from tai_autonomics.operations.mode import EVAL, PRICING, PROD, ModeMachine, ModeRefusal, Transition
from tai_autonomics.operations.revenue import CONTRACT_KINDS
from tai_autonomics.operations.verdicts import REPEAT_S, Verdict, VerdictLog
from tai_autonomics.runtime import DEFERRED, NOREPLY, Server
from tai_autonomics.trust import Policy
from tai_autonomics.trust.errors import CertExpired, CertNotLoaded, CertRevoked
from tai_autonomics.trust.insurer_errors import (
    InsuranceCacheStaleError,
    InsuranceExpiredError,
    InsuranceRevokedError,
    PolicyNotFoundError,
)
from tai_autonomics.validation import valid_seconds

log = logging.getLogger(__name__)

#: the insurer's (or the certificate's) answers that end ``prod``; any other failure to ask keeps the mode
LOST = (InsuranceCacheStaleError, InsuranceRevokedError, InsuranceExpiredError, PolicyNotFoundError, CertRevoked,
        CertExpired)
INSURER_TIMEOUT_S = CALL_TIMEOUT_S  # the insurer actor retries on timers: its worst case
REVOKED = "certificate revoked by the insurer"
#: receipts other parts of the daemon record through ProdMode, which decides their chain and authority:
#: the remote shell's commands, and the gateway's contract events (docs/specification.md §12)
RECORDED_FOR_OTHERS = ("shell.command", *CONTRACT_KINDS)
LEDGER_UNAVAILABLE = "ledger_unavailable"
_RECORD_RETRY = "record_retry"


class CertStatusInvalid(TaiError):
    """CertManager's status names no usable policy and expiry: production cannot start on it."""

    code = "cert_status_invalid"


class ProdMode(Server):
    def init(self, args: dict[str, Any]) -> Any:
        context = args.get("context", {})
        self.machine = ModeMachine(context.get("mode", PROD), manual_resume=bool(args.get("manual_resume", False)))
        self.check_interval = valid_seconds(args.get("check_interval_s", 60), "check_interval_s", positive=True)
        self.buffer = valid_seconds(args.get("preflight_buffer_s", 300), "preflight_buffer_s")
        self.ledger_retry = valid_seconds(args.get("ledger_retry_s", 1), "ledger_retry_s", positive=True)
        self._unrecorded: list[dict[str, str]] = []  # mode.changed payloads not stored yet, oldest first
        self.policy: Policy | None = None
        self.not_after = 0.0
        self.revoked = False
        self.verdicts = VerdictLog(valid_seconds(args.get("verdict_repeat_s", REPEAT_S), "verdict_repeat_s"))
        self.subscribers: set[str] = set()
        self.pushed: Authority | None = None
        if self.machine.configured == EVAL:
            self._record(self.machine.start("configured eval mode"))
            return None
        self._subscribe(then=self._started_cert)
        return DEFERRED

    def _subscribe(self, then: Callable[[Any, TaiError | None], None]) -> None:
        """Subscribe to CertManager's notices; ``then(status, error)`` gets the reply, as ``status``'s."""
        status_api.subscribe(self, self.name, then=then)

    # -- start: certificate → insurer → decide ------------------------------------------------

    def _started_cert(self, status: Any, error: TaiError | None) -> None:
        if error is None:
            try:
                self._take_certificate(status)
                if self.revoked:
                    raise CertRevoked(REVOKED)
            except TaiError as exc:
                error = exc
        if error is not None:
            self.fail_start(f"production start refused: certificate: {error.message}")
            return
        status_api.verify_policy(self, self._policy_id(), then=self._started_insurer, timeout=INSURER_TIMEOUT_S)

    def _started_insurer(self, _status: Any, error: TaiError | None) -> None:
        if error is not None:
            self.fail_start(f"production start refused: insurer: {error.message}")
            return
        self._record(self.machine.start("certificate valid and policy verified"))
        self._verdict(None)
        self.start_timer(self.check_interval, "check")
        self.confirm_started()

    # -- keeping the mode current ---------------------------------------------------------------

    def on_timer(self, payload: Any) -> None:
        if payload == _RECORD_RETRY:
            self._record_next()
            return
        self._subscribe(then=self._checked_cert)  # the periodic check: re-subscribing is harmless
        self.start_timer(self.check_interval, "check")

    def call_ledger_unavailable(self, notice: Any) -> None:
        """ReceiptLedger's store refuses writes: read_only until a receipt is stored again."""
        reason = notice.get("reason") if isinstance(notice, dict) else None
        if not isinstance(reason, str):
            raise InvalidRequest(f"{LEDGER_UNAVAILABLE} needs {{reason}}")
        self._disk_lost(reason)

    def _disk_lost(self, reason: str) -> None:
        if self.machine.configured != EVAL:
            self._record(self.machine.ledger_lost(f"ledger: {reason}"))

    def call_certificate_changed(self, notice: Any) -> None:
        """CertManager's notice: taken as the periodic check takes ``status``."""
        if self.machine.configured == EVAL or self.policy is None:
            return  # not subscribed: eval, or still starting (the subscribe reply is being taken)
        error = notice.get("error") if isinstance(notice, dict) else None
        if not isinstance(notice, dict) or not isinstance(error, (dict, type(None))):
            raise InvalidRequest("certificate_changed needs {status, error}")
        self._checked_cert(notice.get("status"), None if error is None else
                           rebuild(str(error.get("code", "cert_invalid")), str(error.get("message", ""))))

    def on_down(self, name: str, incarnation: str) -> None:
        if name == CERT_MANAGER and self.policy is not None and self.machine.configured != EVAL:
            self._subscribe(then=self._checked_cert)  # the new incarnation has no subscribers

    def _checked_cert(self, status: Any, error: TaiError | None) -> None:
        if error is not None:
            self._lost(f"certificate: {error.message}")
            return
        self._take_certificate(status)
        status_api.verify_policy(self, self._policy_id(), then=self._checked_insurer, timeout=INSURER_TIMEOUT_S)

    def _checked_insurer(self, _status: Any, error: TaiError | None) -> None:
        self._verdict(error)
        if error is None and self._certificate_usable():
            self._record(self.machine.insurance_confirmed())
        elif isinstance(error, LOST):
            self._lost(f"insurer: {error.message}")

    def _lost(self, reason: str) -> None:
        self._record(self.machine.insurance_lost(reason))

    def _certificate_usable(self) -> bool:
        """Whether the insurer's confirmation of the policy may (re)enter prod: not while the certificate
        is revoked or expired (a notice may have said so while the insurer's answer was on its way)."""
        return not self.revoked and time.time() < self.not_after

    def _take_certificate(self, status: Any) -> None:
        if isinstance(status, dict) and status.get("loaded") is False:
            reason = status.get("reason") or {}
            raise rebuild(reason.get("code", "cert_not_loaded"), reason.get("message", "no certificate loaded"))
        try:
            self.policy = Policy.from_dict(status["policy"])
            self.not_after = datetime.fromisoformat(status["not_after"]).timestamp()
        except (KeyError, TypeError, ValueError) as exc:
            raise CertStatusInvalid(
                f"CertManager's status has no usable policy and expiry ({type(exc).__name__}: {exc})") from None
        self.revoked = bool(status.get("revoked"))
        if self.revoked:
            self._lost(REVOKED)
        self._push()

    # -- calls -----------------------------------------------------------------------------------

    def call_guard(self, request: Any) -> dict[str, Any]:
        """May this deploy/publish run now, and against which coverage limit? The reservation
        itself is the ledger's, in the intent's transaction (shared by every instance).

        ``{"operation": "pricing"}`` only asks whether pricing may run and under which
        authority (pricing is allowed in eval, advisory, and in prod, contractual).
        """
        if isinstance(request, dict) and request.get("operation") == "pricing":
            self.machine.check(PRICING)
            contractual = self.machine.mode == PROD
            return {"mode": self.machine.mode, "chain": self._policy_id() if contractual else None,
                    "authority": "contractual" if contractual else "advisory"}
        sku, timeout_s = _guard_request(request)
        now = time.time()
        if self.authority().expired(now):
            self._lost(CERTIFICATE_EXPIRED)
        return self.authority().guard(sku, timeout_s, now)

    def authority(self) -> Authority:
        """What an operation actor needs to guard its writes itself (see the module docstring)."""
        return Authority(self.machine.mode, self.machine.reason, self.policy if self.machine.configured == PROD
                         else None, self.not_after, self.buffer)

    def _policy_id(self) -> str:
        """The policy's id, the chain of prod receipts: known once the certificate is taken, which
        in prod is before the start is confirmed (so before any call or check needs it)."""
        if self.policy is None:
            raise CertNotLoaded("no insurance policy is known yet")
        return self.policy.policy_id

    def call_authority(self, request: Any) -> Authority:
        """Subscribe the operation actor ``request["name"]`` to changes; answer the current authority."""
        if not isinstance(request, dict) or not isinstance(request.get("name"), str):
            raise InvalidRequest("authority needs {name}")
        self.subscribers.add(request["name"])
        return self.authority()

    def call_certificate_expired(self, _payload: Any) -> None:
        """An operation actor's guard found the certificate expired (timers freeze between requests
        on Cloud Run, so the clock at call time is where expiry shows first): leave ``prod``."""
        if self.authority().expired(time.time()):
            self._lost(CERTIFICATE_EXPIRED)

    def _push(self) -> None:
        """Send every subscriber the authority if it changed since the last push."""
        authority = self.authority()
        if authority == self.pushed:
            return
        self.pushed = authority
        for name in sorted(self.subscribers):
            self.call_actor(name, "authority_changed", authority, then=self._pushed)

    def _pushed(self, _reply: Any, error: TaiError | None) -> None:
        if error is not None:  # a subscriber that restarts subscribes again as it starts
            logs.event(log, f"authority not delivered: {error.message}", logging.WARNING, event="authority_push_failed",
                       code=error.code)

    def call_mode(self, _payload: Any) -> dict[str, Any]:
        return {"mode": self.machine.mode, "reason": self.machine.reason, "configured": self.machine.configured,
                "manual_resume": self.machine.manual_resume}

    def call_drain(self, _payload: Any) -> dict[str, Any]:
        """SIGTERM (docs/specification.md §11): ``draining`` for the rest of this instance's life; every write is
        refused. No receipt: the mode of a stopping instance binds nobody (docs/specification.md §2)."""
        transition = self.machine.drain()
        if transition is not None:
            logs.event(log, f"mode {transition.previous} -> draining", logging.INFO, event="mode_changed",
                       **transition.to_payload())
            self._push()
        return self.call_mode(None)

    def call_resume(self, _payload: Any) -> Any:
        """An operator resumes ``prod`` from ``read_only``, after the insurer confirms again."""
        if self.machine.mode != "read_only":
            self.machine.resume(False)  # raises the precise refusal
        caller = self.caller
        status_api.verify_policy(self, self._policy_id(), timeout=INSURER_TIMEOUT_S,
                                 then=lambda _s, err: self._resumed(caller, err))
        return NOREPLY

    def _resumed(self, caller: Any, error: TaiError | None) -> None:
        self._verdict(error)
        try:
            transition = self.machine.resume(error is None and self._certificate_usable())
        except (ModeRefusal, StoreUnavailable) as refusal:  # resume refuses with the ledger down too
            self.reply(caller, error=refusal)
            return
        self._record(transition)
        self.reply(caller, self.call_mode(None))

    def call_record(self, request: Any) -> Any:
        """Record a receipt for a part of the daemon that is not an actor (the remote shell), on the
        chain and under the authority every other receipt of this mode gets; answered once durable,
        so the caller can refuse to act on what could not be recorded."""
        if (not isinstance(request, dict) or request.get("kind") not in RECORDED_FOR_OTHERS
                or not isinstance(request.get("payload"), dict)):
            raise InvalidRequest(f"record needs {{kind, payload}} with kind one of {', '.join(RECORDED_FOR_OTHERS)}")
        caller = self.caller
        self._append(request["kind"], request["payload"],
                     then=lambda receipt, error: self.reply(caller, receipt, error=error))
        return NOREPLY

    def call_status(self, _payload: Any) -> dict[str, Any]:
        return {**self.call_mode(None), "policy_id": self.policy.policy_id if self.policy else None,
                "certificate_seconds_left": int(self.not_after - time.time()) if self.policy else None}

    def inspect_state(self) -> dict[str, Any]:
        return self.call_status(None)

    # -- receipts ----------------------------------------------------------------------------------

    def _record(self, transition: Transition | None) -> None:
        """Log ``transition`` now and record its receipt after those not stored yet (in order)."""
        if self._queue(transition) and len(self._unrecorded) == 1:
            self._record_next()

    def _queue(self, transition: Transition | None) -> bool:
        if transition is None:
            return False
        logs.event(log, f"mode {transition.previous or 'starting'} -> {transition.mode}: {transition.reason}",
                   logging.INFO, event="mode_changed", **transition.to_payload())
        self._unrecorded.append(transition.to_payload())
        self._push()
        return True

    def _record_next(self) -> None:
        self._append("mode.changed", self._unrecorded[0], then=self._recorded)

    def _recorded(self, receipt: Any, error: TaiError | None) -> None:
        """The oldest unrecorded transition's receipt is stored (the disk allows: maybe back to prod),
        or refused: kept for a retry while the ledger is unavailable (whatever the refusal: the ledger
        may be restarting too, and this retry is what finds the disk back), else logged and dropped as
        any receipt nobody waits on."""
        if isinstance(error, StoreUnavailable):
            self._disk_lost(str(error.detail.get("reason") or LEDGER_UNAVAILABLE))
        if error is not None and self.machine.ledger_down is not None:
            self.start_timer(self.ledger_retry, _RECORD_RETRY)
            return
        self._unrecorded.pop(0)
        if error is None:
            self._queue(self.machine.ledger_back())
        else:
            self._appended(receipt, error)
        if self._unrecorded:
            self._record_next()

    def _verdict(self, error: TaiError | None) -> None:
        """Record the insurer's answer if it changed the verdict or restates one recorded an hour ago."""
        verdict = Verdict(self._policy_id()) if error is None else \
            Verdict(self._policy_id(), error.code, error.message)
        decided = self.verdicts.observe(verdict, time.time())
        if decided is not None:
            self._append(*decided)

    def _append(self, kind: str, payload: dict[str, Any], operation_id: str | None = None,
                then: Callable[[Any, TaiError | None], None] | None = None) -> None:
        """Append on this mode's chain; ``then(receipt, error)`` once the ledger answers (default:
        log a failure, for receipts nobody waits on)."""
        chain = self.policy.policy_id if self.machine.configured == PROD and self.policy is not None else None
        draft: ledger_api.Draft = {"kind": kind, "mode": EVAL if chain is None else PROD, "payload": payload,
                                   "chain": chain, "operation_id": operation_id}
        ledger_api.append(self, draft, then=then or self._appended)

    def _appended(self, receipt: Any, error: TaiError | None) -> None:
        if error is not None:
            logs.event(log, "receipt not recorded", logging.ERROR, event="receipt_failed",
                       code=error.code, reason=error.message)


def _guard_request(request: Any) -> tuple[str, float]:
    if not isinstance(request, dict) or not isinstance(request.get("sku_id"), str):
        raise InvalidRequest("guard needs {sku_id, timeout_s?}")
    return request["sku_id"], valid_seconds(request.get("timeout_s", 300), "timeout_s", maximum=86_400)

