"""Where CertManager keeps the current certificate and its state: the certificate-state interface.

Two implementations, chosen by the release's ``[ledger]`` store (the actor decides):

- :class:`LocalCertStore`: the directory ``cert_dir`` of one daemon (SQLite releases and the dev
  profile): ``current.pem`` (certificate, chain, then its private key, mode 0600, replaced as
  one file so certificate and key never disagree), ``state.json`` and ``archive/``.
- :class:`~tai_autonomics.trust.firestore_cert_store.FirestoreCertStore`: documents shared by
  every instance of a deployment (Cloud Run), written with preconditions so that two instances
  never both replace the certificate. It keeps no private key (see ``docs/trust.md``).

The core (:class:`~tai_autonomics.trust.cert_manager.CertManager`) makes every decision; a store
only reads and writes, and says so with typed errors naming where (``CertStateCorrupt``,
``CertStateConflict``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from tai_autonomics.trust._files import PRIVATE_FILE_MODE, atomic_write
from tai_autonomics.trust.errors import CertNotLoaded, CertStateCorrupt

CURRENT_FILE = "current.pem"
STATE_FILE = "state.json"
ARCHIVE_DIR = "archive"


@dataclass(frozen=True)
class StoredCertificate:
    """What a store holds: the certificate with its chain (PEM), its key if the store keeps
    keys, and the saved state (the fields of the core's ``_State``; None: none saved)."""

    bundle: bytes
    key: bytes | None
    state: dict[str, Any] | None
    where: str
    """Names the place in errors and logs: a file path, or a Firestore document path."""


@dataclass(frozen=True)
class Replaced:
    """The certificate a replacement replaces: its fingerprint (a shared store's precondition),
    and what goes to the archive under ``archive_name`` (the chain, never a key)."""

    fingerprint: str
    archive_name: str
    bundle: bytes


class CertStore(Protocol):
    """The certificate-state interface the core reads and writes through."""

    where: str
    keeps_keys: bool
    """Whether the private key is stored beside the certificate (and so is required on load)."""

    def read(self) -> StoredCertificate | None:
        """The stored certificate, or None if there is none yet; ``CertStateCorrupt`` if unreadable."""
        ...

    def replace(self, bundle: bytes, key: bytes | None, state: dict[str, Any], old: Replaced | None) -> None:
        """Make ``bundle`` current with ``state``, archiving ``old`` (None: the first certificate).

        A shared store refuses with ``CertStateConflict`` unless the stored certificate is still
        ``old`` (or, for the first, still none): of two instances installing, one wins and nothing
        of the other's is written."""
        ...

    def save_state(self, state: dict[str, Any], changed: Collection[str]) -> None:
        """Save ``state`` (of the certificate ``state["fingerprint"]``); ``changed`` names the fields
        this write changes, so a shared store writes only those and keeps other instances' changes."""
        ...


@runtime_checkable
class LeasedCertStore(Protocol):
    """A store shared by several instances, whose renewals go under a lease (the Firestore one).

    A protocol, so that the actor tells a shared store from a local one without importing the
    Firestore store (and the Google client library) where none is configured."""

    def take_lease(self, ttl_s: float) -> str | None:
        """Take the renewal lease for ``ttl_s`` seconds: None if this instance holds it now, else
        the instance that does."""
        ...

    def release_lease(self) -> None:
        """Give the lease back if this instance still holds it."""
        ...

    def close(self) -> None:
        """Close the connection to the shared store."""
        ...


class LocalCertStore:
    """One daemon's certificate directory (see the module docstring)."""

    keeps_keys = True

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.where = str(self.directory / CURRENT_FILE)

    def read(self) -> StoredCertificate | None:
        path = self.directory / CURRENT_FILE
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise CertNotLoaded(f"cannot read {path}: {exc.strerror}") from None
        return StoredCertificate(data, data, self._read_state(), str(path))

    def _read_state(self) -> dict[str, Any] | None:
        path = self.directory / STATE_FILE
        try:
            saved = json.loads(path.read_text("utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise _corrupt(path, exc) from None
        if not isinstance(saved, dict):
            raise _corrupt(path, "not a JSON object")
        return saved

    def replace(self, bundle: bytes, key: bytes | None, state: dict[str, Any], old: Replaced | None) -> None:
        """Archive the old certificate, then replace ``current.pem`` in one ``os.replace``."""
        if old is not None:
            atomic_write(self.directory / ARCHIVE_DIR / old.archive_name, old.bundle)
        atomic_write(self.directory / CURRENT_FILE, bundle + (key or b""), mode=PRIVATE_FILE_MODE)
        self.save_state(state, state)

    def save_state(self, state: dict[str, Any], changed: Collection[str]) -> None:
        atomic_write(self.directory / STATE_FILE, json.dumps(state, indent=2).encode())


def _corrupt(path: Path, reason: object) -> CertStateCorrupt:
    return CertStateCorrupt(f"{path} is unreadable ({reason}); restore it, or delete it deliberately "
                            "(a revocation recorded in it would be lost)")
