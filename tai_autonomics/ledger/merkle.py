"""The RFC 9162 section 2.1 Merkle tree: hashes, proofs and their verifiers.

:class:`ProvingTree` computes roots and proofs from the hashes of complete, aligned subtrees;
:class:`MerkleTree` keeps every one of them in memory (level ``k`` holds the roots of the
subtrees of ``2**k`` leaves) in one contiguous ``bytearray`` per level, about 64 bytes per leaf
in all, and is what tiles and verification build trees with; the ledger's own tree reads them
from stored tiles (:mod:`~tai_autonomics.ledger.tiles`). Any subtree hash a proof needs is then
either one lookup (complete subtrees) or a combination of at most ``log2 n`` lookups (the ragged
right edge of an older tree size), so inclusion and consistency proofs for any earlier tree size
cost ``O(log**2 n)`` hashes and never a rebuild.

The verifiers follow RFC 9162 2.1.3.2 and 2.1.4.2 step by step, with the edge cases
(equal sizes, size 0, hash lengths) decided as transparency-dev/merkle decides them, whose
test vectors we pass.
"""

from __future__ import annotations

import binascii
import hashlib
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence

from tai_autonomics.ledger.errors import ProofError

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    """RFC 9162 leaf hash: SHA-256(0x00 || data)."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes | bytearray, right: bytes | bytearray) -> bytes:
    """RFC 9162 interior node hash: SHA-256(0x01 || left || right)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly smaller than ``n`` (n > 1): RFC 9162's ``k``."""
    return 1 << ((n - 1).bit_length() - 1)


class ProvingTree(ABC):
    """RFC 9162 roots and proofs of every tree size up to :attr:`size`, computed from the hashes of
    complete, aligned subtrees, which a subclass supplies (:meth:`_node`): held in memory
    (:class:`MerkleTree`) or read from stored tiles (:class:`~tai_autonomics.ledger.tiles.TiledTree`).
    The ragged right edge of an older tree size is combined from at most ``log2 n`` of them."""

    @property
    @abstractmethod
    def size(self) -> int:
        """Number of leaves."""

    @abstractmethod
    def _node(self, level: int, index: int) -> bytes:
        """The root of the complete subtree of ``2**level`` leaves from leaf ``index << level``."""

    def root(self, size: int | None = None) -> bytes:
        """The tree head of the first ``size`` leaves (default: all)."""
        size = self.size if size is None else size
        self._check_range(0, size)
        # The tree of `size` leaves is made of one complete subtree per set bit of `size`;
        # fold their hashes from the smallest (rightmost) up: O(log n), no recursion.
        root = None
        for level in range(size.bit_length()):
            if size >> level & 1:
                subtree = self._node(level, (size >> level) - 1)
                root = subtree if root is None else node_hash(subtree, root)
        return EMPTY_ROOT if root is None else root

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        """RFC 9162 2.1.3.1 PATH(index, D[0:size]), leaf side first."""
        if not 0 <= index < size:
            raise ProofError(f"leaf index {index} is not in a tree of size {size}")
        self._check_range(0, size)
        path: list[bytes] = []
        start, end = 0, size
        while end - start > 1:
            mid = start + _split(end - start)
            if index < mid:
                path.append(self._subtree(mid, end))
                end = mid
            else:
                path.append(self._subtree(start, mid))
                start = mid
        path.reverse()
        return path

    def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        """RFC 9162 2.1.4.1 PROOF(old_size, D[0:new_size]) for 0 < old_size <= new_size (empty when equal)."""
        if not 0 < old_size <= new_size:
            raise ProofError(f"no consistency proof from size {old_size} to size {new_size}")
        self._check_range(0, new_size)
        proof: list[bytes] = []
        if old_size == new_size:
            return proof
        start, end, m, complete = 0, new_size, old_size, True
        while m != end - start:
            mid = start + _split(end - start)
            if m <= mid - start:
                proof.append(self._subtree(mid, end))
                end = mid
            else:
                proof.append(self._subtree(start, mid))
                m -= mid - start
                start = mid
                complete = False
        if not complete:
            proof.append(self._subtree(start, end))
        proof.reverse()
        return proof

    def _check_range(self, start: int, end: int) -> None:
        if not 0 <= start <= end <= self.size:
            raise ProofError(f"tree size {end} is beyond the current size {self.size}")

    def inclusion_proofs(self, size: int) -> Iterator[list[bytes]]:
        """:meth:`inclusion_proof` of every leaf of the tree of ``size``, in leaf order, from one
        walk down the tree: neighbours share all of their path but its foot, so each subtree
        hash is looked up (or, on the right edge, computed) once, not once per leaf."""
        self._check_range(0, size)

        def walk(start: int, end: int, above: list[bytes]) -> Iterator[list[bytes]]:
            if end - start == 1:
                yield above[::-1]
                return
            mid = start + _split(end - start)
            yield from walk(start, mid, [*above, self._subtree(mid, end)])
            yield from walk(mid, end, [*above, self._subtree(start, mid)])

        if size:
            yield from walk(0, size, [])

    def subtree(self, start: int, end: int) -> bytes:
        """MTH(D[start:end]) for a non-empty range whose start is aligned to its largest
        power-of-two part (every range a proof or a tile needs)."""
        self._check_range(start, end)
        if start == end:
            raise ProofError("no subtree hash of an empty range")
        return self._subtree(start, end)

    def _subtree(self, start: int, end: int) -> bytes:
        width = end - start
        if width & (width - 1) == 0 and start % width == 0:
            level = width.bit_length() - 1
            return self._node(level, start >> level)
        mid = start + _split(width)
        return node_hash(self._subtree(start, mid), self._subtree(mid, end))


class MerkleTree(ProvingTree):
    """An append-only RFC 9162 tree held in memory, serving roots and proofs for every size it has had."""

    def __init__(self, leaf_hashes: Iterable[bytes] = ()) -> None:
        self._levels: list[bytearray] = [bytearray()]
        self.extend(leaf_hashes)

    @property
    def size(self) -> int:
        """Number of leaves."""
        return len(self._levels[0]) // HASH_SIZE

    def leaf_bytes(self) -> bytes:
        """Every leaf hash, concatenated (a tile's contents)."""
        return bytes(self._levels[0])

    def append(self, leaf: bytes) -> None:
        """Add one leaf hash, completing every subtree it closes."""
        if len(leaf) != HASH_SIZE:
            raise ProofError(f"leaf hash must be {HASH_SIZE} bytes, got {len(leaf)}")
        levels = self._levels
        index = self.size
        levels[0] += leaf
        level = 0
        while index & 1:
            row = levels[level]
            parent = node_hash(row[-2 * HASH_SIZE : -HASH_SIZE], row[-HASH_SIZE:])
            level += 1
            if level == len(levels):
                levels.append(bytearray())
            levels[level] += parent
            index >>= 1

    def extend(self, leaves: Iterable[bytes]) -> None:
        """Append many leaf hashes in order."""
        for leaf in leaves:
            self.append(leaf)

    def truncate(self, size: int) -> None:
        """Forget every leaf from ``size`` on (undoes appends of a transaction that did not commit)."""
        if not 0 <= size <= self.size:
            raise ProofError(f"cannot truncate a tree of {self.size} leaves to {size}")
        for level, row in enumerate(self._levels):
            del row[(size >> level) * HASH_SIZE :]

    def _node(self, level: int, index: int) -> bytes:
        offset = index * HASH_SIZE
        return bytes(self._levels[level][offset : offset + HASH_SIZE])


def _check_hashes(what: str, hashes: Sequence[bytes]) -> None:
    for h in hashes:
        if len(h) != HASH_SIZE:
            raise ProofError(f"{what}: a hash is {len(h)} bytes, expected {HASH_SIZE}")


def _climb(fn: int, sn: int, r: bytes, p: bytes) -> tuple[int, int, bytes]:
    """One step of RFC 9162 2.1.3.2 step 4: hash ``p`` into ``r`` and move up a level."""
    if fn & 1 or fn == sn:
        r = node_hash(p, r)
        while fn and not fn & 1:
            fn >>= 1
            sn >>= 1
    else:
        r = node_hash(r, p)
    return fn >> 1, sn >> 1, r


def root_from_inclusion_proof(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """RFC 9162 2.1.3.2 steps 1-4: the root that ``proof`` leads to from ``leaf``, or ProofError."""
    if not 0 <= index < size:
        raise ProofError(f"inclusion proof: leaf index {index} is not below tree size {size}")
    _check_hashes("inclusion proof", [leaf, *proof])
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise ProofError("inclusion proof: too many hashes")
        fn, sn, r = _climb(fn, sn, r, p)
    if sn != 0:
        raise ProofError("inclusion proof: too few hashes")
    return r


def verify_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes) -> None:
    """Raise ProofError unless ``proof`` shows leaf hash ``leaf`` at ``index`` under ``root``."""
    if root_from_inclusion_proof(index, size, leaf, proof) != root:
        raise ProofError(f"inclusion proof for leaf {index} does not lead to the tree head of size {size}")


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """Raise ProofError unless ``proof`` shows the tree (old_size, old_root) is a prefix of (new_size, new_root)."""
    if not 0 < old_size <= new_size:
        raise ProofError(f"consistency proof: RFC 9162 defines none from size {old_size} to size {new_size}")
    if old_size == new_size:
        if proof:
            raise ProofError("consistency proof: equal sizes need an empty proof")
        if old_root != new_root:
            raise ProofError("consistency proof: equal sizes but different roots")
        return
    if not proof:
        raise ProofError("consistency proof: empty")
    _check_hashes("consistency proof", [old_root, new_root, *proof])
    path = list(proof)
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("consistency proof: too many hashes")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("consistency proof: too few hashes")
    if fr != old_root:
        raise ProofError(f"consistency proof does not lead to the tree head of size {old_size}")
    if sr != new_root:
        raise ProofError(f"consistency proof does not lead to the tree head of size {new_size}")


class InclusionVerifier:
    """Checks many inclusion proofs against one tree head, sharing work between neighbours.

    RFC 9162 2.1.3.2 is a loop whose step depends only on its state ``(fn, sn, r)`` and the next
    proof hash. A proof that reaches a state some earlier, verified proof passed through, with the
    same hashes left, ends where that one ended: at the root. Proofs of neighbouring leaves meet
    after a step or two, so a run of them costs about two hashes (and two base64 decodings) each
    instead of ``log2 n``. Only states of verified proofs are remembered.

    :meth:`accepts` answers True only for a proof :func:`verify_inclusion` accepts; False means
    "not shown here": the caller then runs the reference checks, which name the error.
    """

    __slots__ = ("size", "root", "_seen")

    def __init__(self, size: int, root: bytes) -> None:
        self.size = size
        self.root = root
        self._seen: dict[tuple[int, int, bytes], tuple[str | bytes, ...]] = {}

    def accepts(self, index: int, leaf: bytes, hashes: Sequence[str | bytes]) -> bool:
        """Whether the proof whose hashes are the base64 strings ``hashes`` (text, or ASCII bytes
        as an export's lines hold them) shows leaf hash ``leaf`` at ``index`` under the head."""
        if not 0 <= index < self.size or len(leaf) != HASH_SIZE:
            return False
        proof = tuple(hashes)
        seen = self._seen
        passed: list[tuple[tuple[int, int, bytes], int]] = []
        fn, sn, r = index, self.size - 1, leaf
        for step, text in enumerate(proof):
            if sn == 0:
                return False  # too many hashes
            state = (fn, sn, r)
            rest = seen.get(state)
            if rest is not None and rest == proof[step:]:
                self._remember(passed, proof)
                return True
            passed.append((state, step))
            try:
                p = binascii.a2b_base64(text, strict_mode=True)
            except (binascii.Error, TypeError, ValueError):
                return False
            if len(p) != HASH_SIZE:
                return False
            fn, sn, r = _climb(fn, sn, r, p)
        if sn != 0 or r != self.root:
            return False
        self._remember(passed, proof)
        return True

    def _remember(self, passed: list[tuple[tuple[int, int, bytes], int]], proof: tuple[str | bytes, ...]) -> None:
        if len(self._seen) > 1 << 16:  # bounded: neighbours only need recent states
            self._seen.clear()
        for state, step in passed:
            self._seen[state] = proof[step:]
