"""Actor names live in one place: ``tai_autonomics.actors.names``.

The constants must be the workers of the packaged ``supervision.toml`` (read with the runtime's
own loader), and no other module of the package may spell one of those names as a string: a
literal elsewhere is a second copy that a rename would miss.
"""

from __future__ import annotations

import ast
from pathlib import Path

import tai_autonomics
from tai_autonomics.actors import names
from tai_autonomics.config import packaged_supervision
from tai_autonomics.runtime.spec import WorkerSpec, load_tree

PACKAGE = Path(tai_autonomics.__file__).parent
NAMES_MODULE = PACKAGE / "actors" / "names.py"


def _packaged_workers() -> tuple[str, ...]:
    return tuple(spec.name for spec in load_tree(packaged_supervision()).walk() if isinstance(spec, WorkerSpec))


def _name_constants() -> dict[str, str]:
    """The module's upper-case string constants: one per actor."""
    return {key: value for key, value in vars(names).items() if key.isupper() and isinstance(value, str)}


def _exempt(tree: ast.AST) -> set[int]:
    """Ids of the string nodes that are not actor names in code: docstrings, and ``__all__``
    entries (which name Python objects, such as the trust package's ``CertManager`` class)."""
    exempt: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                exempt.add(id(first.value))
        elif isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets) and node.value is not None:
                exempt.update(id(n) for n in ast.walk(node.value))
    return exempt


def _spelled_names(source: str, actor_names: set[str]) -> list[tuple[int, str]]:
    """(line, name) of every string literal in ``source`` equal to an actor name."""
    tree = ast.parse(source)
    exempt = _exempt(tree)
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in actor_names
            and id(node) not in exempt]


def test_the_constants_are_the_workers_of_the_packaged_tree() -> None:
    workers = _packaged_workers()
    assert len(workers) == 8
    assert names.WORKERS == workers
    assert sorted(_name_constants().values()) == sorted(workers)


def test_the_scan_finds_a_literal_name_and_passes_docstrings_and_all() -> None:
    source = '''"""Calls ReceiptLedger."""
__all__ = ["CertManager"]


def f(actor):
    """ProdMode"""
    actor.call_actor("ReceiptLedger", "append", {"to": "ProdMode"})
'''
    assert sorted(_spelled_names(source, set(names.WORKERS))) == [(7, "ProdMode"), (7, "ReceiptLedger")]


def test_no_other_module_spells_an_actor_name() -> None:
    actor_names = set(_packaged_workers())
    found = {str(path.relative_to(PACKAGE)): spelled for path in sorted(PACKAGE.rglob("*.py"))
             if path != NAMES_MODULE and (spelled := _spelled_names(path.read_text(encoding="utf-8"), actor_names))}
    assert found == {}
