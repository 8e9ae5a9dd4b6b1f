"""The repository stands alone: no tracked file refers to anything outside it.

A fresh clone with nothing beside it must pass the README's test command and be documented by
its own docs/: no paths into a folder beside the repository (the old ``shared`` folder with the
product specification, measurement notes and conformance data), and no citations of sections of
that outside specification (``docs/specification.md §N`` instead).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
_SHARED = "shared"
# Built from pieces, so this file does not match itself.
OUTSIDE = re.compile(
    "|".join([
        re.escape("../" + _SHARED),                       # a folder beside the repository
        re.escape(_SHARED + "/") + r"(notes|conformance|SPEC)",  # the outside notes, vectors, specification
        r"\b" + "SPEC" + r"\.md\b",                        # the outside specification by name
        r"\b" + "SPEC" + r" \d",                           # a section of it: the word, a space, a number
    ])
)
_SKIP_DIRS = {".git", ".venv", "__pycache__", ".pytest_cache", ".hypothesis", "var", "build"}


def tracked_files() -> list[Path]:
    """The repository's files: git's list in a checkout, else every file but local state."""
    try:
        listed = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z"], capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return [p for p in REPO.rglob("*") if p.is_file()
                and not any(part in _SKIP_DIRS or part.endswith(".egg-info") for part in p.relative_to(REPO).parts)]
    return [REPO / name for name in listed.decode().split("\0") if name]


def outside_references(paths: list[Path], root: Path) -> list[str]:
    """``path:line: text`` of every line of a text file that refers outside the repository."""
    found = []
    for path in paths:
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, FileNotFoundError, IsADirectoryError):
            continue  # binary, or deleted in the working tree
        for number, line in enumerate(text.splitlines(), start=1):
            if OUTSIDE.search(line):
                found.append(f"{path.relative_to(root)}:{number}: {line.strip()}")
    return found


def test_no_tracked_file_refers_outside_the_repository() -> None:
    files = tracked_files()
    assert len(files) > 100 and REPO / "README.md" in files  # the listing really covers the repository
    found = outside_references(files, REPO)
    assert not found, "files refer outside the repository (put what they need in docs/ or tests/):\n" + "\n".join(found)


@pytest.mark.parametrize("line", [
    "see ../" + _SHARED + "/conformance beside the repository",
    "measured on this machine (" + _SHARED + "/notes/gateway-calibration.md)",
    "the product is specified in " + _SHARED + "/" + "SPEC" + ".md",
    "Receipts follow " + "SPEC" + ".md sections 4 and 4a",
    "the error body of " + "SPEC" + " 7",
])
def test_the_scan_finds_each_kind_of_outside_reference(tmp_path: Path, line: str) -> None:
    path = tmp_path / "module.py"
    path.write_text(f'"""Docstring."""\n# {line}\n')
    assert outside_references([path], tmp_path) == [f"module.py:2: # {line}"]


@pytest.mark.parametrize("line", ["deploy.SPEC_FIELDS", "--fault SPEC", "a shared sandbox", "docs/specification.md §7"])
def test_the_scan_leaves_our_own_words_alone(tmp_path: Path, line: str) -> None:
    path = tmp_path / "module.py"
    path.write_text(line + "\n")
    assert outside_references([path], tmp_path) == []


def test_the_docs_the_code_cites_exist_with_the_sections_it_cites() -> None:
    """Every ``docs/specification.md §N`` in the repository names a section that page has."""
    spec = (REPO / "docs" / "specification.md").read_text()
    sections = set(re.findall(r"^## (\d+)\. ", spec, re.M))
    assert sections == {str(n) for n in range(1, 13)}
    cited = set()
    for path in tracked_files():
        try:
            cited |= set(re.findall(r"specification(?:\.md)?\]?(?:\(specification\.md\))? §(\d+)", path.read_text(encoding="utf-8")))
        except (UnicodeDecodeError, FileNotFoundError, IsADirectoryError):
            continue
    assert cited and cited <= sections, f"cited sections missing from docs/specification.md: {sorted(cited - sections)}"


def test_the_readme_test_command_is_what_ci_runs_and_needs_nothing_beside_the_clone() -> None:
    command = "python3 -m venv .venv && .venv/bin/pip install -q -e '.[test]' && .venv/bin/python -m pytest"
    assert command in (REPO / "README.md").read_text()
    assert command in (REPO / ".ci" / "run").read_text()
    from tests.helpers import CONFORMANCE

    assert CONFORMANCE.resolve().is_relative_to(REPO) and CONFORMANCE.is_dir()
