"""The ledger a release file configures: its store and key, for the daemon and the CLI alike.

The ``[ledger]`` table of a release file (``rel/*.toml``) names the store (``sqlite``: the file
``DATA_DIR/ledger.sqlite3``; ``firestore``: ledger document ``firestore_ledger`` in the project
named by the environment variable ``firestore_project_env``, else the client's default, or the
emulator's with ``FIRESTORE_EMULATOR_HOST``) and the key (``key_file`` or ``key_env``; only the
dev profile falls back to a key generated in the data directory). One function per concern, so
that ``ledger export --config rel/prod.toml`` reads exactly the ledger the daemon writes.

The insurance certificate's state follows the same choice (:func:`open_cert_store`): beside a
SQLite ledger it is one daemon's ``cert_dir``; beside a Firestore ledger it is shared by every
instance, in documents named after the ledger, in the same project.

The one place that chooses between the stores: the Firestore modules (and the Google client
library behind them, slow to import and of no use to a SQLite daemon) are imported only when ``store = "firestore"``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tai_autonomics.ledger.errors import LedgerError
from tai_autonomics.ledger.keys import LedgerKey, load_ledger_key
from tai_autonomics.ledger.sqlite_store import DB_FILE, SQLiteStore
from tai_autonomics.ledger.store import LedgerStore
from tai_autonomics.trust.cert_store import CertStore, LocalCertStore

DEFAULT_FIRESTORE_LEDGER = "ledger"
STORES = ("sqlite", "firestore")
DEFAULT_CHECKPOINT_INTERVAL_S = 0.25
MAX_CHECKPOINT_INTERVAL_S = 60.0


def open_store(settings: dict[str, Any], data_dir: Path, *, readonly: bool = False) -> LedgerStore:
    """The store ``settings`` (a ``[ledger]`` table) names; ``readonly`` opens SQLite read-only
    (a reader beside the running daemon)."""
    kind = settings.get("store", "sqlite")
    if kind == "sqlite":
        return SQLiteStore(data_dir / DB_FILE, readonly=readonly)
    if kind == "firestore":
        from tai_autonomics.ledger.firestore_store import FirestoreStore

        return FirestoreStore(settings.get("firestore_ledger", DEFAULT_FIRESTORE_LEDGER),
                              project=firestore_project(settings))
    raise LedgerError(f"ledger store {kind!r} is not available (expected {' or '.join(map(repr, STORES))})")


def firestore_project(settings: dict[str, Any]) -> str | None:
    """The project named by the variable ``firestore_project_env``; None: the client's default."""
    project_env = settings.get("firestore_project_env")
    project = os.environ.get(project_env) if project_env else None
    if project_env and not project:
        raise LedgerError(f"environment variable {project_env} (the Firestore project) is unset or empty")
    return project


def open_cert_store(settings: dict[str, Any], cert_dir: Path, *, instance: str) -> CertStore:
    """Where CertManager keeps the certificate for this ``[ledger]`` table: ``cert_dir``, or with a
    Firestore ledger the documents ``certificates/{firestore_ledger}`` shared by every instance
    (``instance`` names this one in leases and in what it installs)."""
    if settings.get("store", "sqlite") == "firestore":
        from tai_autonomics.trust.firestore_cert_store import FirestoreCertStore

        return FirestoreCertStore(settings.get("firestore_ledger", DEFAULT_FIRESTORE_LEDGER), instance=instance,
                                  project=firestore_project(settings))
    return LocalCertStore(cert_dir)


def configured_key(settings: dict[str, Any], data_dir: Path, profile: str) -> LedgerKey:
    """The ledger key ``settings`` names; the dev profile falls back to ``DATA_DIR``'s dev key."""
    return load_ledger_key(key_file=settings.get("key_file"), key_env=settings.get("key_env"),
                           data_dir=data_dir if profile == "dev" else None)


def checkpoint_interval(settings: dict[str, Any]) -> float:
    """``[ledger] checkpoint_interval``: seconds between the checkpoints the ledger signs while
    appends arrive (docs/specification.md §4; default 0.25, 0: after every commit). Reads sign
    one on demand whatever it is, so it bounds how stale the latest checkpoint is, not whether
    a proof is served. A bad value is refused naming the setting."""
    value = settings.get("checkpoint_interval", DEFAULT_CHECKPOINT_INTERVAL_S)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= MAX_CHECKPOINT_INTERVAL_S:
        raise LedgerError(f"[ledger] checkpoint_interval = {value!r}: expected seconds in "
                          f"[0, {MAX_CHECKPOINT_INTERVAL_S:g}]")
    return float(value)
