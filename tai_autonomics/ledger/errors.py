"""Errors of the receipt ledger.

Each has a stable ``code`` so the gateway, the CLI and the remote shell can report them
without parsing messages. Messages name what is wrong (which receipt, which file, which line)
and never contain key material.
"""

from __future__ import annotations

from typing import Any

from tai_autonomics.errors import TaiError


class LedgerError(TaiError):
    """Base of every deliberate ledger error."""

    code = "ledger_error"


class LedgerRequestInvalid(LedgerError):
    """A call to the ledger actor is malformed (a field missing or of the wrong type, a limit out of range)."""

    code = "ledger_bad_request"


class CanonicalJSONError(LedgerError):
    """A value cannot be represented in RFC 8785 canonical JSON, or a JSON text is malformed."""

    code = "ledger_bad_json"


class DraftError(LedgerError):
    """A receipt draft is invalid (unknown mode, bad kind, missing chain, bad payload)."""

    code = "ledger_bad_draft"


class ProofError(LedgerError):
    """A Merkle proof or a checkpoint does not verify, or a proof request is out of range."""

    code = "ledger_proof_invalid"


class NoteError(LedgerError):
    """A signed note or checkpoint is malformed or its signature does not verify."""

    code = "ledger_note_invalid"


class LedgerKeyError(LedgerError):
    """The ledger key is missing or unreadable. Never carries the key's bytes."""

    code = "ledger_key_invalid"


class NotFoundError(LedgerError):
    """A receipt or checkpoint asked for does not exist."""

    code = "ledger_not_found"


class StoreError(LedgerError):
    """The store failed (I/O, locked, unreachable)."""

    code = "ledger_store_error"


class StoreUnavailable(StoreError):
    """The store cannot take writes now (disk full, file system read-only, I/O error): nothing
    was written, reads may still work, and a later append may succeed once the disk allows
    (ProdMode holds the daemon ``read_only`` meanwhile: docs/reliability.md)."""

    code = "ledger_unavailable"


class StoreCorruptError(StoreError):
    """The store's contents are not a valid ledger (not a database, bad rows, broken tree)."""

    code = "ledger_store_corrupt"


class ConflictError(StoreError):
    """A write would fork a chain or the tree, or give a tree size a second root."""

    code = "ledger_conflict"


class LedgerBusy(ConflictError):
    """Other instances kept winning the race to append for longer than the store waits: nothing
    was written; the caller may retry (docs/specification.md §10: a clear refusal within its timeout, never a hang)."""

    code = "ledger_busy"


class VerifyAborted(LedgerError):
    """A parallel verification could not finish (a worker process died): nothing was concluded."""

    code = "ledger_verify_aborted"


class ExportFailed(LedgerError):
    """An export (or its tiles) could not be written where asked; the message names the place."""

    code = "ledger_export_failed"


class VerificationError(LedgerError):
    """Verification of a ledger or an export failed; ``detail`` names the first bad item."""

    code = "ledger_verify_failed"

    def __init__(self, where: str, reason: str, **detail: Any) -> None:
        super().__init__(f"{where}: {reason}", detail={"where": where, "reason": reason, **detail})

    @property
    def where(self) -> str:
        return str(self.detail.get("where", ""))

    @property
    def reason(self) -> str:
        return str(self.detail.get("reason", ""))
