"""Receipts: drafts, sealing (hash, signature or session MAC), and the immutable stored form.

Wire format (docs/receipts.md): a receipt is one JSON object; ``hash`` is the hex SHA-256 of the RFC 8785
form of the object without ``hash``, ``key_id``, ``signature`` and ``session_mac``. Contractual
receipts carry an Ed25519 ``signature`` over the 32 raw hash bytes and the ``key_id``; advisory
(eval) receipts carry a ``disclaimer``, the session ``epoch`` and ``session_mac`` (HMAC-SHA256 of
the raw hash bytes under that epoch's never-stored secret).

Besides the fields docs/specification.md §4 requires, the body holds ``leaf_index``: the receipt commits to its
own position in the Merkle tree, so a deleted or reordered receipt is named by the first one
that finds itself at the wrong place.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import os
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, NamedTuple, NoReturn

from tai_autonomics.ledger.canonical import SAFE_INT, canonical_json, dumps_plain, parse_json
from tai_autonomics.ledger.errors import CanonicalJSONError, DraftError
from tai_autonomics.ledger.keys import LedgerKey
from tai_autonomics.ledger.merkle import leaf_hash
from tai_autonomics.ledger.operations import CloseOperation, Effect, OpenOperation, check_shown

MODES = frozenset({"eval", "prod", "read_only"})
CONTRACTUAL, ADVISORY = "contractual", "advisory"
UNHASHED_MEMBERS = frozenset({"hash", "key_id", "signature", "session_mac"})
EPOCH_ROTATED = "ledger.epoch_rotated"
DISCLAIMER = (
    "Advisory receipt of an evaluation session: its session MAC can be checked only within "
    "that session; it is not contractual proof of any operation."
)
_KIND = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*")
# The C string encoder of ``json.dumps(ensure_ascii=False)``: the escapes RFC 8785 3.2.2.2 uses
# (``canonical_json`` relies on the same equivalence for every string it writes).
_encode_str = json.encoder.encode_basestring


def rfc3339_utc(moment: datetime) -> str:
    """RFC 3339 UTC timestamp with microseconds and a ``Z``: ``isoformat``'s text (half the time
    of ``strftime("%Y-%m-%dT%H:%M:%S.%fZ")``, the same for every year from 1000 on) with its
    ``+00:00`` replaced."""
    return moment.astimezone(timezone.utc).isoformat(timespec="microseconds")[:-6] + "Z"


def _random_uuid() -> str:
    """``str(uuid.uuid4())`` in a third of its time: 122 random bits, version 4, RFC 4122 variant."""
    h = os.urandom(16).hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"


def receipt_digest(obj: Mapping[str, Any], *, plain: bool = False) -> bytes:
    """The raw SHA-256 receipt hash: over the canonical object without its unhashed members.

    ``plain``: ``obj`` came from :func:`~tai_autonomics.ledger.canonical.parse_json_plain`
    saying so, and :func:`~tai_autonomics.ledger.canonical.dumps_plain` writes its RFC 8785 form
    (no walk through ``canonical_json``).
    """
    body = dict(obj)
    for name in UNHASHED_MEMBERS:
        body.pop(name, None)
    return hashlib.sha256(dumps_plain(body) if plain else canonical_json(body)).digest()


@dataclass(frozen=True, slots=True)
class ReceiptDraft:
    """What a caller asks to record; the ledger adds id, chain position, time and seal.

    ``mode`` decides the authority: ``eval`` drafts become advisory receipts on the ledger's
    eval-session chain (``chain`` must be None or that session's id); others are contractual
    and need ``chain`` (the policy id). The payload is copied, so later changes to the caller's
    dict cannot alter what is recorded.
    """

    kind: str
    mode: str
    payload: Mapping[str, Any]
    chain: str | None = None
    operation_id: str | None = None
    #: what the receipt does to shared state (opens or closes its operation), decided in the append's transaction
    effect: Effect | None = None
    # RFC 8785 text of ``payload``, computed once here and spliced into the receipt when sealing
    payload_json: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.kind, str) or not _KIND.fullmatch(self.kind):
            raise DraftError(f"receipt kind {self.kind!r} is not dotted lowercase words")
        if self.mode not in MODES:
            raise DraftError(f"receipt mode {self.mode!r} is not one of {sorted(MODES)}")
        if self.mode != "eval" and not (isinstance(self.chain, str) and self.chain):
            raise DraftError("a contractual receipt needs its chain (the policy id)")
        if self.chain is not None and not isinstance(self.chain, str):
            raise DraftError("chain must be a string")
        if self.operation_id is not None and not (isinstance(self.operation_id, str) and self.operation_id):
            raise DraftError("operation_id must be a non-empty string")
        if not isinstance(self.payload, Mapping):
            raise DraftError("payload must be a JSON object")
        if self.effect is not None and not isinstance(self.effect, (OpenOperation, CloseOperation)):
            raise DraftError("effect must open or close an operation")
        if self.effect is not None and self.operation_id is None:
            raise DraftError("a draft with an effect needs its operation_id")
        try:
            canonical = canonical_json(dict(self.payload))
            copied = parse_json(canonical)
        except CanonicalJSONError as exc:
            raise DraftError(f"payload: {exc.message}") from None
        object.__setattr__(self, "payload", copied)
        check_shown(self.kind, self.authority, self.operation_id, copied, self.effect)
        # RFC 8785 is idempotent: the copy's canonical form is these same bytes
        object.__setattr__(self, "payload_json", canonical.decode("utf-8"))

    @property
    def authority(self) -> str:
        """``advisory`` for eval drafts, else ``contractual``."""
        return ADVISORY if self.mode == "eval" else CONTRACTUAL


@dataclass(frozen=True, slots=True)
class Receipt:
    """A sealed, stored receipt: its canonical JSON bytes (the Merkle leaf) and its leaf index.

    Immutable: the JSON is kept as bytes and every :meth:`to_dict` is a fresh copy.
    """

    leaf_index: int
    data: bytes
    _fields: Mapping[str, Any] = field(repr=False, compare=False)
    _leaf_hash: bytes | None = field(default=None, init=False, repr=False, compare=False)

    @classmethod
    def from_data(cls, leaf_index: int, data: bytes) -> Receipt:
        """Wrap stored bytes; CanonicalJSONError unless they are a JSON object placed at ``leaf_index``."""
        obj = parse_json(data)
        if not isinstance(obj, dict):
            raise CanonicalJSONError("a receipt must be a JSON object")
        if obj.get("leaf_index") != leaf_index:
            raise CanonicalJSONError(f"receipt says leaf_index {obj.get('leaf_index')!r}, stored at {leaf_index}")
        return cls(leaf_index, bytes(data), obj)

    def to_dict(self) -> dict[str, Any]:
        """A fresh copy of the receipt object."""
        return parse_json(self.data)

    @property
    def id(self) -> str:
        return self._fields["id"]

    @property
    def chain(self) -> str:
        return self._fields["chain"]

    @property
    def seq(self) -> int:
        return self._fields["seq"]

    @property
    def prev(self) -> str:
        return self._fields["prev"]

    @property
    def hash(self) -> str:
        return self._fields["hash"]

    @property
    def kind(self) -> str:
        return self._fields["kind"]

    @property
    def leaf_hash(self) -> bytes:
        """RFC 9162 leaf hash of the canonical receipt, computed on first use: an append needs
        it twice (the tree and the stored row)."""
        if self._leaf_hash is None:
            object.__setattr__(self, "_leaf_hash", leaf_hash(self.data))
        return self._leaf_hash  # type: ignore[return-value]  # set just above


class EvalSession:
    """An eval session: its chain id and one HMAC secret per epoch, held in memory only.

    Rotation adds a secret and keeps the older ones for the life of the session, so a verifier
    inside the session checks each advisory receipt with the secret of the ``epoch`` named in
    its (hashed) body — the original ledger checked every receipt with the current secret and
    so failed across epochs. When the process ends the secrets are gone and the MACs can no
    longer be checked by anyone; that is what keeps advisory receipts non-contractual.
    """

    __slots__ = ("id", "_secrets")

    def __init__(self, session_id: str | None = None) -> None:
        self.id = session_id or f"eval-{uuid.uuid4()}"
        self._secrets = [os.urandom(32)]

    @property
    def epoch(self) -> int:
        """The current epoch (0-based)."""
        return len(self._secrets) - 1

    def rotate(self) -> int:
        """Start a new epoch with a fresh secret; returns its number."""
        self._secrets.append(os.urandom(32))
        return self.epoch

    def mac(self, epoch: int, digest: bytes) -> str:
        """Hex HMAC-SHA256 of a receipt's raw hash under ``epoch``'s secret."""
        return hmac.new(self._secrets[epoch], digest, hashlib.sha256).hexdigest()

    def check(self, receipt: Mapping[str, Any]) -> bool:
        """Whether an advisory receipt of this session carries a valid MAC for its epoch."""
        epoch = receipt.get("epoch")
        mac = receipt.get("session_mac")
        if receipt.get("chain") != self.id or not isinstance(epoch, int) or not 0 <= epoch < len(self._secrets):
            return False
        if not isinstance(mac, str):
            return False
        return hmac.compare_digest(self.mac(epoch, receipt_digest(receipt)), mac)

    def __repr__(self) -> str:
        return f"EvalSession(id={self.id!r}, epoch={self.epoch})"

    def __reduce__(self) -> NoReturn:
        raise TypeError("EvalSession cannot be pickled: its secrets must never leave memory")


def seal(body: dict[str, Any], key: LedgerKey, session: EvalSession) -> tuple[dict[str, Any], bytes]:
    """Hash ``body`` and add the signature (contractual) or session MAC (advisory).

    Returns the sealed receipt object and its canonical bytes.
    """
    return _seal(body, None, key, session)


class Place(NamedTuple):
    """Where a draft is sealed: its chain position, tree position, time and eval epoch."""

    chain: str
    seq: int
    prev: str
    leaf_index: int
    moment: datetime
    epoch: int


def seal_draft(draft: ReceiptDraft, key: LedgerKey, session: EvalSession, at: Place) -> tuple[dict[str, Any], bytes]:
    """:func:`build_body` then :func:`seal`, reusing the draft's canonical payload text."""
    return finish_seal(hash_draft(draft, at), key, session)


class Unsealed(NamedTuple):
    """A hashed receipt body waiting for its signature or MAC (see :func:`hash_draft`)."""

    body: dict[str, Any]
    texts: dict[str, str]
    digest: bytes

    @property
    def hash(self) -> str:
        return self.digest.hex()

    @property
    def contractual(self) -> bool:
        return self.body["authority"] == CONTRACTUAL


def hash_draft(draft: ReceiptDraft, at: Place) -> Unsealed:
    """The first half of :func:`seal_draft`: the body and its hash. The hash is all the next
    receipt of the chain needs (its ``prev``), so a batch can be hashed in order and its
    signatures made afterwards, in parallel (Ed25519 is deterministic: same bytes either way)."""
    return _hash_body(build_body(draft, at), draft.payload_json)


def finish_seal(
    unsealed: Unsealed, key: LedgerKey, session: EvalSession, signature: bytes | None = None
) -> tuple[dict[str, Any], bytes]:
    """The second half of :func:`seal_draft`: add the signature (``key``'s over the hash, or
    ``signature`` when it was made already) or the session MAC; the sealed object and its bytes."""
    body, texts, digest = unsealed
    hex_digest = digest.hex()
    sealed = dict(body, hash=hex_digest)
    texts = dict(texts, hash=f'"{hex_digest}"')
    if body["authority"] == CONTRACTUAL:
        sealed["key_id"] = key.key_id
        sealed["signature"] = base64.b64encode(key.sign(digest) if signature is None else signature).decode()
        texts["key_id"] = _encode_str(sealed["key_id"])
        texts["signature"] = f'"{sealed["signature"]}"'
    else:
        sealed["session_mac"] = session.mac(body["epoch"], digest)
        texts["session_mac"] = f'"{sealed["session_mac"]}"'
    return sealed, _join(texts).encode("utf-8")


def _seal(
    body: dict[str, Any], payload_json: str | None, key: LedgerKey, session: EvalSession
) -> tuple[dict[str, Any], bytes]:
    if payload_json is None and not all(type(name) is str and name.isascii() for name in body):
        return _seal_reference(body, key, session)
    return finish_seal(_hash_body(body, payload_json), key, session)


def _hash_body(body: dict[str, Any], payload_json: str | None) -> Unsealed:
    """Encode each member of ``body`` once; the canonical body (what is hashed) and the canonical
    sealed receipt (the Merkle leaf) are both joins of those member texts in RFC 8785 key order,
    so the receipt is never encoded twice. Members are top-level, with ASCII names (sorting by
    code point is sorting by UTF-16 code unit), and ``canonical_json`` writes any value that is
    not a plain string or safe integer; a property test holds this equal to encoding the whole
    object with ``canonical_json``."""
    texts = {name: _member_text(value) for name, value in body.items() if name != "payload" or payload_json is None}
    if payload_json is not None:
        texts["payload"] = payload_json
    try:
        digest = hashlib.sha256(_join(texts).encode("utf-8")).digest()
    except UnicodeEncodeError:
        raise CanonicalJSONError("value has no canonical JSON form: a string holds a lone surrogate") from None
    return Unsealed(body, texts, digest)


def _seal_reference(body: dict[str, Any], key: LedgerKey, session: EvalSession) -> tuple[dict[str, Any], bytes]:
    """The definition :func:`_seal` computes faster: hash the canonical body, encode the sealed object."""
    digest = receipt_digest(body)
    sealed = dict(body, hash=digest.hex())
    if body["authority"] == CONTRACTUAL:
        sealed["key_id"] = key.key_id
        sealed["signature"] = base64.b64encode(key.sign(digest)).decode()
    else:
        sealed["session_mac"] = session.mac(body["epoch"], digest)
    return sealed, canonical_json(sealed)


def _member_text(value: Any) -> str:
    kind = type(value)
    if kind is str:
        return _encode_str(value)
    if kind is int and -SAFE_INT <= value <= SAFE_INT:
        return str(value)
    return canonical_json(value).decode("utf-8")


@functools.lru_cache(maxsize=256)
def _member_prefix(name: str) -> str:
    """``"name":``, encoded once per member name (a receipt has a dozen, joined twice per seal)."""
    return f"{_encode_str(name)}:"


def _join(texts: dict[str, str]) -> str:
    return "{" + ",".join([_member_prefix(name) + texts[name] for name in sorted(texts)]) + "}"


def build_body(draft: ReceiptDraft, at: Place) -> dict[str, Any]:
    """The hashed body of the receipt ``draft`` becomes at this chain and tree position."""
    body: dict[str, Any] = {
        "id": _random_uuid(),
        "kind": draft.kind,
        "mode": draft.mode,
        "authority": draft.authority,
        "chain": at.chain,
        "seq": at.seq,
        "prev": at.prev,
        "time": rfc3339_utc(at.moment),
        "payload": draft.payload,
        "leaf_index": at.leaf_index,
    }
    if draft.operation_id is not None:
        body["operation_id"] = draft.operation_id
    if draft.authority == ADVISORY:
        body["disclaimer"] = DISCLAIMER
        body["epoch"] = at.epoch
    return body
