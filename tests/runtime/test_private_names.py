"""No actor class shadows a private name of the runtime it is built on.

An actor is a subclass of :class:`~tai_autonomics.runtime.Server`, so a private attribute or
method it defines with the same name as one of ``Process``/``Server`` silently replaces the
runtime's (``ReceiptLedger._flush_armed`` once did the runtime's coalescing flag): harmless only
until the runtime uses it. Hooks meant to be overridden are public (``init``, ``terminate``,
``handle_call`` ...); the private ones below are the runtime's alone.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import textwrap

import tai_autonomics
from tai_autonomics.runtime.server import Process, Server


def _defined_names(cls: type) -> set[str]:
    """Private names a class's own body defines: methods, class attributes, ``self._x = ...``."""
    body = ast.parse(textwrap.dedent(inspect.getsource(cls))).body[0]
    assert isinstance(body, ast.ClassDef)
    names: set[str] = set()
    for statement in body.body:
        if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names.add(statement.name)
        elif isinstance(statement, (ast.Assign, ast.AnnAssign)):
            targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
    for node in ast.walk(body):
        if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store) \
                and isinstance(node.value, ast.Name) and node.value.id == "self":
            names.add(node.attr)
    return {n for n in names if n.startswith("_") and not n.startswith("__")}


def _actor_classes() -> list[type]:
    for module in pkgutil.walk_packages(tai_autonomics.__path__, "tai_autonomics."):
        if not module.name.endswith("__main__"):  # that one runs the command line
            importlib.import_module(module.name)
    found, frontier = [], [Server]
    while frontier:
        for sub in frontier.pop().__subclasses__():
            if sub.__module__.startswith("tai_autonomics.") and not sub.__module__.startswith("tai_autonomics.runtime"):
                found.append(sub)
            frontier.append(sub)
    return found


def test_the_runtime_private_names_are_found() -> None:
    runtime = _defined_names(Process) | _defined_names(Server)
    assert {"_flush_armed", "_outbox", "_outgoing", "_on_call", "_hold"} <= runtime


def test_no_actor_class_shadows_a_runtime_private_name() -> None:
    runtime = _defined_names(Process) | _defined_names(Server)
    actors = _actor_classes()
    assert {"ReceiptLedger", "ProdMode", "Pricing"} <= {cls.__name__ for cls in actors}
    clashes = {cls.__qualname__: sorted(_defined_names(cls) & runtime) for cls in actors}
    assert {name: names for name, names in clashes.items() if names} == {}
