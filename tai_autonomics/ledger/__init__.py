"""The receipt ledger: signed, chained receipts in an RFC 9162 Merkle tree with signed checkpoints.

Public API for the ReceiptLedger actor, the gateway and the CLI; everything else in the
package is an implementation detail.
"""

from tai_autonomics.ledger._sequencer import NotSequencer, Outcome, Sequencer, open_sequencer
from tai_autonomics.ledger.canonical import canonical_json, parse_json
from tai_autonomics.ledger.core import DEFAULT_ORIGIN, Ledger
from tai_autonomics.ledger.errors import (
    CanonicalJSONError,
    ConflictError,
    DraftError,
    LedgerError,
    LedgerKeyError,
    NoteError,
    NotFoundError,
    ProofError,
    StoreCorruptError,
    StoreError,
    StoreUnavailable,
    VerificationError,
)
from tai_autonomics.ledger.export import export_ledger
from tai_autonomics.ledger.keys import LedgerKey, LedgerPublicKey, load_ledger_key
from tai_autonomics.ledger.merkle import MerkleTree, leaf_hash, node_hash, verify_consistency, verify_inclusion
from tai_autonomics.ledger.note import Checkpoint, open_checkpoint, parse_verifier_key, sign_note, verify_note
from tai_autonomics.ledger.proofs import ConsistencyProof, InclusionProof
from tai_autonomics.ledger.receipts import DISCLAIMER, EPOCH_ROTATED, EvalSession, Receipt, ReceiptDraft
from tai_autonomics.ledger.sqlite_store import DB_FILE, SQLiteStore
from tai_autonomics.ledger.store import ChainHead, LedgerStore, LogHead, SealedBatch, StoredLeaf
from tai_autonomics.ledger.verify import VerifyReport, verify_export, verify_store

__all__ = [
    "DB_FILE", "DEFAULT_ORIGIN", "DISCLAIMER", "EPOCH_ROTATED",
    "CanonicalJSONError", "ChainHead", "Checkpoint", "ConflictError", "ConsistencyProof", "DraftError",
    "EvalSession", "InclusionProof", "Ledger", "LedgerError", "LedgerKey", "LedgerKeyError", "LedgerPublicKey",
    "LedgerStore", "LogHead", "MerkleTree", "NoteError", "NotFoundError", "NotSequencer", "Outcome", "ProofError",
    "Receipt", "ReceiptDraft", "SQLiteStore", "Sequencer",
    "SealedBatch", "StoreCorruptError", "StoreError", "StoreUnavailable", "StoredLeaf",
    "VerificationError",
    "VerifyReport", "canonical_json", "export_ledger", "leaf_hash", "load_ledger_key", "node_hash",
    "open_checkpoint", "open_sequencer", "parse_json", "parse_verifier_key", "sign_note", "verify_consistency",
    "verify_export",
    "verify_inclusion", "verify_note", "verify_store",
]
