"""CertManager core: the current insurance certificate and its lifecycle, as a plain class.

The actor wrapper (written against the team's runtime) owns the timers and the receipts; this
core owns the decisions, takes "now" from an injected clock on every call, and never sleeps:

- :meth:`CertManager.preflight` is the pure check every guarded operation runs ("valid for at
  least D more seconds"), so correctness never depends on a timer firing (docs/specification.md §2).
- :meth:`CertManager.check_expiry` returns the 30/7/1-day warnings, each once per certificate,
  remembered across restarts in ``state.json``.
- :meth:`CertManager.renew` makes a new key and CSR, sends it through the injected
  :class:`Renewer`, validates the answer, and only then swaps it in atomically; on failure the
  old certificate stays and the outcome says when to try again (exponential backoff). A caller
  that cannot block on the renewer (the actor, whose renewer is another actor) runs the same
  steps split in two: :meth:`CertManager.begin_renewal`, then :meth:`CertManager.complete_renewal`
  or :meth:`CertManager.renewal_failed`.
- :meth:`CertManager.mark_revoked` takes effect at the next check, immediately, and survives
  restarts.

Where the certificate and its state live is a :class:`~tai_autonomics.trust.cert_store.CertStore`:
a directory (``current.pem`` with the key, ``state.json``, ``archive/``) by default, or documents
shared by every instance of a deployment (Firestore), where :meth:`CertManager.refresh` adopts a
certificate another instance installed.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from tai_autonomics import logs
from tai_autonomics.errors import TaiError
from tai_autonomics.trust._files import private_key_pem, same_public_key
from tai_autonomics.trust._time import Clock, aware, utcnow
from tai_autonomics.trust.cert_store import CURRENT_FILE, CertStore, LocalCertStore, Replaced, StoredCertificate
from tai_autonomics.trust.certificates import (
    CertificateVerifier,
    VerifiedCertificate,
    fingerprint,
    load_certificates,
)
from tai_autonomics.trust.errors import (
    CertExpired,
    CertKeyMismatch,
    CertNotLoaded,
    CertNotYetValid,
    CertRenewalMismatch,
    CertRevoked,
    CertStateConflict,
    CertStateCorrupt,
    CertStoreUnavailable,
    CertValidityTooShort,
    KeyInvalid,
    RenewalFailed,
)
from tai_autonomics.trust.issuing import generate_key_and_csr

logger = logging.getLogger(__name__)

__all__ = ["CURRENT_FILE", "CertManager", "ExpiryWarning", "RenewalOutcome", "RenewalRequest", "Renewer"]

WARNING_THRESHOLDS_DAYS = (30, 7, 1)
RENEW_BEFORE = dt.timedelta(days=45)
"""Start renewing this long before expiry: renewal has 15 days of retries before the first warning."""
RETRY_BASE = dt.timedelta(minutes=1)
RETRY_CAP = dt.timedelta(hours=6)


class Renewer(Protocol):
    """Whatever turns a CSR into a certificate: the InsuranceClient in production, a CA in tests."""

    def renew(self, csr_pem: bytes) -> bytes:
        """Return the new certificate (PEM, optionally followed by its chain, or DER); raise a TaiError on failure."""
        ...


@dataclass(frozen=True)
class ExpiryWarning:
    """The certificate crossed an expiry threshold; the actor turns this into a receipt and a log line."""

    threshold_days: int
    fingerprint: str
    not_after: dt.datetime
    remaining: dt.timedelta

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields for the receipt."""
        return {
            "threshold_days": self.threshold_days,
            "fingerprint": self.fingerprint,
            "not_after": self.not_after.isoformat(),
            "seconds_left": int(self.remaining.total_seconds()),
        }


@dataclass(frozen=True)
class RenewalOutcome:
    """Result of one renewal attempt.

    ``certificate`` is the current certificate afterwards: the new one if ``renewed``, else the old
    one, which is kept. ``next_attempt_at`` is when to try again: the backoff time after a
    failure, or when the new certificate falls due after a success.
    """

    renewed: bool
    certificate: VerifiedCertificate
    next_attempt_at: dt.datetime
    consecutive_failures: int
    error: TaiError | None = None


@dataclass(frozen=True)
class RenewalRequest:
    """A renewal in flight: the CSR to send, and the new key that waits for its certificate (never shown)."""

    fingerprint: str  # of the certificate being renewed
    csr_pem: bytes
    key: PrivateKeyTypes = field(repr=False)


@dataclass
class _State:
    """What must survive a restart, for the certificate with ``fingerprint`` only."""

    fingerprint: str
    warned_days: list[int]
    revoked_reason: str | None = None
    revoked_at: str | None = None
    renewal_failures: int = 0
    next_attempt_at: str | None = None


class CertManager:
    """Holds the current insurance certificate and decides warnings, pre-flight, renewal and revocation."""

    def __init__(
        self,
        store: CertStore | str | os.PathLike[str],
        verifier: CertificateVerifier,
        *,
        renewer: Renewer | None = None,
        clock: Clock = utcnow,
        warning_thresholds_days: Sequence[int] = WARNING_THRESHOLDS_DAYS,
        renew_before: dt.timedelta = RENEW_BEFORE,
        retry_base: dt.timedelta = RETRY_BASE,
        retry_cap: dt.timedelta = RETRY_CAP,
    ) -> None:
        self.store: CertStore = LocalCertStore(store) if isinstance(store, (str, os.PathLike)) else store
        self._verifier = verifier
        self._renewer = renewer
        self._clock = clock
        self._thresholds = tuple(sorted(set(warning_thresholds_days), reverse=True))
        self._renew_before = renew_before
        self._retry_base = retry_base
        self._retry_cap = retry_cap
        self._current: VerifiedCertificate | None = None
        self._key: PrivateKeyTypes | None = None
        self._state: _State | None = None

    def __repr__(self) -> str:
        held = self._current.fingerprint[:16] if self._current else None
        return f"CertManager(store={self.store.where!r}, certificate={held!r})"

    @property
    def data_dir(self) -> Path:
        """The certificate directory of a local store (tests and tools look at its files)."""
        if not isinstance(self.store, LocalCertStore):
            raise AttributeError(f"the certificate store {self.store.where} is not a directory")
        return self.store.directory

    # --- the certificate ------------------------------------------------------------------

    def load(self, *, outside_validity_ok: bool = False) -> VerifiedCertificate:
        """Read and verify the stored certificate; raises the verification error (fail-fast start) if it is not valid.

        A revoked certificate loads (revocation is state, not a property of the file);
        :meth:`preflight` then refuses it. With ``outside_validity_ok``, so does a certificate that
        is expired (or not yet valid) but sound in every other respect, checked at the edge of its
        validity window: a running daemon whose certificate expired must go ``read_only`` and
        renew, not fail to restart its CertManager.
        """
        stored = self.store.read()
        if stored is None:
            raise CertNotLoaded(f"no insurance certificate at {self.store.where}; install one "
                                "(CertManager.install) or check the data directory")
        key = _load_private_key(stored.key, stored.where) if stored.key is not None else None
        with _named(stored.where):
            verified = self._verify_stored(stored, key, outside_validity_ok)
        self._current, self._key = verified, key
        self._state = _state_for(stored, verified.fingerprint)
        return verified

    def refresh(self) -> VerifiedCertificate | None:
        """Take what another instance wrote to a shared store: its certificate, if it replaced
        the held one (returned: "adopted"), and the state (revocation, backoff, warnings).

        An adopted certificate is verified as at :meth:`load` (chain, and an expired one only at
        the edge of its window) and must be for the held policy and account; anything else raises
        the reason naming the store, and the held certificate stays.
        """
        current = self.current
        stored = self.store.read()
        if stored is None:
            raise CertStateCorrupt(f"{self.store.where} holds no certificate any more; the held one "
                                   f"({current.fingerprint[:16]}) stays: install one deliberately")
        with _named(stored.where):
            if fingerprint(load_certificates(stored.bundle)[0]) == current.fingerprint:
                self._state = _state_for(stored, current.fingerprint)
                return None
            verified = self._verify_stored(stored, None, outside_validity_ok=True)
            _require_same_policy(current, verified)
        self._current, self._key = verified, None
        self._state = _state_for(stored, verified.fingerprint)
        logs.event(logger, "insurance certificate adopted from the shared store", event="cert.adopted",
                   old_fingerprint=current.fingerprint, fingerprint=verified.fingerprint, store=self.store.where)
        return verified

    def _verify_stored(self, stored: StoredCertificate, key: PrivateKeyTypes | None, outside_validity_ok: bool
                       ) -> VerifiedCertificate:
        try:
            return self._verify_bundle(stored.bundle, key)
        except (CertExpired, CertNotYetValid) as outside:
            if not outside_validity_ok:
                raise
            leaf = load_certificates(stored.bundle)[0]
            edge = leaf.not_valid_after_utc if isinstance(outside, CertExpired) else leaf.not_valid_before_utc
            return self._verify_bundle(stored.bundle, key, now=edge)

    def install(self, certificate: bytes, private_key: bytes) -> VerifiedCertificate:
        """Verify a certificate (PEM, chain optional) and its PEM private key, then make them current.

        Used for the first setup and for manual replacement; any previous certificate is archived.
        """
        key = _load_private_key(private_key, "the private key given to install()")
        verified = self._verify_bundle(certificate, key)
        self._swap(verified, key)
        return verified

    @property
    def current(self) -> VerifiedCertificate:
        """The certificate in force (as verified when loaded or renewed)."""
        if self._current is None:
            raise CertNotLoaded("no insurance certificate is loaded; call load() or install() first")
        return self._current

    @property
    def private_key(self) -> PrivateKeyTypes:
        """The current certificate's private key, for signing to the insurer; never logged.

        Only where the store keeps keys, or on the instance that renewed: a shared store keeps
        none, so an instance that loaded or adopted the certificate from it has no key."""
        held = self.current  # CertNotLoaded if none
        if self._key is None:
            raise CertNotLoaded(f"this instance holds no private key for certificate {held.fingerprint[:16]}: "
                                f"{self.store.where} keeps no keys (only the instance that renewed it held one)")
        return self._key

    # --- checks -----------------------------------------------------------------------------

    def preflight(self, seconds: float = 0, now: dt.datetime | None = None) -> VerifiedCertificate:
        """The certificate if it is valid now and for at least ``seconds`` more; else the typed reason.

        A pure check against the held certificate and the clock, cheap enough for every operation.
        """
        current = self.current
        moment = self._now(now)
        state = self._held_state()
        if state.revoked_reason is not None:
            raise CertRevoked(
                f"the insurer revoked the certificate at {state.revoked_at} ({state.revoked_reason}); "
                "operations are refused until a new certificate is installed or renewed"
            )
        if moment < current.not_before:
            raise CertNotYetValid(f"the certificate is not valid until {current.not_before.isoformat()}")
        remaining = current.remaining(moment)
        if remaining.total_seconds() < 0:
            raise CertExpired(f"the certificate expired at {current.not_after.isoformat()}; renew it with the insurer")
        if remaining.total_seconds() < seconds:
            raise CertValidityTooShort(
                f"the certificate expires at {current.not_after.isoformat()}, {int(remaining.total_seconds())} s from "
                f"now, but the operation needs {int(seconds)} s; renew the certificate before starting it"
            )
        return current

    def check_expiry(self, now: dt.datetime | None = None) -> list[ExpiryWarning]:
        """Warnings newly due at ``now``: at most one, for the tightest threshold crossed.

        Each threshold fires once per certificate. If several were crossed since the last check
        (e.g. the first check happens 5 days before expiry), only the most urgent is reported and
        the looser ones are marked done: a "30 days" warning when 5 remain would be misleading.
        """
        current = self.current
        remaining = current.remaining(self._now(now))
        state = self._held_state()
        if remaining.total_seconds() <= 0:
            return []
        crossed = [
            days for days in self._thresholds if remaining <= dt.timedelta(days=days) and days not in state.warned_days
        ]
        if not crossed:
            return []
        state.warned_days = sorted({*state.warned_days, *crossed}, reverse=True)
        self._write_state(state, "warned_days")
        warning = ExpiryWarning(min(crossed), current.fingerprint, current.not_after, remaining)
        logs.event(
            logger,
            "insurance certificate expires soon",
            logging.WARNING,
            event="cert.expiry_warning",
            **warning.to_dict(),
        )
        return [warning]

    # --- revocation -------------------------------------------------------------------------

    def mark_revoked(self, reason: str, *, fingerprint: str | None = None, now: dt.datetime | None = None) -> bool:
        """Record that the insurer revoked the certificate; refused by :meth:`preflight` from now on.

        With ``fingerprint``, only that certificate is revoked: a late report about a certificate
        already replaced must not revoke its successor. Returns whether the current one was revoked.
        """
        current = self.current
        if fingerprint is not None and fingerprint != current.fingerprint:
            logs.event(
                logger,
                "revocation of a certificate no longer in use ignored",
                event="cert.revocation_ignored",
                fingerprint=fingerprint,
                current=current.fingerprint,
            )
            return False
        state = self._held_state()
        state.revoked_reason, state.revoked_at = reason, self._now(now).isoformat()
        self._write_state(state, "revoked_reason", "revoked_at")
        logs.event(
            logger,
            "insurance certificate revoked",
            logging.ERROR,
            event="cert.revoked",
            fingerprint=current.fingerprint,
            reason=reason,
        )
        return True

    @property
    def revoked(self) -> bool:
        """Whether the current certificate was reported revoked."""
        return self._held_state().revoked_reason is not None

    # --- renewal ----------------------------------------------------------------------------

    @property
    def next_renewal_at(self) -> dt.datetime:
        """When the next renewal attempt falls due; the actor sets its timer to this.

        The start of the renewal window, or the revocation time if earlier (a new key is the
        remedy), but never before the backoff after a failed attempt.
        """
        state = self._held_state()
        due = self.current.not_after - self._renew_before
        if state.revoked_at is not None:
            due = min(due, dt.datetime.fromisoformat(state.revoked_at))
        if state.next_attempt_at is not None:
            due = max(due, dt.datetime.fromisoformat(state.next_attempt_at))
        return due

    @property
    def renewal_failures(self) -> int:
        """Renewal attempts of the current certificate that failed in a row (the backoff's exponent)."""
        return self._held_state().renewal_failures

    def renewal_due(self, now: dt.datetime | None = None) -> bool:
        """True when a renewal attempt should run now (see :attr:`next_renewal_at`)."""
        return self._now(now) >= self.next_renewal_at

    def renew(self, now: dt.datetime | None = None) -> RenewalOutcome:
        """One renewal attempt: new key and CSR, the renewer's certificate validated, then an atomic swap.

        Renewer failures and invalid answers (any :class:`TaiError`) keep the old certificate and
        schedule the next attempt with exponential backoff; other exceptions are bugs and propagate.
        """
        if self._renewer is None:
            raise RenewalFailed("no renewer is configured, so the certificate cannot be renewed")
        request = self.begin_renewal()
        try:
            answer = self._renewer.renew(request.csr_pem)
        except TaiError as exc:
            return self.renewal_failed(request, exc, now)
        return self.complete_renewal(request, answer, now)

    def begin_renewal(self) -> RenewalRequest:
        """The first half of :meth:`renew`, for a caller that cannot wait for the renewer (the actor):
        a new key and its CSR. Send ``csr_pem`` to the insurer, then pass its answer to
        :meth:`complete_renewal`, or its error to :meth:`renewal_failed`."""
        old = self.current
        key, csr = generate_key_and_csr(old.policy.customer_name)
        return RenewalRequest(old.fingerprint, csr.public_bytes(serialization.Encoding.PEM), key)

    def complete_renewal(self, request: RenewalRequest, answer: bytes, now: dt.datetime | None = None
                         ) -> RenewalOutcome:
        """Validate the insurer's ``answer`` to ``request`` and swap it in; a failed outcome keeps the old one."""
        old = self.current
        moment = self._now(now)
        if old.fingerprint != request.fingerprint:
            replaced = RenewalFailed("the certificate was replaced while this renewal was in flight; answer discarded")
            return self.renewal_failed(request, replaced, moment)
        try:
            new = self._verify_bundle(answer, request.key, now=moment)
            _require_same_policy(old, new)
        except TaiError as exc:
            return self._renewal_failed(old, exc, moment)
        try:
            self._swap(new, request.key)
        except CertStateConflict as elsewhere:  # a shared store: another instance installed one first
            return self._renewal_failed(old, elsewhere, moment)
        logs.event(
            logger,
            "insurance certificate renewed",
            event="cert.renewed",
            old_fingerprint=old.fingerprint,
            fingerprint=new.fingerprint,
            not_after=new.not_after.isoformat(),
        )
        return RenewalOutcome(True, new, new.not_after - self._renew_before, 0)

    def renewal_failed(self, request: RenewalRequest, error: TaiError, now: dt.datetime | None = None
                       ) -> RenewalOutcome:
        """The renewer could not answer ``request``: keep the current certificate and back off.

        An attempt for a certificate already replaced changes nothing: the current one's schedule stands.
        """
        current = self.current
        if request.fingerprint != current.fingerprint:
            return RenewalOutcome(False, current, self.next_renewal_at, self.renewal_failures, error)
        return self._renewal_failed(current, error, self._now(now))

    def _renewal_failed(self, old: VerifiedCertificate, error: TaiError, moment: dt.datetime) -> RenewalOutcome:
        state = self._held_state()
        state.renewal_failures += 1
        delay = min(self._retry_base * 2 ** (state.renewal_failures - 1), self._retry_cap)
        retry_at = moment + delay
        state.next_attempt_at = retry_at.isoformat()
        self._write_state(state, "renewal_failures", "next_attempt_at")
        logs.event(
            logger,
            "insurance certificate renewal failed; keeping the current one",
            logging.WARNING,
            event="cert.renewal_failed",
            code=error.code,
            error=error.message,
            failures=state.renewal_failures,
            next_attempt_at=state.next_attempt_at,
            fingerprint=old.fingerprint,
        )
        return RenewalOutcome(False, old, retry_at, state.renewal_failures, error)

    # --- internals --------------------------------------------------------------------------

    def _verify_bundle(
        self, bundle: bytes, key: PrivateKeyTypes | None, *, now: dt.datetime | None = None
    ) -> VerifiedCertificate:
        """Verify the first certificate of ``bundle`` (the rest are its chain) and that ``key``, if
        given, is its key."""
        leaf, *chain = load_certificates(bundle)
        verified = self._verifier.verify(leaf, now=self._now(now), intermediates=chain)
        if key is not None and not same_public_key(leaf.public_key(), key.public_key()):
            raise CertKeyMismatch("the certificate's public key does not match the private key it came with")
        return verified

    def _swap(self, new: VerifiedCertificate, key: PrivateKeyTypes) -> None:
        """Replace the stored certificate (the old one archived) in one step of the store; only
        then hold the new one, so a refused replacement (``CertStateConflict``) changes nothing."""
        old = None
        if self._current is not None:
            held = self._current
            old = Replaced(held.fingerprint, f"{held.not_after.strftime('%Y%m%dT%H%M%SZ')}-{held.fingerprint[:16]}.pem",
                           _pem_chain(held))
        state = _State(fingerprint=new.fingerprint, warned_days=[])
        self.store.replace(_pem_chain(new), private_key_pem(key) if self.store.keeps_keys else None, asdict(state), old)
        self._current, self._key, self._state = new, key, state

    def _held_state(self) -> _State:
        if self._state is None:
            raise CertNotLoaded("no insurance certificate is loaded; call load() or install() first")
        return self._state

    def _write_state(self, state: _State, *changed: str) -> None:
        """Save the state; a shared store that refuses (busy, unreachable, or its document edited
        into nonsense) leaves it held in memory and logged, so a warning, revocation or backoff
        still takes effect on this instance instead of crashing the caller (the actor)."""
        try:
            self.store.save_state(asdict(state), changed)
        except (CertStateConflict, CertStateCorrupt, CertStoreUnavailable) as refused:
            logs.event(logger, "the certificate state was not saved; this instance holds it", logging.ERROR,
                       event="cert.state_unsaved", code=refused.code, reason=refused.message, fields=list(changed))

    def _now(self, now: dt.datetime | None) -> dt.datetime:
        return aware(now) if now is not None else aware(self._clock())


@contextmanager
def _named(where: str) -> Iterator[None]:
    """A refusal re-raised (same type and code) with where the certificate was read: a start that
    fails, or an adoption refused, names the file or the shared document to look at."""
    try:
        yield
    except TaiError as refused:
        raise type(refused)(f"{where}: {refused.message}", code=refused.code, detail=refused.detail) from None


def _state_for(stored: StoredCertificate, fingerprint: str) -> _State:
    """The saved state if it belongs to ``fingerprint``; a fresh one if the certificate changed."""
    if stored.state is None:
        return _State(fingerprint=fingerprint, warned_days=[])
    try:
        state = _State(**stored.state)
    except TypeError as exc:
        raise CertStateCorrupt(f"the certificate state in {stored.where} is unreadable ({exc}); restore it, or "
                               "delete it deliberately (a revocation recorded in it would be lost)") from None
    return state if state.fingerprint == fingerprint else _State(fingerprint=fingerprint, warned_days=[])


def _require_same_policy(old: VerifiedCertificate, new: VerifiedCertificate) -> None:
    if (new.policy.policy_id, new.policy.customer_account) != (old.policy.policy_id, old.policy.customer_account):
        raise CertRenewalMismatch(
            f"the renewed certificate is for policy {new.policy.policy_id!r} / account "
            f"{new.policy.customer_account!r}, not {old.policy.policy_id!r} / {old.policy.customer_account!r}; "
            "refusing to switch policies by renewal"
        )


def _pem_chain(verified: VerifiedCertificate) -> bytes:
    """The certificate and its intermediates (the anchor is configuration, not stored with it)."""
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in verified.chain[:-1])


def _load_private_key(data: bytes, source: str) -> PrivateKeyTypes:
    try:
        return serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise KeyInvalid(f"{source} holds no readable unencrypted PEM private key") from None
