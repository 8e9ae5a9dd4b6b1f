"""Verification of a stored ledger and of an exported directory, naming the first bad item.

Both walk the receipts in leaf order through one :class:`_ReceiptWalk`, which checks what a
customer can check with the public key alone: the receipt's form, its ``hash``, its signature
(contractual) or its session MAC (advisory, only inside the session that made it), its place in
its chain (``seq``, ``prev``) and in the tree (``leaf_index``), and builds the Merkle tree whose
roots must match the signed checkpoints.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tai_autonomics.ledger.canonical import parse_json
from tai_autonomics.ledger.errors import CanonicalJSONError, LedgerError, NoteError, ProofError, VerificationError
from tai_autonomics.ledger.keys import LedgerPublicKey
from tai_autonomics.ledger.merkle import MerkleTree, leaf_hash
from tai_autonomics.ledger.note import Checkpoint, open_checkpoint
from tai_autonomics.ledger.proofs import InclusionProof
from tai_autonomics.ledger.receipts import ADVISORY, CONTRACTUAL, MODES, EvalSession, digest_and_canonical
from tai_autonomics.ledger.store import ChainHead, LedgerStore, StoredLeaf

RECEIPTS_FILE, PROOFS_FILE, CHECKPOINT_FILE, PUBLIC_KEY_FILE = "receipts.jsonl", "proofs.jsonl", "checkpoint", "public_key.pem"
_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_STRING_MEMBERS = ("id", "kind", "mode", "authority", "chain", "prev", "time", "hash")


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """What a successful verification covered."""

    tree_size: int
    chains: int
    contractual: int
    advisory: int
    session_macs_checked: int
    checkpoint: Checkpoint

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": True,
            "tree_size": self.tree_size,
            "chains": self.chains,
            "contractual": self.contractual,
            "advisory": self.advisory,
            "session_macs_checked": self.session_macs_checked,
            "root": base64.b64encode(self.checkpoint.root).decode(),
        }


class _Bad(Exception):
    """A receipt check failed; the walk adds where."""


class _ReceiptWalk:
    """Checks receipts one by one in leaf order and grows the tree they form."""

    def __init__(self, public: LedgerPublicKey, session: EvalSession | None) -> None:
        self.public = public
        self.session = session
        self.tree = MerkleTree()
        self.heads: dict[str, ChainHead] = {}
        self.ids: set[str] = set()
        self.contractual = self.advisory = self.macs = 0

    def add(self, data: bytes) -> bytes:
        """Check the receipt ``data`` at the next leaf position; return its leaf hash."""
        try:
            obj = parse_json(data)
        except CanonicalJSONError as exc:
            raise _Bad(exc.message) from None
        if not isinstance(obj, dict):
            raise _Bad("not a JSON object")
        self._check_form(obj)
        position = self.tree.size
        if obj["leaf_index"] != position:
            raise _Bad(f"says leaf_index {obj['leaf_index']} but is at leaf {position} (moved, or one before it is missing)")
        if obj["id"] in self.ids:
            raise _Bad(f"receipt id {obj['id']} appears twice")
        try:
            digest, canonical = digest_and_canonical(obj)
        except CanonicalJSONError as exc:
            raise _Bad(exc.message) from None
        if canonical != bytes(data):
            raise _Bad("not in RFC 8785 canonical form")
        if digest.hex() != obj["hash"]:
            raise _Bad("hash does not match the receipt's contents")
        if obj["authority"] == CONTRACTUAL:
            self._check_signature(obj, digest)
        else:
            self._check_advisory(obj)
        last = self.heads.get(obj["chain"], ChainHead())
        if obj["seq"] != last.seq + 1:
            raise _Bad(f"chain {obj['chain']}: seq {obj['seq']} follows seq {last.seq}")
        if obj["prev"] != last.hash:
            raise _Bad(f"chain {obj['chain']}: prev is not the hash of seq {last.seq}")
        self.heads[obj["chain"]] = ChainHead(obj["seq"], obj["hash"])
        self.ids.add(obj["id"])
        leaf = leaf_hash(canonical)
        self.tree.append(leaf)
        return leaf

    def _check_form(self, obj: dict[str, Any]) -> None:
        for name in _STRING_MEMBERS:
            if not isinstance(obj.get(name), str):
                raise _Bad(f"member {name!r} is missing or not a string")
        for name in ("seq", "leaf_index"):
            value = obj.get(name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise _Bad(f"member {name!r} is missing or not a non-negative integer")
        if not isinstance(obj.get("payload"), dict):
            raise _Bad("member 'payload' is missing or not an object")
        if obj["mode"] not in MODES or obj["authority"] != (ADVISORY if obj["mode"] == "eval" else CONTRACTUAL):
            raise _Bad(f"mode {obj['mode']!r} with authority {obj['authority']!r} is not allowed")
        if not _TIME.fullmatch(obj["time"]):
            raise _Bad("time is not RFC 3339 UTC with a Z")
        if not obj["chain"]:
            raise _Bad("chain is empty")

    def _check_signature(self, obj: dict[str, Any], digest: bytes) -> None:
        if "session_mac" in obj:
            raise _Bad("a contractual receipt must not carry a session MAC")
        if obj.get("key_id") != self.public.key_id:
            raise _Bad(f"key_id {obj.get('key_id')!r} is not the ledger key {self.public.key_id}")
        try:
            signature = base64.b64decode(obj.get("signature", ""), validate=True)
        except (binascii.Error, TypeError, ValueError):
            raise _Bad("signature is not base64") from None
        if not self.public.verify(signature, digest):
            raise _Bad("signature does not verify with the ledger key")
        self.contractual += 1

    def _check_advisory(self, obj: dict[str, Any]) -> None:
        if "signature" in obj or "key_id" in obj:
            raise _Bad("an advisory receipt must not carry a signature")
        if not isinstance(obj.get("disclaimer"), str) or not isinstance(obj.get("epoch"), int):
            raise _Bad("an advisory receipt needs its disclaimer and epoch")
        if not isinstance(obj.get("session_mac"), str) or not _HEX64.fullmatch(obj["session_mac"]):
            raise _Bad("session_mac is not 64 lowercase hex digits")
        if self.session is not None and obj["chain"] == self.session.id:
            if not self.session.check(obj):
                raise _Bad(f"session MAC does not verify for epoch {obj['epoch']}")
            self.macs += 1
        self.advisory += 1

    def report(self, checkpoint: Checkpoint) -> VerifyReport:
        return VerifyReport(self.tree.size, len(self.heads), self.contractual, self.advisory, self.macs, checkpoint)


def verify_store(
    store: LedgerStore, public: LedgerPublicKey, *, origin: str | None = None, session: EvalSession | None = None
) -> VerifyReport:
    """Verify every stored receipt and checkpoint; raise VerificationError at the first bad one.

    Besides each receipt, checks the stored leaf hash the tree is rebuilt from, and that every
    stored checkpoint (one per appended batch) is signed and has the root of the receipts
    before it, so a change that keeps each receipt self-consistent is still caught and placed
    within its batch.
    """
    walk = _ReceiptWalk(public, session)
    checkpoints = store.checkpoints()
    pending = next(checkpoints, None)
    latest: Checkpoint | None = None
    batch_first: StoredLeaf | None = None

    def settle() -> None:
        nonlocal pending, latest, batch_first
        while pending is not None and pending.size == walk.tree.size:
            latest = _check_stored_checkpoint(pending, walk.tree, public, origin, batch_first)
            batch_first = None
            pending = next(checkpoints, None)

    for leaf in store.leaves():
        settle()
        if leaf.leaf_index != walk.tree.size:
            raise VerificationError(
                f"leaf {walk.tree.size}", f"missing: the next stored receipt {leaf.receipt_id} is at leaf {leaf.leaf_index}",
                leaf_index=walk.tree.size, receipt_id=leaf.receipt_id,
            )
        batch_first = batch_first or leaf
        _add_stored(walk, leaf)
    settle()
    if pending is not None:
        raise VerificationError(
            f"leaf {walk.tree.size}", f"missing: the checkpoint of size {pending.size} covers receipts not stored",
            leaf_index=walk.tree.size,
        )
    if batch_first is not None:
        raise VerificationError(
            f"receipt {batch_first.receipt_id} (leaf {batch_first.leaf_index})", "stored after the last checkpoint",
            leaf_index=batch_first.leaf_index, receipt_id=batch_first.receipt_id,
        )
    if latest is None:
        raise VerificationError("checkpoints", "the store holds no checkpoint")
    return walk.report(latest)


def _add_stored(walk: _ReceiptWalk, leaf: StoredLeaf) -> None:
    where = f"receipt {leaf.receipt_id} (leaf {leaf.leaf_index})"
    try:
        computed = walk.add(leaf.data)
    except _Bad as bad:
        raise VerificationError(where, str(bad), leaf_index=leaf.leaf_index, receipt_id=leaf.receipt_id) from None
    if computed != leaf.leaf_hash:
        raise VerificationError(
            where, "stored leaf hash does not match the receipt", leaf_index=leaf.leaf_index, receipt_id=leaf.receipt_id
        )


def _check_stored_checkpoint(
    checkpoint: Checkpoint, tree: MerkleTree, public: LedgerPublicKey, origin: str | None, first: StoredLeaf | None
) -> Checkpoint:
    where = f"checkpoint of size {checkpoint.size}"
    try:
        opened = open_checkpoint(checkpoint.note, public, origin)
    except NoteError as exc:
        raise VerificationError(where, exc.message, tree_size=checkpoint.size) from None
    if opened.size != checkpoint.size or opened.root != checkpoint.root:
        raise VerificationError(where, "its stored size or root differs from its signed note", tree_size=checkpoint.size)
    if tree.root() != opened.root:
        named = f"; the batch starts at receipt {first.receipt_id} (leaf {first.leaf_index})" if first else ""
        raise VerificationError(where, f"root does not match the receipts it covers{named}", tree_size=checkpoint.size)
    return opened


def verify_export(directory: str | Path, *, session: EvalSession | None = None) -> VerifyReport:
    """Verify an exported directory offline: receipts, chains, proofs and the signed checkpoint."""
    base = Path(directory)
    public = LedgerPublicKey.from_pem(_read(base / PUBLIC_KEY_FILE), PUBLIC_KEY_FILE)
    try:
        checkpoint = open_checkpoint(_read(base / CHECKPOINT_FILE).decode("utf-8", "replace"), public)
    except NoteError as exc:
        raise VerificationError(CHECKPOINT_FILE, exc.message) from None
    walk = _ReceiptWalk(public, session)
    for number, (line, proof_line) in enumerate(_paired_lines(base), start=1):
        where = f"{RECEIPTS_FILE} line {number}"
        try:
            leaf = walk.add(line)
        except _Bad as bad:
            raise VerificationError(where, str(bad), line=number, leaf_index=number - 1) from None
        try:
            proof = InclusionProof.from_json(parse_json(proof_line))
            if (proof.leaf_index, proof.tree_size) != (number - 1, checkpoint.size):
                raise ProofError(f"proof is for leaf {proof.leaf_index} of size {proof.tree_size}")
            proof.verify(leaf, checkpoint.root)
        except LedgerError as exc:
            raise VerificationError(f"{PROOFS_FILE} line {number}", exc.message, line=number) from None
    if walk.tree.size != checkpoint.size:
        raise VerificationError(RECEIPTS_FILE, f"holds {walk.tree.size} receipts, the checkpoint covers {checkpoint.size}")
    if walk.tree.root() != checkpoint.root:
        raise VerificationError(RECEIPTS_FILE, "the receipts' tree root differs from the checkpoint")
    return walk.report(checkpoint)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise VerificationError(str(path), f"cannot read: {exc.strerror}") from None


def _paired_lines(base: Path) -> Iterator[tuple[bytes, bytes]]:
    """Lines of receipts.jsonl with the same line of proofs.jsonl; an uneven count is an error."""
    try:
        with open(base / RECEIPTS_FILE, "rb") as receipts, open(base / PROOFS_FILE, "rb") as proofs:
            for number, line in enumerate(receipts, start=1):
                proof = proofs.readline()
                if not proof:
                    raise VerificationError(f"{PROOFS_FILE} line {number}", "missing: fewer proofs than receipts")
                yield line.rstrip(b"\n"), proof.rstrip(b"\n")
            if proofs.readline():
                raise VerificationError(PROOFS_FILE, "more proofs than receipts")
    except OSError as exc:
        raise VerificationError(str(exc.filename or base), f"cannot read: {exc.strerror}") from None
