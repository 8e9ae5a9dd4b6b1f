"""C2SP signed notes and tlog checkpoints (https://c2sp.org/signed-note, /tlog-checkpoint).

A checkpoint body is ``origin\\nsize\\nbase64(root)\\n``; the note appends a blank line and one
signature line ``— <name> base64(key ID || Ed25519 signature of the body)``. The key name is the
origin, so a verifier holding only the public key can recompute the key ID.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

from tai_autonomics.ledger.errors import NoteError
from tai_autonomics.ledger.keys import LedgerKey, LedgerPublicKey
from tai_autonomics.ledger.merkle import HASH_SIZE

_SIG_PREFIX = "\u2014 "
_NAME = re.compile(r"[^\s+]+")
_DECIMAL = re.compile(r"0|[1-9][0-9]*")


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A signed tree head: ``size`` leaves with root ``root``, as the note text ``note``."""

    origin: str
    size: int
    root: bytes
    note: str

    def __repr__(self) -> str:
        return f"Checkpoint(origin={self.origin!r}, size={self.size}, root={self.root.hex()})"


def checkpoint_body(origin: str, size: int, root: bytes) -> str:
    """The tlog-checkpoint body text."""
    return f"{origin}\n{size}\n{base64.b64encode(root).decode()}\n"


def sign_note(text: str, name: str, key: LedgerKey) -> str:
    """Wrap ``text`` (ending in a newline) in a signed note with one Ed25519 signature by ``key``."""
    if not text.endswith("\n") or not _NAME.fullmatch(name):
        raise NoteError("a note text must end in a newline and a key name have no spaces or '+'")
    signature = key.sign(text.encode())
    blob = base64.b64encode(key.public.note_key_id(name) + signature).decode()
    return f"{text}\n{_SIG_PREFIX}{name} {blob}\n"


def verify_note(note: str, name: str, public: LedgerPublicKey) -> str:
    """Return the text of ``note`` if it carries a valid signature by ``public`` under ``name``."""
    split = note.rfind("\n\n")
    if split < 0 or not note.endswith("\n"):
        raise NoteError("malformed signed note: no blank line before the signatures")
    text, sig_block = note[: split + 1], note[split + 2 :]
    want_id = public.note_key_id(name)
    for line in sig_block[:-1].split("\n"):
        if not line.startswith(_SIG_PREFIX):
            raise NoteError("malformed signed note: a signature line must start with an em dash")
        sig_name, _, blob = line[len(_SIG_PREFIX) :].partition(" ")
        try:
            raw = base64.b64decode(blob, validate=True)
        except ValueError:  # binascii.Error, or a character outside ASCII
            raise NoteError("malformed signed note: signature is not base64") from None
        if sig_name == name and raw[:4] == want_id and len(raw) == 68:
            if public.verify(raw[4:], text.encode()):
                return text
            raise NoteError(f"signed note: the signature by {name} does not verify")
    raise NoteError(f"signed note: no signature by key {name}+{want_id.hex()}")


def parse_verifier_key(vkey: str) -> tuple[str, LedgerPublicKey]:
    """Parse a Go sumdb/note verifier key ``name+hexid+base64(0x01||key)`` (checking its ID)."""
    try:
        name, key_hex, blob = vkey.split("+")
        raw = base64.b64decode(blob, validate=True)
    except (ValueError, binascii.Error):
        raise NoteError("malformed verifier key") from None
    if not _NAME.fullmatch(name) or len(raw) != 33 or raw[:1] != b"\x01":
        raise NoteError("malformed verifier key: not an Ed25519 key with a valid name")
    public = LedgerPublicKey.from_raw(raw[1:])
    if public.note_key_id(name).hex() != key_hex:
        raise NoteError("verifier key: its key ID does not match its name and key")
    return name, public


def sign_checkpoint(origin: str, size: int, root: bytes, key: LedgerKey) -> Checkpoint:
    """Issue the signed checkpoint of a tree head."""
    return Checkpoint(origin, size, root, sign_note(checkpoint_body(origin, size, root), origin, key))


def open_checkpoint(note: str, public: LedgerPublicKey, origin: str | None = None) -> Checkpoint:
    """Verify a checkpoint note (signed by ``public`` under its own origin) and parse it.

    With ``origin`` given, the checkpoint must be for that log.
    """
    first = note.split("\n", 1)[0]
    if origin is not None and first != origin:
        raise NoteError(f"checkpoint is for log {first!r}, expected {origin!r}")
    if not _NAME.fullmatch(first):
        raise NoteError("checkpoint origin line is empty or not a valid key name")
    lines = verify_note(note, first, public).split("\n")
    if len(lines) < 4 or not _DECIMAL.fullmatch(lines[1]):
        raise NoteError("checkpoint body must be origin, decimal size and root hash lines")
    try:
        root = base64.b64decode(lines[2], validate=True)
    except ValueError:  # binascii.Error, or a character outside ASCII
        root = b""
    if len(root) != HASH_SIZE:
        raise NoteError("checkpoint root hash is not base64 of 32 bytes")
    return Checkpoint(first, int(lines[1]), root, note)
