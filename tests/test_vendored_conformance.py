"""The vendored conformance sets (tests/conformance/) are whole and byte for byte as published.

Each set is pinned by its file count and a SHA-256 digest over its files in sorted path order
(for each: the path relative to the set, a NUL, the decimal length, a NUL, the bytes). The set's
own README.md is ours and left out; everything else, the licence included, is upstream's. An
edit, a lost or added file, or a line-ending conversion changes the digest and fails here.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tests.helpers import CONFORMANCE

#: set → (number of files, digest); change only when a set is deliberately re-vendored from upstream
SETS = {
    "rfc9162": (519, "2358ae54beea1b1fc69f1d45a5b8bab9f15f54db7acefe8afecfd5505ad3c3eb"),
    "rfc8785": (20, "2fbd0e18b4a30a14b5c6e0e4e4b474688b9f6c1ad4ac1327e90e13ab1ebe0919"),
    "signed-note": (2, "ffb63b63ae9f113011149f932b1be15070040ff19980304ca1581aab005eda75"),
}


def set_files(root: Path) -> list[Path]:
    """The upstream files of one set: every file under it but its own README.md."""
    return sorted((p for p in root.rglob("*") if p.is_file() and p.relative_to(root).as_posix() != "README.md"),
                  key=lambda p: p.relative_to(root).as_posix())


def set_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in set_files(root):
        data = path.read_bytes()
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + str(len(data)).encode() + b"\0" + data)
    return digest.hexdigest()


def test_exactly_the_known_sets_are_vendored() -> None:
    assert sorted(p.name for p in CONFORMANCE.iterdir() if p.is_dir()) == sorted(SETS)


@pytest.mark.parametrize("name", sorted(SETS))
def test_each_set_is_complete_and_unedited(name: str) -> None:
    root = CONFORMANCE / name
    count, expected = SETS[name]
    assert len(set_files(root)) == count, f"{name}: file count changed"
    assert set_digest(root) == expected, f"{name}: a vendored file was edited, added or lost (never edit a vector)"


@pytest.mark.parametrize("name", sorted(SETS))
def test_each_set_carries_its_licence_and_a_readme_naming_source_version_and_licence(name: str) -> None:
    root = CONFORMANCE / name
    assert (root / "LICENSE").stat().st_size > 0
    readme = (root / "README.md").read_text()
    for heading in ("**Source**", "**Version**", "**Licence**"):
        assert heading in readme, f"{name}/README.md lacks {heading}"


def test_the_digest_notices_a_one_byte_edit(tmp_path: Path) -> None:
    """The check itself can fail: a copy of a set with one byte changed gets another digest."""
    copy = tmp_path / "signed-note"
    copy.mkdir()
    for path in set_files(CONFORMANCE / "signed-note"):
        (copy / path.name).write_bytes(path.read_bytes())
    assert set_digest(copy) == SETS["signed-note"][1]
    vector = copy / "go-sumdb-note.json"
    data = bytearray(vector.read_bytes())
    data[-2] ^= 0x01
    vector.write_bytes(bytes(data))
    assert set_digest(copy) != SETS["signed-note"][1]


def test_the_rfc8785_licence_is_apache_and_the_go_licence_bsd() -> None:
    assert "Apache License, Version 2.0" in (CONFORMANCE / "rfc8785" / "LICENSE").read_text()
    assert "Apache License" in (CONFORMANCE / "rfc9162" / "LICENSE").read_text()
    assert "Redistribution and use in source and binary forms" in (CONFORMANCE / "signed-note" / "LICENSE").read_text()
