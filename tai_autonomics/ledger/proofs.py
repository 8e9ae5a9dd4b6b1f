"""Inclusion and consistency proofs in their docs/receipts.md JSON shapes.

``{"leaf_index": i, "tree_size": n, "hashes": [base64, ...]}`` and
``{"from": m, "to": n, "hashes": [base64, ...]}``, hashes as RFC 9162 2.1.3 / 2.1.4 order them.
"""

from __future__ import annotations

import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tai_autonomics.ledger.errors import ProofError
from tai_autonomics.ledger.merkle import verify_consistency, verify_inclusion


def _b64_texts(hashes: tuple[bytes, ...]) -> list[str]:
    """Standard base64 of each hash (binascii directly: an export writes a million of these)."""
    return [binascii.b2a_base64(h, newline=False).decode("ascii") for h in hashes]


def _b64_hashes(value: Any) -> tuple[bytes, ...]:
    if not isinstance(value, list):
        raise ProofError("proof hashes must be a list of base64 strings")
    try:
        return tuple(binascii.a2b_base64(h, strict_mode=True) for h in value)
    except (binascii.Error, TypeError, ValueError):
        raise ProofError("proof hashes must be a list of base64 strings") from None


def _size(obj: Mapping[str, Any], name: str) -> int:
    value = obj.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ProofError(f"proof member {name!r} must be a non-negative integer")
    return value


@dataclass(frozen=True, slots=True)
class InclusionProof:
    """RFC 9162 inclusion proof of leaf ``leaf_index`` in the tree of ``tree_size`` leaves."""

    leaf_index: int
    tree_size: int
    hashes: tuple[bytes, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "leaf_index": self.leaf_index,
            "tree_size": self.tree_size,
            "hashes": _b64_texts(self.hashes),
        }

    @classmethod
    def from_json(cls, obj: Any) -> InclusionProof:
        if not isinstance(obj, Mapping):
            raise ProofError("an inclusion proof must be a JSON object")
        return cls(_size(obj, "leaf_index"), _size(obj, "tree_size"), _b64_hashes(obj.get("hashes")))

    def verify(self, leaf_hash: bytes, root: bytes) -> None:
        """Raise ProofError unless this proves ``leaf_hash`` under ``root``."""
        verify_inclusion(self.leaf_index, self.tree_size, leaf_hash, self.hashes, root)


@dataclass(frozen=True, slots=True)
class ConsistencyProof:
    """RFC 9162 consistency proof from tree size ``from_size`` to ``to_size``."""

    from_size: int
    to_size: int
    hashes: tuple[bytes, ...]

    def to_json(self) -> dict[str, Any]:
        return {"from": self.from_size, "to": self.to_size, "hashes": _b64_texts(self.hashes)}

    @classmethod
    def from_json(cls, obj: Any) -> ConsistencyProof:
        if not isinstance(obj, Mapping):
            raise ProofError("a consistency proof must be a JSON object")
        return cls(_size(obj, "from"), _size(obj, "to"), _b64_hashes(obj.get("hashes")))

    def verify(self, old_root: bytes, new_root: bytes) -> None:
        """Raise ProofError unless the tree with ``old_root`` is a prefix of the one with ``new_root``."""
        verify_consistency(self.from_size, self.to_size, old_root, new_root, self.hashes)
