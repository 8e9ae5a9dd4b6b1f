"""docs/receipts.md is what the code does: its worked example is regenerated here and compared,
and the verifier printed in it is run on the example's export and on altered copies."""

from __future__ import annotations

import base64
import json
import re
import shutil
from pathlib import Path

import pytest

from tai_autonomics.ledger import LedgerPublicKey, verify_export
from tests.receipts_example import DOC, doc_blocks, make_export

EXPECTED_BLOCKS = {"seed", "public_key.pem", "receipt-0", "receipt-0-pretty", "body-0", "hash-0", "leaf-hashes",
                   "node-01", "checkpoint", "root-3", "proof-0", "consistency-1-3"}


@pytest.fixture(scope="module")
def example(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    out = tmp_path_factory.mktemp("receipts-doc") / "export"
    return out, make_export(out)


def _verifier() -> dict:
    """Execute the doc's verifier block; its namespace."""
    text = DOC.read_text()
    match = re.search(r"<!-- verifier -->\n```python\n(.*?)```\n", text, re.S)
    assert match, "docs/receipts.md lost its verifier block"
    namespace: dict = {}
    exec(compile(match.group(1), f"{DOC}:verifier", "exec"), namespace)  # noqa: S102 - our own doc
    return namespace


def test_every_example_block_of_the_doc_is_what_the_code_makes(example) -> None:
    _, made = example
    shown = doc_blocks(DOC.read_text())
    assert set(shown) == EXPECTED_BLOCKS == set(made)
    for name in sorted(EXPECTED_BLOCKS):
        assert shown[name] == made[name], f"docs/receipts.md block {name!r} drifted: run python -m tests.receipts_example --write"


def test_the_example_export_passes_our_offline_verify(example) -> None:
    out, _ = example
    report = verify_export(out)
    assert (report.tree_size, report.chains, report.contractual, report.advisory) == (3, 1, 3, 0)


def test_the_example_is_the_export_on_disk(example) -> None:
    """The blocks are the export's own bytes, not a re-serialisation."""
    out, made = example
    assert (out / "checkpoint").read_text() == made["checkpoint"]
    assert (out / "receipts.jsonl").read_text().splitlines()[0] + "\n" == made["receipt-0"]
    key = LedgerPublicKey.from_pem((out / "public_key.pem").read_bytes())
    assert json.loads(made["receipt-0"])["key_id"] == key.key_id


def test_the_docs_verifier_accepts_every_receipt_of_the_example(example) -> None:
    out, _ = example
    verify = _verifier()["verify_receipt"]
    kinds = [verify(out, line)["kind"] for line in (1, 2, 3)]
    assert kinds == ["deploy.intent", "deploy.completed", "pricing.quoted"]


def _altered(out: Path, tmp_path: Path, file: str, edit) -> Path:
    copy = tmp_path / f"altered-{file}"
    shutil.copytree(out, copy)
    (copy / file).write_bytes(edit((copy / file).read_bytes()))
    return copy


@pytest.mark.parametrize(("file", "edit"), [
    ("receipts.jsonl", lambda b: b.replace(b'"cost":250', b'"cost":25', 1)),               # payload changed
    ("receipts.jsonl", lambda b: b.replace(b'"hash":"e', b'"hash":"f', 1)),                 # hash changed
    ("receipts.jsonl", lambda b: b.replace(b'"signature":"M', b'"signature":"N', 1)),       # signature changed
    ("checkpoint", lambda b: b.replace(b"\n3\n", b"\n2\n", 1)),                             # signed size changed
    ("proofs.jsonl", lambda b: b.replace(b'"hashes":["C', b'"hashes":["D', 1)),             # proof changed
    ("public_key.pem", lambda b: LedgerPublicKey.from_raw(bytes(32 * [7])).pem()),         # another key
])
def test_the_docs_verifier_rejects_an_altered_export(example, tmp_path: Path, file: str, edit) -> None:
    out, _ = example
    verify = _verifier()["verify_receipt"]
    altered = _altered(out, tmp_path, file, edit)
    assert altered.joinpath(file).read_bytes() != out.joinpath(file).read_bytes()
    with pytest.raises(Exception):  # noqa: B017 - the doc's verifier fails by AssertionError, InvalidSignature or a decode error
        verify(altered, 1)


def test_the_checkpoint_key_id_is_the_documented_derivation(example) -> None:
    import hashlib

    out, made = example
    raw = LedgerPublicKey.from_pem((out / "public_key.pem").read_bytes()).raw
    blob = made["checkpoint"].rsplit(" ", 1)[1]
    assert base64.b64decode(blob)[:4] == hashlib.sha256(b"tai-autonomics/ledger\n\x01" + raw).digest()[:4]
