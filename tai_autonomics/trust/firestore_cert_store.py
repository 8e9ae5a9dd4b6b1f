"""The certificate state shared by every instance of a deployment, in Firestore (docs/specification.md §10).

Layout, for a deployment named ``name`` (the release's ``[ledger] firestore_ledger``: one
deployment, one ledger, one insurance certificate):

* ``certificates/{name}``: ``{"bundle": certificate and chain (PEM), "fingerprint", "serial",
  "not_after", "installed_by", "installed_at", "state": {"fingerprint", "warned_days",
  "revoked_reason", "revoked_at", "renewal_failures", "next_attempt_at"}}``: the current
  certificate, its revocation flag and renewal backoff, and the expiry warnings already given;
* ``certificates/{name}/leases/renewal``: ``{"holder", "expires_at", "taken_at"}``: which
  instance renews; a lease past ``expires_at`` may be taken over (its holder died or hung);
* ``certificates/{name}/archive/{not_after}-{fingerprint}``: replaced certificates.

No private key is stored: the key is needed only to make the renewal's CSR and to check the
insurer's answer against it, both on the instance that renews; the other instances adopt the
certificate, which is public. (``docs/trust.md`` says why not Firestore for the key.)

Every write is optimistic, as the ledger's are: read, decide, then write with a precondition
(``create`` where nothing was read, else the read's ``update_time``), so of two instances one
wins and the other is refused (``CertStateConflict``) or reads again. Firestore's own errors
become ``CertStoreUnavailable``; a document edited into nonsense is ``CertStateCorrupt`` naming
its path and field.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Collection
from functools import partial
from typing import Any, TypeVar

from google.api_core import exceptions as gexc
from google.cloud import firestore

from tai_autonomics.trust._time import utcnow
from tai_autonomics.trust.cert_store import Replaced, StoredCertificate
from tai_autonomics.trust.certificates import fingerprint, load_certificates
from tai_autonomics.trust.errors import CertStateConflict, CertStateCorrupt, CertStoreUnavailable

_T = TypeVar("_T")
COLLECTION = "certificates"
LEASE = "renewal"
_STATE_ATTEMPTS = 5
"""A state write re-reads and retries this often when other instances write between its read and write."""
_STATE_FIELDS: dict[str, type | tuple[type, ...]] = {
    "fingerprint": str, "warned_days": list, "revoked_reason": (str, type(None)), "revoked_at": (str, type(None)),
    "renewal_failures": int, "next_attempt_at": (str, type(None))}


class FirestoreCertStore:
    """The certificate state of deployment ``name``, shared through Firestore (module docstring)."""

    keeps_keys = False

    def __init__(self, name: str, *, instance: str, client: firestore.Client | None = None,
                 project: str | None = None) -> None:
        self.instance = instance
        try:
            self._client = client or firestore.Client(project=project)
        except (gexc.GoogleAPIError, ValueError, OSError) as exc:
            raise CertStoreUnavailable(f"cannot connect to Firestore: {exc}") from None
        self._doc = self._client.collection(COLLECTION).document(name)
        self._lease = self._doc.collection("leases").document(LEASE)
        self._archive = self._doc.collection("archive")
        self.where = f"Firestore document {self._doc.path}"

    def _call(self, what: str, action: Callable[[], _T]) -> _T:
        """Run ``action``, turning Firestore's errors into typed ones."""
        try:
            return action()
        except (gexc.AlreadyExists, gexc.Conflict, gexc.Aborted, gexc.FailedPrecondition) as exc:
            raise CertStateConflict(f"{self.where}: {what} refused, another instance wrote first ({exc.message})"
                                    ) from None
        except gexc.GoogleAPIError as exc:
            raise CertStoreUnavailable(f"{self.where}: {what} failed: {exc}") from None

    # --- the certificate --------------------------------------------------------------------

    def read(self) -> StoredCertificate | None:
        snap = self._call("read", self._doc.get)
        return self._stored(snap) if snap.exists else None

    def _stored(self, snap: Any) -> StoredCertificate:
        doc = snap.to_dict() or {}
        bundle = doc.get("bundle")
        if not isinstance(bundle, str) or not bundle.isascii():
            raise self._corrupt("field 'bundle' is not a PEM text")
        state = doc.get("state")
        if state is not None and (not isinstance(state, dict) or set(state) - set(_STATE_FIELDS) or any(
                not isinstance(state.get(k), kind) for k, kind in _STATE_FIELDS.items() if k in state)):
            raise self._corrupt("field 'state' is not the certificate state (fields "
                                f"{', '.join(_STATE_FIELDS)} of their types)")
        return StoredCertificate(bundle.encode("ascii"), None, state, self.where)

    def _corrupt(self, reason: str) -> CertStateCorrupt:
        return CertStateCorrupt(f"{self.where}: {reason}; restore the document (the archive subcollection "
                                "holds earlier certificates) or install a certificate deliberately")

    def replace(self, bundle: bytes, key: bytes | None, state: dict[str, Any], old: Replaced | None) -> None:
        """One atomic batch: the archive entry and the new current document, on the condition that
        the stored certificate is still ``old`` (``create`` when ``old`` is None). ``key`` is
        None: :attr:`keeps_keys` is false."""
        leaf = load_certificates(bundle)[0]
        doc = {"bundle": bundle.decode("ascii"), "fingerprint": fingerprint(leaf),
               "serial": format(leaf.serial_number, "x"), "not_after": leaf.not_valid_after_utc.isoformat(),
               "installed_by": self.instance, "installed_at": utcnow().isoformat(), "state": state}
        writes = self._client.batch()
        if old is None:
            writes.create(self._doc, doc)
        else:
            snap = self._call("read", self._doc.get)
            stored = snap.get("fingerprint") if snap.exists else None
            if stored != old.fingerprint:
                raise CertStateConflict(f"{self.where}: holds certificate {str(stored)[:16]}, not "
                                        f"{old.fingerprint[:16]} that this one replaces; another instance "
                                        "installed one first")
            writes.set(self._archive.document(old.archive_name.removesuffix(".pem")),
                       {"bundle": old.bundle.decode("ascii"), "fingerprint": old.fingerprint,
                        "archived_at": utcnow().isoformat(), "archived_by": self.instance})
            writes.update(self._doc, doc, option=self._client.write_option(last_update_time=snap.update_time))
        self._call("install the certificate", writes.commit)

    def save_state(self, state: dict[str, Any], changed: Collection[str]) -> None:
        """Write the ``changed`` fields of ``state`` while the document still holds that certificate
        (else the state is of a replaced certificate and is dropped, as a local store would on
        load); other fields stay as other instances wrote them. Warnings already given are
        merged, so each is given once across instances."""
        for _ in range(_STATE_ATTEMPTS):
            snap = self._call("read", self._doc.get)
            if not snap.exists or snap.get("fingerprint") != state["fingerprint"]:
                return
            fields = {f"state.{name}": state[name] for name in changed}
            if "warned_days" in changed:
                stored = self._stored(snap).state or {}
                fields["state.warned_days"] = sorted({*stored.get("warned_days", []), *state["warned_days"]},
                                                     reverse=True)
            fields["state.fingerprint"] = state["fingerprint"]
            option = self._client.write_option(last_update_time=snap.update_time)
            try:
                self._call("save the certificate state", lambda: self._doc.update(fields, option=option))
                return
            except CertStateConflict:
                continue
        raise CertStateConflict(f"{self.where}: the certificate state changed under {_STATE_ATTEMPTS} attempts "
                                "to save it; it is saved at the next change")

    # --- the renewal lease ------------------------------------------------------------------

    def take_lease(self, ttl_s: float) -> str | None:
        """Take the renewal lease for ``ttl_s`` seconds: None if this instance holds it now, else
        the instance that does. A lease past its expiry is taken over; this instance's own lease
        is extended."""
        snap = self._call("read the lease", self._lease.get)
        now = utcnow()
        lease = {"holder": self.instance, "taken_at": now, "expires_at": now + dt.timedelta(seconds=ttl_s)}
        if snap.exists:
            holder, expires = snap.get("holder"), snap.get("expires_at")
            if holder != self.instance and isinstance(expires, dt.datetime) and expires > now:
                return str(holder)
            write = partial(self._lease.update, lease,
                            option=self._client.write_option(last_update_time=snap.update_time))
        else:
            write = partial(self._lease.create, lease)
        try:
            self._call("take the lease", write)
        except CertStateConflict:  # another instance took it between the read and the write
            return str(self._call("read the lease", self._lease.get).get("holder"))
        return None

    def release_lease(self) -> None:
        """Give the lease back if this instance still holds it (a lease taken over is left alone)."""
        snap = self._call("read the lease", self._lease.get)
        if snap.exists and snap.get("holder") == self.instance:
            held = self._client.write_option(last_update_time=snap.update_time)
            try:
                self._call("release the lease", partial(self._lease.delete, option=held))
            except CertStateConflict:
                pass  # taken over meanwhile: it is the new holder's now

    def close(self) -> None:
        self._client.close()
