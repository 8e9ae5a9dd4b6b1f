"""The ledger commands end to end: export, verify, offline verify, and their errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tai_autonomics.cli import main
from tai_autonomics.ledger import DB_FILE, Ledger, ReceiptDraft, SQLiteStore, load_ledger_key


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "var"
    ledger = Ledger.open(SQLiteStore(directory / DB_FILE), load_ledger_key(data_dir=directory))
    for i in range(4):
        ledger.append_batch(
            [ReceiptDraft("deploy.intent", "prod", {"i": i}, chain="policy-1"), ReceiptDraft("pricing.quoted", "eval", {"i": i})]
        )
    ledger.close()
    return directory


def _run(capsys, *argv: str) -> tuple[int, dict | None, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, json.loads(out) if out.strip() else None, err


def test_export_then_offline_verify(data_dir: Path, tmp_path: Path, capsys, caplog) -> None:
    code, report, _ = _run(capsys, "ledger", "verify", "--data-dir", str(data_dir))
    assert code == 0 and report["tree_size"] == 8 and report["contractual"] == 4 and report["advisory"] == 4
    out = tmp_path / "export"
    assert _run(capsys, "ledger", "export", "--data-dir", str(data_dir), "--out", str(out))[0] == 0
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint", "proofs.jsonl", "public_key.pem", "receipts.jsonl"]
    assert len((out / "receipts.jsonl").read_bytes().splitlines()) == 8
    code, offline, _ = _run(capsys, "verify", str(out))
    assert code == 0 and offline["root"] == report["root"]
    # no daemon ever signed a checkpoint here: the export signed one for itself, and being a
    # reader, did not try to store it
    assert "ledger.checkpoint_not_stored" not in caplog.text
    store = SQLiteStore(data_dir / DB_FILE, readonly=True)
    assert store.checkpoint() is None and (out / "checkpoint").read_text().split("\n")[1] == "8"
    store.close()


def _export(data_dir: Path, out: Path, capsys) -> Path:
    assert _run(capsys, "ledger", "export", "--data-dir", str(data_dir), "--out", str(out))[0] == 0
    return out


@pytest.mark.parametrize(
    ("file", "edit", "where"),
    [
        ("receipts.jsonl", lambda lines: lines[:2] + [b"{garbage"] + lines[3:], "receipts.jsonl line 3"),
        ("receipts.jsonl", lambda lines: lines[:5] + [b"\xff\xfe"] + lines[6:], "receipts.jsonl line 6"),
        ("receipts.jsonl", lambda lines: [lines[1], lines[0], *lines[2:]], "receipts.jsonl line 1"),
        ("receipts.jsonl", lambda lines: lines[:-1], "receipts.jsonl"),
        ("receipts.jsonl", lambda lines: [lines[0].replace(b'"i":0', b'"i":7'), *lines[1:]], "receipts.jsonl line 1"),
        ("proofs.jsonl", lambda lines: lines[:4] + [b"[]"] + lines[5:], "proofs.jsonl line 5"),
        ("proofs.jsonl", lambda lines: lines[:4] + [lines[3]] + lines[5:], "proofs.jsonl line 5"),
        ("proofs.jsonl", lambda lines: lines[:-1], "proofs.jsonl line 8"),
        ("checkpoint", lambda lines: [lines[0], b"9", *lines[2:]], "checkpoint"),
        ("public_key.pem", lambda lines: [b"not a key"], "public_key.pem"),
    ],
)
def test_offline_verify_names_bad_input(data_dir: Path, tmp_path: Path, capsys, file, edit, where) -> None:
    out = _export(data_dir, tmp_path / "export", capsys)
    path = out / file
    path.write_bytes(b"\n".join(edit(path.read_bytes().split(b"\n")[:-1])) + b"\n")
    code, result, err = _run(capsys, "verify", str(out))
    if file == "public_key.pem":
        assert code == 2 and "[ledger_key_invalid]" in err and "Traceback" not in err
        return
    assert code == 1 and result["ok"] is False and result["where"] == where, result
    assert "verification failed" in err


def test_ledger_verify_names_a_tampered_receipt(data_dir: Path, capsys) -> None:
    import sqlite3

    with sqlite3.connect(data_dir / DB_FILE) as db:
        (rid,) = db.execute("SELECT id FROM receipts WHERE leaf_index = 5").fetchone()
        db.execute("UPDATE receipts SET data = replace(data, '\"i\":2', '\"i\":3') WHERE leaf_index = 5")
    code, result, _ = _run(capsys, "ledger", "verify", "--data-dir", str(data_dir))
    assert code == 1 and result["receipt_id"] == rid and "hash does not match" in result["reason"]


def test_corrupt_database_is_a_clear_error_without_traceback(data_dir: Path) -> None:
    db = data_dir / DB_FILE
    for suffix in ("-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    db.write_bytes(b"this is not sqlite" * 500)
    result = subprocess.run(
        [sys.executable, "-m", "tai_autonomics", "ledger", "verify", "--data-dir", str(data_dir)],
        capture_output=True, text=True, cwd=Path(__file__).resolve().parents[2],
    )
    assert result.returncode == 2
    assert "[ledger_store_corrupt]" in result.stderr and "Traceback" not in result.stderr


def test_missing_ledger_and_key_are_clear_errors(tmp_path: Path, capsys) -> None:
    code, _, err = _run(capsys, "ledger", "verify", "--data-dir", str(tmp_path / "none"))
    assert code == 2 and "[ledger_key_invalid]" in err and "ledger_key.pem" in err
    load_ledger_key(data_dir=tmp_path / "nodb")
    code, _, err = _run(capsys, "ledger", "export", "--data-dir", str(tmp_path / "nodb"), "--out", str(tmp_path / "o"))
    assert code == 2 and "[ledger_store_error]" in err and "no ledger database" in err
    code, result, _ = _run(capsys, "verify", str(tmp_path / "nowhere"))
    assert code == 1 and result["reason"].startswith("cannot read")


@pytest.mark.parametrize("argv", [["ledger", "--help"], ["ledger", "export", "--help"], ["ledger", "verify", "--help"], ["verify", "--help"]])
def test_help(argv, capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 0 and "usage:" in capsys.readouterr().out


@pytest.mark.parametrize("bad_line", [None, 2, 7])
def test_parallel_offline_verify_agrees_and_names_the_first_bad_line(
    data_dir: Path, tmp_path: Path, capsys, monkeypatch, bad_line
) -> None:
    from tai_autonomics.ledger import VerificationError, verify
    from tai_autonomics.ledger.verify import verify_export

    out = _export(data_dir, tmp_path / "export", capsys)
    monkeypatch.setattr(verify, "_CHUNK", 3)  # several chunks in flight across the workers
    if bad_line is None:
        assert verify_export(out, workers=2) == verify_export(out, workers=1)
        return
    lines = (out / "receipts.jsonl").read_bytes().split(b"\n")
    lines[bad_line - 1] = lines[bad_line - 1].replace(b'"seq":', b'"seq": ')
    lines[7] = b"garbage after the first bad line"
    (out / "receipts.jsonl").write_bytes(b"\n".join(lines))
    with pytest.raises(VerificationError) as failure:
        verify_export(out, workers=2)
    assert failure.value.where == f"receipts.jsonl line {bad_line}"
    assert "canonical" in failure.value.reason


def test_parallel_offline_verify_names_a_bad_proof_in_a_later_chunk(data_dir: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    """A tampered inclusion proof in the second chunk, and a broken receipt after it in the third:
    every worker count, and the CLI, name the proof line and why, as the sequential check does."""
    from tai_autonomics.ledger import VerificationError, verify
    from tai_autonomics.ledger.verify import verify_export

    out = _export(data_dir, tmp_path / "export", capsys)
    monkeypatch.setattr(verify, "_CHUNK", 3)
    proofs = (out / "proofs.jsonl").read_bytes().split(b"\n")
    proof = json.loads(proofs[4])
    proof["hashes"][0] = proof["hashes"][1]
    proofs[4] = json.dumps(proof, separators=(",", ":")).encode()
    (out / "proofs.jsonl").write_bytes(b"\n".join(proofs))
    receipts = (out / "receipts.jsonl").read_bytes().split(b"\n")
    receipts[7] = b"{}"
    (out / "receipts.jsonl").write_bytes(b"\n".join(receipts))
    failures = []
    for workers in (1, 2, 3):
        with pytest.raises(VerificationError) as failure:
            verify_export(out, workers=workers)
        failures.append((failure.value.where, failure.value.reason))
    assert failures == [("proofs.jsonl line 5", failures[0][1])] * 3
    assert "does not lead to the tree head" in failures[0][1]
    code, result, _ = _run(capsys, "verify", str(out), "--workers", "2")
    assert code == 1 and (result["where"], result["reason"]) == failures[0]


@pytest.mark.parametrize(
    ("file", "leaf", "reason"),
    [
        (None, None, None),
        ("proofs.jsonl", 13, "does not lead to the tree head"),  # inside an aligned chunk
        ("proofs.jsonl", 16, "does not lead to the tree head"),  # the chunk's first proof, checked in full
        ("receipts.jsonl", 20, "canonical"),
    ],
)
def test_aligned_chunks_check_proofs_by_comparison_and_still_name_the_bad_line(
    tmp_path: Path, capsys, monkeypatch, file, leaf, reason
) -> None:
    """Chunks of 2**k leaves at a multiple of 2**k are complete subtrees, and their proofs are
    checked by comparing each line with the one the subtree implies; a changed line is still
    found and named, with every worker count, as the chunking that never aligns names it."""
    from tai_autonomics.ledger import VerificationError, verify
    from tai_autonomics.ledger.verify import verify_export

    directory = tmp_path / "var"
    ledger = Ledger.open(SQLiteStore(directory / DB_FILE), load_ledger_key(data_dir=directory))
    ledger.append_batch([ReceiptDraft("deploy.intent", "prod", {"i": i}, chain="policy-1") for i in range(37)])
    ledger.close()
    out = _export(directory, tmp_path / "export", capsys)
    if file == "proofs.jsonl":
        lines = (out / file).read_bytes().split(b"\n")
        proof = json.loads(lines[leaf])
        proof["hashes"][1], proof["hashes"][2] = proof["hashes"][2], proof["hashes"][1]
        lines[leaf] = json.dumps(proof, separators=(",", ":")).encode()
        (out / file).write_bytes(b"\n".join(lines))
    elif file == "receipts.jsonl":
        lines = (out / file).read_bytes().split(b"\n")
        lines[leaf] = lines[leaf].replace(b'"seq":', b'"seq": ')
        (out / file).write_bytes(b"\n".join(lines))
    results = []
    for chunk, workers in ((8, 1), (8, 2), (3, 2)):
        monkeypatch.setattr(verify, "_CHUNK", chunk)
        try:
            results.append(verify_export(out, workers=workers))
        except VerificationError as failure:
            results.append((failure.where, failure.reason))
    assert results[0] == results[1] == results[2]
    if file is None:
        assert results[0].tree_size == 37
    else:
        assert results[0][0] == f"{file} line {leaf + 1}" and reason in results[0][1]


def test_offline_verify_takes_any_json_layout_and_any_numbers(tmp_path: Path, capsys) -> None:
    """The fast paths (proof lines as export writes them, receipts whose numbers json.dumps
    writes canonically) are shortcuts only: other proof layouts and receipts with numbers, keys
    or strings outside them verify too, and tampering with them is still found."""
    from tai_autonomics.ledger import VerificationError
    from tai_autonomics.ledger.verify import verify_export

    directory = tmp_path / "var"
    ledger = Ledger.open(SQLiteStore(directory / DB_FILE), load_ledger_key(data_dir=directory))
    payloads = [{"a": 1.0, "b": 1e-7, "c": 1e21, "d": -0.0}, {"\U0001f600": 1, "\ue000": 2}, {"s": "\U0001f600\u0001\u2028"},
                {"big": 2**53 - 1, "x": 0.1}]
    ledger.append_batch([ReceiptDraft("deploy.intent", "prod", p, chain="policy-1") for p in payloads])
    ledger.close()
    out = _export(directory, tmp_path / "export", capsys)
    proofs = (out / "proofs.jsonl").read_text().split("\n")
    proofs[1] = json.dumps(dict(reversed(list(json.loads(proofs[1]).items()))), indent=1).replace("\n", " ")
    (out / "proofs.jsonl").write_text("\n".join(proofs))
    for workers in (1, 2):
        assert verify_export(out, workers=workers).tree_size == 4
    receipts = (out / "receipts.jsonl").read_bytes().split(b"\n")
    receipts[0] = receipts[0].replace(b'"a":1,', b'"a":1.0,')  # same value, not canonical
    (out / "receipts.jsonl").write_bytes(b"\n".join(receipts))
    with pytest.raises(VerificationError) as failure:
        verify_export(out, workers=1)
    assert failure.value.where == "receipts.jsonl line 1" and "canonical" in failure.value.reason
