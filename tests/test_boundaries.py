"""The package's boundaries (issue 12 item 5): what a module may import.

Read from the source with :mod:`ast`, every import counted: no module imports another
subpackage's ``_private`` module (its implementation detail), no import circle among the
package's modules, and ``runtime/`` (the generic OTP layer) imports nothing else of the package.

The Google client library for Firestore is imported only where a Firestore ledger is configured
(:mod:`tai_autonomics.ledger.configured` chooses the store): a SQLite daemon, the CLI and the
ledger's public API load without it.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Collection
from pathlib import Path

import pytest


@pytest.mark.parametrize("module", [
    "tai_autonomics.ledger",
    "tai_autonomics.ledger.configured",
    "tai_autonomics.actors.receipt_ledger",
    "tai_autonomics.actors.cert_manager",
    "tai_autonomics.cli",
    "tai_autonomics.cli.ledger",
    "tai_autonomics.cli.daemon",
])
def test_importing_the_ledger_its_actor_and_the_cli_does_not_import_firestore(module: str) -> None:
    code = f"import sys, {module}; print(sorted(m for m in sys.modules if 'firestore' in m))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.strip() == "[]", f"{module} imports {result.stdout.strip()}"


# -- the import graph, read with ast --------------------------------------------------------------
#
# Edges are every import in a module, at any depth: at module level, under ``if TYPE_CHECKING``
# (a typing-only circle is still a circle a refactoring trips over) and inside functions (a lazy
# import that closed a circle would only hide it). ``from package import name`` is an edge to the
# submodule ``package.name`` when there is one, else to the package itself.

PACKAGE = "tai_autonomics"
ROOT = Path(__file__).resolve().parent.parent / PACKAGE

Graph = dict[str, set[str]]


def _module_names(root: Path) -> dict[str, Path]:
    """Every module of the package under ``root``, by dotted name (a package by its own name)."""
    names = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def _imports_of(source: str, module: str, is_package: bool, known: Collection[str]) -> set[str]:
    """The package modules ``source`` (the text of ``module``) imports, resolved against ``known``."""
    here = module if is_package else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = here.split(".")[: len(here.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
    return {name for name in found if name in known and name != module}


def _package_graph() -> Graph:
    modules = _module_names(ROOT)
    return {name: _imports_of(path.read_text(encoding="utf-8"), name, path.name == "__init__.py", modules)
            for name, path in modules.items()}


def _subpackage(module: str) -> str:
    """``actors`` for ``tai_autonomics.actors.receipt_ledger``; a top-level module is its own."""
    return module.split(".")[1] if module.count(".") else ""


def _private(module: str) -> bool:
    return any(part.startswith("_") and not part.startswith("__") for part in module.split(".")[1:])


def _private_imports(graph: Graph) -> list[str]:
    """Imports of a ``_private`` module from outside its subpackage (its implementation detail)."""
    return sorted(f"{module} imports {target}" for module, targets in graph.items() for target in targets
                  if _private(target) and _subpackage(target) != _subpackage(module))


#: the package's foundation, beneath every layer: the error root (``TaiError``, which crosses the
#: actor boundary), the log format and the validation helpers. They import nothing of the package
#: but the errors themselves (checked; validation's in tests/test_validation.py).
FOUNDATION = frozenset({f"{PACKAGE}.errors", f"{PACKAGE}.logs", f"{PACKAGE}.validation"})


def _runtime_leaks(graph: Graph) -> list[str]:
    """What ``runtime/`` reaches, import after import, outside itself and the foundation: the
    runtime is the generic OTP layer and knows nothing of insurance, ledgers or the gateway."""
    reached, todo = set(), [module for module in graph if _subpackage(module) == "runtime"]
    while todo:
        module = todo.pop()
        if module not in reached:
            reached.add(module)
            todo.extend(graph.get(module, ()))
    return sorted(f"{module} imports {target}" for module in reached for target in graph.get(module, ())
                  if _subpackage(target) != "runtime" and target not in FOUNDATION)


def _cycles(graph: Graph) -> list[list[str]]:
    """The import circles: each strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph.get(node, ()):
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def test_no_module_imports_another_subpackages_private_module() -> None:
    assert _private_imports(_package_graph()) == []


def test_the_package_has_no_import_circle_counting_typing_only_imports() -> None:
    assert _cycles(_package_graph()) == []


def test_the_gateway_modules_import_one_way_only() -> None:
    """The app serves the routes and the shell, the shell runs its commands; none imports back up
    (what they share is in the leaf modules ``context`` and ``policy``)."""
    order = [f"{PACKAGE}.gateway.{name}" for name in ("app", "routes", "shell", "shell_commands")]
    graph = _package_graph()
    assert [(low, up) for i, low in enumerate(order) for up in order[:i] if up in graph[low]] == []


def test_the_runtime_imports_nothing_of_the_package_outside_it_and_the_foundation() -> None:
    graph = _package_graph()
    assert any(_subpackage(module) == "runtime" and targets for module, targets in graph.items())
    assert _runtime_leaks(graph) == []


# -- each check fails on a deliberate violation ---------------------------------------------------

KNOWN = {"tai_autonomics", "tai_autonomics.gateway", "tai_autonomics.gateway.app", "tai_autonomics.gateway.routes",
         "tai_autonomics.trust", "tai_autonomics.trust._time", "tai_autonomics.runtime",
         "tai_autonomics.runtime.server", "tai_autonomics.runtime._process", "tai_autonomics.logs"}


def test_the_graph_counts_typing_only_lazy_and_relative_imports() -> None:
    source = ("from __future__ import annotations\nfrom typing import TYPE_CHECKING\nimport json\n"
              "if TYPE_CHECKING:\n    from tai_autonomics.gateway.app import Gateway\n"
              "def later():\n    from tai_autonomics.trust import _time\n"
              "from . import app\nfrom ..trust import CertManager\n")
    assert _imports_of(source, "tai_autonomics.gateway.routes", False, KNOWN) == {
        "tai_autonomics.gateway.app", "tai_autonomics.trust._time", "tai_autonomics.trust"}


def test_a_private_module_is_refused_outside_its_subpackage_only() -> None:
    graph = {"tai_autonomics.gateway.routes": {"tai_autonomics.trust._time", "tai_autonomics.trust"},
             "tai_autonomics.trust": {"tai_autonomics.trust._time"},
             "tai_autonomics.runtime.server": {"tai_autonomics.runtime._process"}}
    assert _private_imports(graph) == ["tai_autonomics.gateway.routes imports tai_autonomics.trust._time"]


def test_a_circle_is_found_through_every_module_in_it() -> None:
    graph = {"a.x": {"a.y"}, "a.y": {"a.z"}, "a.z": {"a.x", "a.w"}, "a.w": set(), "a.v": {"a.w"}}
    assert _cycles(graph) == [["a.x", "a.y", "a.z"]]
    assert _cycles({"a.x": {"a.w"}, "a.w": set()}) == []


def test_the_runtime_importing_the_rest_of_the_package_is_refused() -> None:
    graph = {"tai_autonomics.runtime.server": {"tai_autonomics.runtime._process", "tai_autonomics.logs"},
             "tai_autonomics.runtime._process": {"tai_autonomics.gateway.routes"},
             "tai_autonomics.logs": set(), "tai_autonomics.gateway.app": {"tai_autonomics.runtime"}}
    assert _runtime_leaks(graph) == ["tai_autonomics.runtime._process imports tai_autonomics.gateway.routes"]
    graph["tai_autonomics.logs"] = {"tai_autonomics.gateway.app"}
    graph["tai_autonomics.runtime._process"] = set()
    assert _runtime_leaks(graph) == ["tai_autonomics.logs imports tai_autonomics.gateway.app"]
