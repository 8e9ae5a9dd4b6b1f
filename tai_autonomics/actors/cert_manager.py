"""CertManager actor: the insurance certificate in the supervision tree (docs/specification.md §2 and §5).

It wraps the :class:`tai_autonomics.trust.CertManager` core, which keeps everything that must
survive a restart in its certificate store (warnings fired, revocation, renewal backoff), so a
restarted incarnation rebuilds its state with ``load()``. The store follows the release's
``[ledger]``: beside SQLite it is ``cert_dir`` (``current.pem``, ``state.json``); beside Firestore
it is the documents ``certificates/{firestore_ledger}`` shared by every instance (docs/specification.md §10; see
"Many instances" below).

Calls:

====================  ==================================  ==============================================
type                  payload                             reply
====================  ==================================  ==============================================
``status``            —                                   ``{"loaded": true, "policy_id", "policy",
                                                          "serial", "fingerprint", "not_before",
                                                          "not_after", "days_left", "revoked",
                                                          "renewing", "next_renewal_at"}``, or
                                                          ``{"loaded": false, "reason": {code, message}}``;
                                                          refused ``cert_expired`` / ``cert_not_yet_valid``
                                                          outside the validity window (the fields
                                                          above in ``detail.status``)
``preflight``         ``{"seconds": number ≥ 0}``         ``{"policy_id", "not_after", "seconds_left"}``
``check_expiry``      —                                   ``{"warnings": [{"threshold_days", ...}]}``
``renew_now``         —                                   ``{"renewed", "fingerprint", "not_after",
                                                          "next_attempt_at", "failures", "error"}``
``revoked``           ``{"reason": str,                   ``{"revoked": bool}`` (false: the report was
                      "fingerprint"?: str}``              about a certificate no longer in use)
``check_revocation``  —                                   ``{"status": "valid"|"revoked"|"expired",
                                                          "revoked": bool}``
``subscribe``         ``{"name": str}``                   as ``status`` (refusals included): the
                                                          subscription stands either way
====================  ==================================  ==============================================

Notices (OTP's event manager, e.g. ``gen_event``/``pg`` notifications): ``subscribe`` adds an actor
*name* to a set of subscribers (a name, so it survives the subscriber's restarts; subscribing
again is harmless). After every change of the certificate state — loaded at start, renewed,
revoked (a ``revoked`` call or ``check_revocation``), and the clock crossing ``not_before`` or
``not_after`` (a timer per certificate; the periodic check also notices it) — each subscriber is
sent ``certificate_changed`` with ``{"status": <the status reply> | null, "error": null |
{"code", "message"}}`` (``error`` when ``status`` would be refused, e.g. ``cert_expired``). The
runtime has no cast to a name yet, so it is a call whose reply is ignored (a failure is logged,
the subscriber kept). Only changes of (fingerprint, revoked, validity phase) are announced, once.

The subscribers live in memory only, so **a restarted CertManager has none**: subscribers
re-subscribe when the incarnation they subscribed to is gone (the runtime's registry tells every
caller that resolved a name when that incarnation goes, which it needs for its own calls; see
ProdMode). The ``subscribe`` reply carries the state, so nothing changed between the restart and
the re-subscription is lost. A persisted or configured subscriber list was the alternative; it
would need a file or config entry kept in step with the tree, for no gain.

``preflight`` is a pure check against the held certificate and the clock (never the network,
never a timer): refusals ``cert_not_loaded``, ``cert_revoked``, ``cert_not_yet_valid``,
``cert_expired``, ``cert_validity_too_short``. Bad payloads are refused with ``invalid_request``.

Replies that follow receipts (``check_expiry``, ``renew_now``) are sent only once the
ReceiptLedger acknowledged every receipt this actor sent before them; receipts the ledger
refused are kept and sent again at the next check (and logged). Receipts: ``insurance.expiry_warning``
(payload: ``threshold_days``, ``fingerprint``, ``not_after``, ``seconds_left``) and
``cert.renewed`` (``old_fingerprint``, ``fingerprint``, ``serial``, ``not_after``), and with a
shared store ``cert.adopted`` (``fingerprint``, ``serial``, ``not_after``, ``instance``: this
instance's name), all ``mode: "prod"`` on the policy's chain.

Many instances (a Firestore ledger): one instance renews at a time. A renewal (periodic or
``renew_now``) first takes the store's lease (``renew_lease_s``, default 60 s; an expired lease is
taken over), reads the store again (another instance may have renewed), renews as below, installs
the certificate with a precondition (it replaces only the certificate it renewed) and gives the
lease back. Without the lease ``renew_now`` answers ``renewed: false`` with error
``cert_renewal_elsewhere`` naming the holder. Every ``sync_interval_s`` (default 15, at most 30,
so adoption takes under 60 s) each instance reads the store: a certificate another instance
installed is verified (chain, policy and account as held), held, recorded (``cert.adopted``) and
announced to subscribers exactly as a local renewal; revocation and backoff written by another
instance are taken too. A store that cannot be read, or a document edited into nonsense, keeps
the held certificate; the reason (naming the document) is logged once (``cert.adopt_refused``),
shown in ``$state`` as ``sync_problem``, and the next sync tries again. The shared store keeps no
private key: an instance that loaded or adopted the certificate holds none (``docs/trust.md``).

Renewal goes through the InsuranceClient actor's ``renew`` (the core's begin/complete halves, so
the actor never blocks); one renewal at a time: ``renew_now`` (which ignores the backoff) joins
the one in flight, and its callers must wait up to :data:`RENEW_CALL_TIMEOUT_S`. Revocation
reported by the insurer (a ``revoked`` call, or ``certificate_status`` asked by
``check_revocation``) takes effect at once: the next ``preflight`` refuses; a renewal (new key)
is then due at the next check.

A periodic check (first at start, then every ``check_interval_s``) sends due warnings, resends
unacknowledged receipts, asks the insurer about revocation and starts a due renewal. Nothing
depends on it firing: on Cloud Run timers freeze between requests.

Args: ``check_interval_s`` (3600), ``renew_before_days`` (45, may be fractional), the backoff
after a failed renewal ``renew_retry_base_s`` (60, doubling per failure) up to
``renew_retry_cap_s`` (21600), ``sync_interval_s`` and ``renew_lease_s`` (above; used with a
shared store only), and ``clock_offset_s`` (0; **dev and test configurations only**:
shifts this actor's clock, e.g. to see warnings on a fresh certificate). A bad value fails the
start naming the arg. From ``args["context"]``: ``mode`` (``"eval"``), ``data_dir`` (``"var"``), and
``trust`` = ``{"anchor": CA PEM file, "intermediates"?: [files], "expected_issuer"?: name or
null, "cert_dir"?: directory (default DATA_DIR/cert), "cert_file"?, "key_file"?}``; the last two
(PEM files, as the dev profile's dev CA writes them) are installed as the first certificate when
the store holds none yet (in a shared store the first instance to start installs them and the
others load that), and ignored afterwards (renewals replace it there). In ``prod`` a missing anchor or a
missing/invalid certificate fails the start with the reason; otherwise the actor starts without
one and refuses with ``cert_not_loaded``. An expired (or not yet valid) certificate that is sound
otherwise loads in every mode, with an error logged: ``preflight`` refuses it and renewal is
attempted, so a CertManager restarted after expiry lets the daemon go ``read_only`` instead of
failing to restart; ``status`` refuses with ``cert_expired``, which is what fails ProdMode's
production start (or sends a running daemon to ``read_only``).
"""

from __future__ import annotations

import datetime as dt
import logging
import socket
import uuid
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from tai_autonomics import logs
from tai_autonomics.actors import ledger_api, status_api
from tai_autonomics.actors.insurance_client import CALL_TIMEOUT_S
from tai_autonomics.errors import InvalidRequest, TaiError
from tai_autonomics.ledger.configured import open_cert_store
from tai_autonomics.runtime import NOREPLY, Caller, Server
from tai_autonomics.trust import CertificateVerifier, RenewalOutcome, RenewalRequest, VerifiedCertificate, utcnow
from tai_autonomics.trust import CertManager as Core
from tai_autonomics.trust.cert_manager import RETRY_BASE, RETRY_CAP
from tai_autonomics.trust.cert_store import LeasedCertStore
from tai_autonomics.trust.errors import (
    CertExpired,
    CertNotLoaded,
    CertNotYetValid,
    CertRenewalElsewhere,
    CertStateConflict,
)
from tai_autonomics.validation import valid_number, valid_seconds

log = logging.getLogger(__name__)

RENEW_CALL_TIMEOUT_S = CALL_TIMEOUT_S + 5.0
"""The timeout ``renew_now`` callers must use: the insurer call, plus validating and storing the answer."""
NOTICE = "certificate_changed"
"""The call type of the notice sent to subscribers after a change of the certificate state."""
_CHECK = "check"
_SYNC = "sync"
MAX_SYNC_INTERVAL_S = 30.0
"""At most this between two reads of a shared store, so that every instance adopts a renewal within 60 s."""
_VALIDITY = "validity"
_VALIDITY_MARGIN_S = 0.05
"""The validity timer fires this long after the boundary, so the clock has crossed it when it fires."""


class CertManager(Server):
    """See the module docstring."""

    def init(self, args: dict[str, Any]) -> None:
        context = args.get("context") or {}
        trust = context.get("trust") or {}
        offset = dt.timedelta(seconds=valid_number(args.get("clock_offset_s", 0), "clock_offset_s"))
        self._clock = lambda: utcnow() + offset
        self._check_interval_s = _seconds(args, "check_interval_s", 3600, positive=True)
        renew_before_s = _seconds(args, "renew_before_days", 45, positive=False) * 86400
        retry_base_s = _seconds(args, "renew_retry_base_s", RETRY_BASE.total_seconds(), positive=True)
        retry_cap_s = _seconds(args, "renew_retry_cap_s", RETRY_CAP.total_seconds(), positive=True)
        if retry_cap_s < retry_base_s:
            raise ValueError(f"renew_retry_cap_s ({retry_cap_s:g}) must not be less than renew_retry_base_s "
                             f"({retry_base_s:g})")
        self._renewal: RenewalRequest | None = None
        self._renew_waiters: list[Caller] = []
        self._appending = 0
        self._unsent: list[ledger_api.Draft] = []
        self._flush_waiters: list[tuple[Caller, Any]] = []
        self._core: Core | None = None
        self._unloaded: TaiError = CertNotLoaded("no trust anchor is configured (context trust.anchor)")
        self._subscribers: set[str] = set()
        self._announced: tuple[Any, ...] | None = None
        self._sync_interval_s = _seconds(args, "sync_interval_s", 15, positive=True)
        if self._sync_interval_s > MAX_SYNC_INTERVAL_S:
            raise ValueError(f"sync_interval_s must be at most {MAX_SYNC_INTERVAL_S:g} (adoption within 60 s), "
                             f"not {self._sync_interval_s:g}")
        self._lease_s = _seconds(args, "renew_lease_s", RENEW_CALL_TIMEOUT_S + 20, positive=True)
        self._instance = f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"
        self._sync_problem: str | None = None
        self._leases: LeasedCertStore | None = None  # a shared store: renew under its lease, adopt from it
        prod = context.get("mode") == "prod"
        try:
            if not trust.get("anchor"):
                raise self._unloaded
            verifier = CertificateVerifier.from_files(trust["anchor"], trust.get("intermediates") or (),
                                                      expected_issuer=trust.get("expected_issuer") or None,
                                                      clock=self._clock)
            cert_dir = trust.get("cert_dir") or Path(context.get("data_dir") or "var") / "cert"
            store = open_cert_store(context.get("ledger") or {}, Path(cert_dir), instance=self._instance)
            self._leases = store if isinstance(store, LeasedCertStore) else None
            core = Core(store, verifier, clock=self._clock, renew_before=dt.timedelta(seconds=renew_before_s),
                        retry_base=dt.timedelta(seconds=retry_base_s), retry_cap=dt.timedelta(seconds=retry_cap_s))
            if trust.get("cert_file") and trust.get("key_file") and store.read() is None:
                self._install_first(core, trust["cert_file"], trust["key_file"])
            core.load(outside_validity_ok=True)
        except TaiError as exc:
            if self._leases is not None:  # no certificate to keep in step: let the connection go
                self._leases.close()
                self._leases = None
            if prod:
                raise
            self._unloaded = exc
            logs.event(log, "starting without an insurance certificate", logging.WARNING,
                       event="cert.not_loaded", code=exc.code, reason=exc.message)
        else:
            self._core = core
            self._warn_if_unusable(core)
            self._arm_validity_timer()
        self._notify()  # "loaded": nobody has subscribed to this incarnation yet, so this only records it
        self.start_timer(0, _CHECK)
        if self._leases is not None:
            self.start_timer(self._sync_interval_s, _SYNC)

    def terminate(self, reason: str) -> None:
        """Give back a lease taken for a renewal still in flight (the next instance need not wait for
        it to expire), and close the shared store's connection."""
        if self._leases is not None:
            if self._renewal is not None:
                self._release_lease()
            self._leases.close()

    def _install_first(self, core: Core, cert_file: str, key_file: str) -> None:
        """The configured certificate, into a store that holds none; in a shared store another
        instance starting at the same moment may install it first, and that one is loaded."""
        try:
            core.install(_read(cert_file), _read(key_file))
        except CertStateConflict:
            logs.event(log, "another instance installed the first insurance certificate",
                       event="cert.installed_elsewhere", store=core.store.where)
            return
        logs.event(log, "first insurance certificate installed", event="cert.installed", source=cert_file,
                   fingerprint=core.current.fingerprint, store=core.store.where)

    def _warn_if_unusable(self, core: Core) -> None:
        try:
            core.preflight(0, now=self._clock())
        except TaiError as unusable:
            logs.event(log, "the insurance certificate cannot guard operations", logging.ERROR,
                       event="cert.unusable", code=unusable.code, reason=unusable.message)

    # --- calls ----------------------------------------------------------------------------

    def call_status(self, payload: Any) -> dict[str, Any]:
        if self._core is None:
            return {"loaded": False, "reason": {"code": self._unloaded.code, "message": self._unloaded.message}}
        core, now = self._core, self._clock()
        current = core.current
        status = {"loaded": True, "policy_id": current.policy.policy_id, "policy": current.policy.to_dict(),
                  "serial": _serial(current), "fingerprint": current.fingerprint,
                  "not_before": current.not_before.isoformat(), "not_after": current.not_after.isoformat(),
                  "days_left": current.remaining(now).days, "revoked": core.revoked,
                  "renewing": self._renewal is not None, "next_renewal_at": core.next_renewal_at.isoformat()}
        if now > current.not_after:
            raise CertExpired(f"the insurance certificate expired at {status['not_after']} (now {now.isoformat()}); "
                              "renew it with the insurer", detail={"status": status})
        if now < current.not_before:
            raise CertNotYetValid(f"the insurance certificate is not valid until {status['not_before']} "
                                  f"(now {now.isoformat()})", detail={"status": status})
        return status

    def call_preflight(self, payload: Any) -> dict[str, Any]:
        seconds = payload.get("seconds", 0) if isinstance(payload, dict) else None
        seconds = valid_seconds(seconds, "seconds", maximum=1e9, error=lambda name, _: InvalidRequest(
            "preflight needs {'seconds': a number of seconds, 0 or more}", detail={"field": name}))
        now = self._clock()
        current = self._loaded().preflight(seconds, now=now)
        return {"policy_id": current.policy.policy_id, "not_after": current.not_after.isoformat(),
                "seconds_left": int(current.remaining(now).total_seconds())}

    def call_check_expiry(self, payload: Any) -> Any:
        return self._after_receipts({"warnings": self._check_expiry()})

    def call_renew_now(self, payload: Any) -> Any:
        self._loaded()
        self._renew_waiters.append(self.caller)
        self._start_renewal()
        return NOREPLY

    def call_revoked(self, payload: Any) -> dict[str, bool]:
        reason = payload.get("reason") if isinstance(payload, dict) else None
        fingerprint = payload.get("fingerprint") if isinstance(payload, dict) else None
        if not isinstance(reason, str) or not reason or not isinstance(fingerprint, (str, type(None))):
            raise InvalidRequest("revoked needs {'reason': str, 'fingerprint'?: str}")
        revoked = self._loaded().mark_revoked(reason, fingerprint=fingerprint, now=self._clock())
        self._notify()
        return {"revoked": revoked}

    def call_check_revocation(self, payload: Any) -> Any:
        caller = self.caller
        self._ask_revocation(lambda value, error: self.reply(caller, value, error))
        return NOREPLY

    def call_subscribe(self, payload: Any) -> dict[str, Any]:
        name = payload.get("name") if isinstance(payload, dict) else None
        if not isinstance(name, str) or not name:
            raise InvalidRequest("subscribe needs {'name': the subscriber's registered name}")
        if name not in self._subscribers:
            self._subscribers.add(name)
            logs.event(log, "certificate notices subscribed", event="cert.subscribed", subscriber=name)
        return self.call_status(None)  # after adding: a refusal (cert_expired) still leaves the subscription

    def inspect_state(self) -> dict[str, Any]:
        try:
            status = self.call_status(None)
        except (CertExpired, CertNotYetValid) as outside:
            status = {**outside.detail["status"], "problem": outside.code}
        store = None if self._core is None else self._core.store.where
        return {**status, "receipts_in_flight": self._appending, "receipts_unsent": len(self._unsent),
                "subscribers": sorted(self._subscribers), "store": store, "instance": self._instance,
                "sync_problem": self._sync_problem}

    # --- the periodic check ---------------------------------------------------------------

    def on_timer(self, payload: Any) -> None:
        """The periodic check, or a certificate's validity boundary (``(_VALIDITY, fingerprint)``)."""
        if isinstance(payload, tuple) and payload[0] == _VALIDITY:
            if self._core is not None and self._core.current.fingerprint == payload[1]:  # else: replaced since
                self._notify()
                self._arm_validity_timer()
            return
        if payload == _SYNC:
            self.start_timer(self._sync_interval_s, _SYNC)
            self._sync()
            return
        self.start_timer(self._check_interval_s, _CHECK)
        if self._core is None:
            return
        self._notify()  # a boundary crossed while timers were frozen (Cloud Run) is announced here
        self._check_expiry()
        self._ask_revocation(self._revocation_checked)
        if self._core.renewal_due():
            self._start_renewal()

    def _revocation_checked(self, value: Any, error: TaiError | None) -> None:
        if error is not None:
            logs.event(log, "could not ask the insurer about revocation", logging.WARNING,
                       event="cert.revocation_check_failed", code=error.code)

    def _check_expiry(self) -> list[dict[str, Any]]:
        """Warnings newly due (each becomes a receipt); unacknowledged receipts are sent again first."""
        unsent, self._unsent = self._unsent, []
        for receipt in unsent:
            self._append(receipt)
        warnings = [w.to_dict() for w in self._loaded().check_expiry(self._clock())]
        for warning in warnings:
            self._receipt("insurance.expiry_warning", warning)
        return warnings

    # --- revocation -----------------------------------------------------------------------

    def _ask_revocation(self, then: Callable[[Any, TaiError | None], None]) -> None:
        current = self._loaded().current
        fingerprint = current.fingerprint

        def answered(value: Any, error: TaiError | None) -> None:
            if error is not None:
                then(None, error)
                return
            core = self._loaded()
            if value["status"] == "revoked" and not core.revoked:
                core.mark_revoked(value.get("reason") or "revoked by the insurer", fingerprint=fingerprint,
                                  now=self._clock())
                self._notify()
            then({"status": value["status"], "revoked": core.revoked}, None)

        status_api.certificate_status(self, _serial(current), then=answered, timeout=CALL_TIMEOUT_S)

    # --- the shared store: adoption -------------------------------------------------------

    def _sync(self) -> None:
        """Read the shared store: adopt a certificate another instance installed (a ``cert.adopted``
        receipt, then the notice, as after a local renewal) and take its state (revocation,
        backoff). A store that cannot be read, or holds what cannot be adopted, leaves the held
        certificate in force and is logged once per distinct reason, never raised: the next
        sync tries again."""
        core = self._core
        if core is None:
            return
        try:
            adopted = core.refresh()
        except TaiError as refused:
            if refused.message != self._sync_problem:
                self._sync_problem = refused.message
                logs.event(log, "could not take the shared certificate state; keeping the held certificate",
                           logging.ERROR, event="cert.adopt_refused", code=refused.code, reason=refused.message,
                           fingerprint=core.current.fingerprint)
            return
        self._sync_problem = None
        if adopted is not None:
            self._receipt("cert.adopted", {"fingerprint": adopted.fingerprint, "serial": _serial(adopted),
                                           "not_after": adopted.not_after.isoformat(), "instance": self._instance})
            self._arm_validity_timer()
        self._notify()

    # --- renewal --------------------------------------------------------------------------

    def _start_renewal(self) -> None:
        """Renew, one renewal at a time in this actor and, with a shared store, in the deployment:
        the instance that takes the lease renews; the others answer ``cert_renewal_elsewhere``
        and adopt its certificate at their next sync."""
        if self._renewal is not None:
            return
        core = self._loaded()
        if self._leases is not None:
            try:
                holder = self._leases.take_lease(self._lease_s)
            except TaiError as unavailable:
                logs.event(log, "could not take the renewal lease; the renewal waits for the next check",
                           logging.WARNING, event="cert.lease_failed", code=unavailable.code,
                           reason=unavailable.message)
                self._answer_renewal(RenewalOutcome(False, core.current, core.next_renewal_at, core.renewal_failures,
                                                    unavailable))
                return
            if holder is not None:
                elsewhere = CertRenewalElsewhere(f"instance {holder} holds the renewal lease and renews; this "
                                                 "instance adopts its certificate within 60 s")
                self._answer_renewal(RenewalOutcome(False, core.current, core.next_renewal_at, core.renewal_failures,
                                                    elsewhere))
                return
            self._sync()  # another instance may have renewed since this one last looked
            if not core.renewal_due() and not self._renew_waiters:
                self._release_lease()
                return
        request = self._renewal = core.begin_renewal()
        status_api.renew(self, request.csr_pem.decode("ascii"),
                         then=lambda value, error: self._renewed(request, value, error), timeout=CALL_TIMEOUT_S)

    def _release_lease(self) -> None:
        assert self._leases is not None, "only a shared store has a lease"
        try:
            self._leases.release_lease()
        except TaiError as failed:  # it expires by itself
            logs.event(log, "could not release the renewal lease; it expires by itself", logging.WARNING,
                       event="cert.lease_release_failed", code=failed.code, reason=failed.message)

    def _renewed(self, request: RenewalRequest, value: Any, error: TaiError | None) -> None:
        """The insurer answered (or the call failed): validate and swap, or keep the old one and back off."""
        core = self._loaded()
        self._renewal = None
        if error is None:
            outcome = core.complete_renewal(request, value["certificate_pem"].encode("ascii"), self._clock())
        else:
            outcome = core.renewal_failed(request, error, self._clock())
        if outcome.renewed:
            self._receipt("cert.renewed", {"old_fingerprint": request.fingerprint,
                                           "fingerprint": outcome.certificate.fingerprint,
                                           "serial": _serial(outcome.certificate),
                                           "not_after": outcome.certificate.not_after.isoformat()})
            self._arm_validity_timer()
            self._notify()
        if self._leases is not None:
            self._release_lease()
            if isinstance(outcome.error, CertStateConflict):  # another instance installed one: take it now
                self._sync()
        self._answer_renewal(outcome)

    def _answer_renewal(self, outcome: RenewalOutcome) -> None:
        """Reply to the ``renew_now`` callers, once the receipts sent before are acknowledged."""
        reply = _outcome(outcome)
        waiters, self._renew_waiters = self._renew_waiters, []
        for caller in waiters:
            self._flush_waiters.append((caller, reply))
        self._settle_waiters()

    # --- notices to subscribers ------------------------------------------------------------

    def _notify(self) -> None:
        """Tell every subscriber the certificate state, if it changed since last announced."""
        core, now = self._core, self._clock()
        if core is None:
            state: tuple[Any, ...] = ("unloaded",)
        else:
            current = core.current
            phase = "not_yet_valid" if now < current.not_before else "expired" if now > current.not_after else "valid"
            state = (current.fingerprint, core.revoked, phase)
        if state == self._announced:
            return
        self._announced = state
        try:
            notice: dict[str, Any] = {"status": self.call_status(None), "error": None}
        except TaiError as refused:
            notice = {"status": None, "error": {"code": refused.code, "message": refused.message}}
        for name in sorted(self._subscribers):
            self.call_actor(name, NOTICE, notice, then=partial(self._noticed, name))

    def _noticed(self, name: str, _value: Any, error: TaiError | None) -> None:
        if error is not None:
            logs.event(log, "a subscriber did not take a certificate notice", logging.WARNING,
                       event="cert.notice_failed", subscriber=name, code=error.code, reason=error.message)

    def _arm_validity_timer(self) -> None:
        """A timer at the held certificate's next validity boundary (not_before, then not_after)."""
        current, now = self._loaded().current, self._clock()
        boundary = current.not_before if now < current.not_before else current.not_after
        if now <= boundary:
            self.start_timer((boundary - now).total_seconds() + _VALIDITY_MARGIN_S, (_VALIDITY, current.fingerprint))

    # --- receipts -------------------------------------------------------------------------

    def _receipt(self, kind: str, payload: dict[str, Any]) -> None:
        chain = self._loaded().current.policy.policy_id
        self._append({"kind": kind, "mode": "prod", "chain": chain, "payload": payload})

    def _append(self, receipt: ledger_api.Draft) -> None:
        self._appending += 1

        def acknowledged(value: Any, error: TaiError | None) -> None:
            self._appending -= 1
            if error is not None:
                self._unsent.append(receipt)
                logs.event(log, "the ledger did not take a receipt; it is sent again at the next check",
                           logging.ERROR, event="cert.receipt_unsent", kind=receipt["kind"],
                           code=error.code)
            self._settle_waiters()

        ledger_api.append(self, receipt, then=acknowledged)

    def _after_receipts(self, value: Any) -> Any:
        """Reply ``value`` now if no receipt is on its way to the ledger, else once they all are settled."""
        if not self._appending:
            return value
        self._flush_waiters.append((self.caller, value))
        return NOREPLY

    def _settle_waiters(self) -> None:
        if self._appending:
            return
        waiters, self._flush_waiters = self._flush_waiters, []
        for caller, value in waiters:
            self.reply(caller, value)

    # --- helpers --------------------------------------------------------------------------

    def _loaded(self) -> Core:
        if self._core is None:
            raise self._unloaded
        return self._core


def _seconds(args: dict[str, Any], name: str, default: float, *, positive: bool) -> float:
    """A numeric arg (a duration): finite, and > 0 (``positive``) or >= 0; else the start fails naming it."""
    value = args.get(name, default)
    return valid_seconds(value, name, positive=positive, error=lambda _, __: ValueError(
        f"{name} must be a number {'> 0' if positive else '>= 0'}, not {value!r}"))


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise CertNotLoaded(f"cannot read {path}: {exc.strerror}") from None


def _serial(certificate: VerifiedCertificate) -> str:
    """As the insurer names it: lowercase hex."""
    return format(certificate.certificate.serial_number, "x")


def _outcome(outcome: RenewalOutcome) -> dict[str, Any]:
    error = None if outcome.error is None else {"code": outcome.error.code, "message": outcome.error.message}
    return {"renewed": outcome.renewed, "fingerprint": outcome.certificate.fingerprint,
            "not_after": outcome.certificate.not_after.isoformat(),
            "next_attempt_at": outcome.next_attempt_at.isoformat(), "failures": outcome.consecutive_failures,
            "error": error}

