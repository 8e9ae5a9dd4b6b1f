"""Our canonical JSON, Merkle verifiers and note verifier against other implementations' vectors."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from tai_autonomics.ledger import (
    CanonicalJSONError,
    DraftError,
    LedgerKey,
    MerkleTree,
    NoteError,
    ProofError,
    canonical_json,
    leaf_hash,
    parse_json,
    parse_verifier_key,
    verify_consistency,
    verify_inclusion,
    verify_note,
)
from tai_autonomics.ledger.receipts import (
    UNHASHED_MEMBERS,
    EvalSession,
    Place,
    ReceiptDraft,
    seal_draft,
)
from tests.helpers import conformance_dir, conformance_files

JCS_INPUTS = conformance_files("rfc8785", "testdata", "input")
INCLUSION = conformance_files("rfc9162", "testdata", "inclusion")
CONSISTENCY = conformance_files("rfc9162", "testdata", "consistency")


@pytest.mark.parametrize("source", JCS_INPUTS, ids=lambda p: p.name)
def test_rfc8785_vectors(source: Path) -> None:
    testdata = conformance_dir("rfc8785", "testdata")
    expected = (testdata / "output" / source.name).read_bytes()
    assert canonical_json(parse_json(source.read_bytes())) == expected
    outhex = (testdata / "outhex" / source.with_suffix(".txt").name).read_text()
    assert bytes.fromhex("".join(outhex.split())) == expected


def test_rfc8785_vector_count() -> None:
    assert len(JCS_INPUTS) == len(list(conformance_dir("rfc8785", "testdata", "output").glob("*.json")))


def test_integers_beyond_2_53_are_read_as_doubles_like_a_javascript_parser() -> None:
    # rfc8785 refuses Python ints beyond 2**53; a JSON number there is the nearest double.
    assert canonical_json(parse_json(b"[1000000000000000000000, 9007199254740993]")) == b"[1e+21,9007199254740992]"
    with pytest.raises(CanonicalJSONError):
        canonical_json(2**60)


@pytest.mark.parametrize("text", [b'{"a":1,"a":2}', b"[NaN]", b"[Infinity]", b"\xff", b"{", b'"\\ud800"x'])
def test_parse_rejects_what_i_json_forbids(text: bytes) -> None:
    with pytest.raises(CanonicalJSONError):
        parse_json(text)


json_scalars = (
    st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | st.text()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from([0.0, -0.0, 1e-4, 9.999e-5, 1e16, 9999999999999998.0, 2.0**53, 2.0**53 + 2, 1e21, 5e-324, -1.5])
)
json_keys = st.text(max_size=6) | st.sampled_from(["\U0001f600", "\ue000", "a\U00010000", "\uffff"])
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(json_keys, children, max_size=5),
    max_leaves=14,
)


@settings(max_examples=400, deadline=None)
@given(json_values)
def test_fast_canonicalisation_equals_the_rfc8785_package(value) -> None:
    try:
        expected = rfc8785.dumps(value)
    except rfc8785.CanonicalizationError:
        with pytest.raises(CanonicalJSONError):
            canonical_json(value)
        return
    assert canonical_json(value) == expected


@pytest.mark.parametrize("value", ["\ud800", {"\udc00": 1}, float("inf"), 2**53, {1: 2}, object()])
def test_values_without_a_canonical_form_are_refused(value) -> None:
    with pytest.raises(CanonicalJSONError):
        canonical_json(value)


def _b64(value: str | None) -> bytes:
    return base64.b64decode(value) if value else b""


@pytest.mark.parametrize("case_file", INCLUSION, ids=lambda p: str(p.relative_to(p.parents[1])))
def test_rfc9162_inclusion_vectors(case_file: Path) -> None:
    case = json.loads(case_file.read_text())
    args = (case["leafIdx"], case["treeSize"], _b64(case["leafHash"]), [_b64(h) for h in case["proof"] or []], _b64(case["root"]))
    if case["wantErr"]:
        with pytest.raises(ProofError):
            verify_inclusion(*args)
    else:
        verify_inclusion(*args)


@pytest.mark.parametrize("case_file", CONSISTENCY, ids=lambda p: str(p.relative_to(p.parents[1])))
def test_rfc9162_consistency_vectors(case_file: Path) -> None:
    case = json.loads(case_file.read_text())
    args = (case["size1"], case["size2"], _b64(case["root1"]), _b64(case["root2"]), [_b64(h) for h in case["proof"] or []])
    if case["wantErr"]:
        with pytest.raises(ProofError):
            verify_consistency(*args)
    else:
        verify_consistency(*args)


def test_rfc6962_reference_root() -> None:
    leaves = ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"]
    tree = MerkleTree(leaf_hash(bytes.fromhex(h)) for h in leaves)
    assert tree.root().hex() == "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"


def _go_note() -> dict:
    return json.loads((conformance_dir("signed-note") / "go-sumdb-note.json").read_text())


def test_go_sumdb_note_verifies() -> None:
    vector = _go_note()
    name, public = parse_verifier_key(vector["verifier_key"])
    assert name == vector["key_name"]
    assert public.note_key_id(name).hex() == vector["key_id_hex"]
    assert public.note_verifier_key(name) == vector["verifier_key"]
    assert verify_note(vector["signed_note"], name, public) == vector["note_text"]


@pytest.mark.parametrize(
    "tamper",
    [
        lambda note: note.replace("cryptography", "cryptographY", 1),
        lambda note: note.replace("PeterNeumann x08go", "PeterNeumann x18go"),
        lambda note: note.replace("\n\n\u2014", "\n\u2014"),
        lambda note: note.replace("\u2014 PeterNeumann", "- PeterNeumann"),
        lambda note: note.replace("\u2014 PeterNeumann", "\u2014 PaulNeumann"),
    ],
)
def test_go_sumdb_note_tampered_fails(tamper) -> None:
    vector = _go_note()
    name, public = parse_verifier_key(vector["verifier_key"])
    with pytest.raises(NoteError):
        verify_note(tamper(vector["signed_note"]), name, public)


_SEAL_KEY = LedgerKey.generate()
_payloads = st.dictionaries(json_keys, json_values, max_size=5)
_names = st.text(min_size=1, max_size=8) | st.sampled_from(["policy-\u00e9", "p\U0001f600", "a\"b\\c\n", "lone-\ud800"])


@settings(max_examples=300, deadline=None)
@given(payload=_payloads, chain=_names, operation=st.none() | _names, mode=st.sampled_from(["prod", "eval"]),
       seq=st.integers(1, 2**53 - 1), leaf_index=st.integers(0, 2**53 - 1))
def test_sealing_encodes_each_receipt_once_and_equals_the_definition(payload, chain, operation, mode, seq, leaf_index) -> None:
    """The sealer joins member texts instead of encoding the receipt twice: its bytes and hash
    must be exactly RFC 8785 of the receipt, and SHA-256 of RFC 8785 of the body (docs/receipts.md)."""
    try:
        draft = ReceiptDraft("deploy.intent", mode, payload, chain=chain if mode == "prod" else None, operation_id=operation)
    except DraftError:
        with pytest.raises(rfc8785.CanonicalizationError):
            rfc8785.dumps(payload)
        return
    key, session = _SEAL_KEY, EvalSession()
    try:
        fields, data = seal_draft(draft, key, session, Place(chain, seq, "ab" * 32, leaf_index,
                                                             datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC), 0))
    except CanonicalJSONError:  # a lone surrogate in the chain or operation id
        with pytest.raises(rfc8785.CanonicalizationError):
            rfc8785.dumps([chain, operation])
        return
    assert data == rfc8785.dumps(fields)
    body = {k: v for k, v in fields.items() if k not in UNHASHED_MEMBERS}
    assert fields["hash"] == hashlib.sha256(rfc8785.dumps(body)).hexdigest()
    assert parse_json(data) == fields


@settings(max_examples=2000, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from(
    [0.0, -0.0, 1e-7, 1e-6, 9.99e-6, 1e-5, 1e-4, 1e15 + 0.5, 1e16, 9.5e20, 1e21, 2.0**53, 5e-324, 1.7976931348623157e308]))
def test_orjson_spells_every_float_the_fast_path_accepts_as_rfc8785_does(number) -> None:
    """Offline verify trusts orjson's spelling of a number unless _spelled_like_rfc8785 says no."""
    from tai_autonomics.ledger.canonical import _spelled_like_rfc8785

    text = orjson.dumps([number])
    if _spelled_like_rfc8785(text):
        assert text == rfc8785.dumps([number])


@settings(max_examples=400, deadline=None)
@given(json_values)
def test_plain_parsing_says_plain_only_when_json_dumps_is_canonical(value) -> None:
    """Offline verify hashes a receipt with json.dumps when parse_json_plain says the text is
    plain; for any text (canonical or Python's own spelling), that must be RFC 8785."""
    from tai_autonomics.ledger.canonical import dumps_plain, parse_json_plain

    texts = [json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass"), json.dumps(value).encode()]
    for spelling in (rfc8785.dumps, lambda v: orjson.dumps(v, option=orjson.OPT_SORT_KEYS)):
        try:
            texts.append(spelling(value))
        except (rfc8785.CanonicalizationError, orjson.JSONEncodeError):
            pass
    for text in texts:
        try:
            parsed, plain = parse_json_plain(text)
        except CanonicalJSONError:
            with pytest.raises(CanonicalJSONError):
                parse_json(text)
            continue
        assert parsed == parse_json(text)
        if plain:
            assert dumps_plain(parsed) == rfc8785.dumps(parsed)
