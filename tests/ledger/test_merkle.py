"""The tree's stored-subtree proofs against the RFC 9162 definitions computed naively."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tai_autonomics.ledger import MerkleTree, ProofError, leaf_hash, node_hash, verify_consistency, verify_inclusion
from tai_autonomics.ledger.merkle import EMPTY_ROOT


def _mth(leaves: list[bytes]) -> bytes:
    """RFC 9162 2.1.1 MTH, by its recursive definition."""
    if not leaves:
        return EMPTY_ROOT
    if len(leaves) == 1:
        return leaves[0]
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return node_hash(_mth(leaves[:k]), _mth(leaves[k:]))


def _path(m: int, leaves: list[bytes]) -> list[bytes]:
    """RFC 9162 2.1.3.1 PATH, by its definition."""
    if len(leaves) == 1:
        return []
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    if m < k:
        return _path(m, leaves[:k]) + [_mth(leaves[k:])]
    return _path(m - k, leaves[k:]) + [_mth(leaves[:k])]


def _subproof(m: int, leaves: list[bytes], complete: bool) -> list[bytes]:
    """RFC 9162 2.1.4.1 SUBPROOF, by its definition."""
    n = len(leaves)
    if m == n:
        return [] if complete else [_mth(leaves)]
    k = 1 << ((n - 1).bit_length() - 1)
    if m <= k:
        return _subproof(m, leaves[:k], complete) + [_mth(leaves[k:])]
    return _subproof(m - k, leaves[k:], False) + [_mth(leaves[:k])]


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 140), st.data())
def test_proofs_match_the_rfc_definitions_and_verify(size: int, data) -> None:
    leaves = [leaf_hash(i.to_bytes(4, "big")) for i in range(size)]
    tree = MerkleTree(leaves)
    n = data.draw(st.integers(1, size))
    m = data.draw(st.integers(1, n))
    index = data.draw(st.integers(0, n - 1))
    assert tree.root(n) == _mth(leaves[:n])
    path = tree.inclusion_proof(index, n)
    assert path == _path(index, leaves[:n])
    verify_inclusion(index, n, leaves[index], path, tree.root(n))
    proof = tree.consistency_proof(m, n)
    assert proof == _subproof(m, leaves[:n], True)
    verify_consistency(m, n, tree.root(m), tree.root(n), proof)


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 100), st.data())
def test_truncate_then_extend_gives_the_same_tree(size: int, data) -> None:
    leaves = [leaf_hash(bytes([i])) for i in range(size)]
    tree = MerkleTree(leaves)
    cut = data.draw(st.integers(0, size))
    tree.truncate(cut)
    assert tree.size == cut and tree.root() == _mth(leaves[:cut])
    tree.extend(leaves[cut:])
    assert tree.root() == _mth(leaves)


def test_out_of_range_requests_are_proof_errors() -> None:
    tree = MerkleTree([leaf_hash(b"a"), leaf_hash(b"b")])
    for call in (
        lambda: tree.inclusion_proof(2, 2),
        lambda: tree.inclusion_proof(0, 3),
        lambda: tree.consistency_proof(0, 2),
        lambda: tree.consistency_proof(2, 1),
        lambda: tree.root(3),
        lambda: tree.append(b"short"),
    ):
        with pytest.raises(ProofError):
            call()


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 70), st.data())
def test_inclusion_verifier_accepts_exactly_what_verify_inclusion_accepts(size: int, data) -> None:
    """The memoising verifier of offline verify: over runs of neighbouring proofs, some of them
    tampered (a hash changed, dropped, added, or not base64), it accepts a proof only when
    verify_inclusion does, and every honest one."""
    import base64

    from tai_autonomics.ledger.merkle import InclusionVerifier

    leaves = [leaf_hash(i.to_bytes(4, "big")) for i in range(size)]
    tree = MerkleTree(leaves)
    checker = InclusionVerifier(size, tree.root())
    for index in data.draw(st.lists(st.integers(0, size - 1), min_size=1, max_size=40)):
        proof = [base64.b64encode(h).decode() for h in tree.inclusion_proof(index, size)]
        leaf = leaves[index]
        how = data.draw(st.sampled_from(["honest", "flip", "drop", "add", "garbage", "leaf", "index"]))
        if how == "flip" and proof:
            at = data.draw(st.integers(0, len(proof) - 1))
            raw = bytearray(base64.b64decode(proof[at]))
            raw[0] ^= 1
            proof[at] = base64.b64encode(bytes(raw)).decode()
        elif how == "drop" and proof:
            del proof[data.draw(st.integers(0, len(proof) - 1))]
        elif how == "add":
            proof.insert(data.draw(st.integers(0, len(proof))), base64.b64encode(leaves[0]).decode())
        elif how == "garbage" and proof:
            proof[-1] = data.draw(st.sampled_from(["", "!!", "AAAA", proof[-1][:-4]]))
        elif how == "leaf":
            leaf = leaf_hash(b"other")
        elif how == "index":
            index = data.draw(st.integers(0, size))
        try:
            verify_inclusion(index, size, leaf, [base64.b64decode(h) for h in proof], tree.root())
            expected = True
        except (ProofError, ValueError):
            expected = False
        assert checker.accepts(index, leaf, proof) is expected


def test_the_proofs_of_every_leaf_in_one_walk_equal_each_proof_alone() -> None:
    """Export takes all proofs of a tree size from one walk; every size up to 70 (each shape of
    right edge), and sizes older than the tree, give exactly the per-leaf proofs."""
    tree = MerkleTree(hashlib.sha256(bytes([i])).digest() for i in range(70))
    for size in range(0, 71):
        assert list(tree.inclusion_proofs(size)) == [tree.inclusion_proof(i, size) for i in range(size)]
