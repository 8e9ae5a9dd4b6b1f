"""The supervision tree as data: child specs, and loading them from ``supervision.toml``.

Everything is validated before anything starts (OTP checks child specs in ``init/1`` too):
an error names the file, the key path and the reason, so a bad release never half-starts.

File shape (flat tables that reference each other by name, like OTP child specs)::

    root = "root"

    [supervisors.root]
    strategy = "one_for_one"      # one_for_one | one_for_all | rest_for_one
    intensity = 10                # more than this many restarts (0: give up at the first) ...
    period = 60                   # ... within this many seconds: give up and escalate
    children = ["Ledger", "ops"]  # start order; stop order is the reverse

    [workers.Ledger]
    actor = "package.module:Class"  # a Server subclass
    restart = "permanent"           # permanent | transient | temporary
    shutdown = 5000                 # ms before being killed, or "brutal_kill"
    args = { path = "ledger.db" }   # handed to the actor's init()
"""

from __future__ import annotations

import dataclasses
import importlib
import re
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

from tai_autonomics.errors import ConfigError
from tai_autonomics.validation import is_int

STRATEGIES = ("one_for_one", "one_for_all", "rest_for_one")
RESTARTS = ("permanent", "transient", "temporary")
Strategy = Literal["one_for_one", "one_for_all", "rest_for_one"]
Restart = Literal["permanent", "transient", "temporary"]
DEFAULT_WORKER_SHUTDOWN_MS = 5000


@dataclass(frozen=True)
class Shutdown:
    """How a supervisor stops a child, OTP's ``brutal_kill | infinity | Timeout``: kill it at
    once (no cleanup), wait for its cleanup however long it takes (the default for a supervisor,
    whose own children have their timeouts), or wait ``seconds`` and then kill it. Held in
    seconds, as the supervisor's timers take them; :meth:`from_ms` reads OTP's milliseconds."""

    kind: Literal["brutal_kill", "infinity", "timeout"]
    seconds: float | None = None
    """How long a ``timeout`` waits; None for ``brutal_kill`` and ``infinity``."""

    def __post_init__(self) -> None:
        if (self.kind == "timeout") != (self.seconds is not None):
            raise ValueError(f"shutdown {self.kind} with seconds={self.seconds}: only a timeout has seconds")
        if self.seconds is not None and not self.seconds > 0:
            raise ValueError(f"a shutdown timeout must be positive, not {self.seconds} s")

    @classmethod
    def from_ms(cls, ms: int) -> Shutdown:
        """A timeout as ``supervision.toml`` and OTP write it, in milliseconds."""
        return cls("timeout", ms / 1000)

    def __str__(self) -> str:
        """As OTP and ``supervision.toml`` write it: ``brutal_kill``, ``infinity`` or the ms."""
        return self.kind if self.seconds is None else str(round(self.seconds * 1000))


BRUTAL_KILL = Shutdown("brutal_kill")
INFINITY = Shutdown("infinity")

_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_WORKER_KEYS = {"actor", "restart", "shutdown", "args"}
_SUPERVISOR_KEYS = {"strategy", "intensity", "period", "children", "restart", "shutdown"}


@dataclass(frozen=True)
class WorkerSpec:
    name: str
    actor: str
    restart: Restart = "permanent"
    shutdown: Shutdown = Shutdown.from_ms(DEFAULT_WORKER_SHUTDOWN_MS)
    args: dict[str, Any] = field(default_factory=dict)

    def actor_class(self) -> type:
        """Import the actor class (already checked at load time)."""
        return _import_actor(self.actor)


@dataclass(frozen=True)
class SupervisorSpec:
    name: str
    strategy: Strategy = "one_for_one"
    intensity: int = 1
    period: float = 5
    children: tuple[ChildSpec, ...] = ()
    restart: Restart = "permanent"
    shutdown: Shutdown = INFINITY

    def walk(self) -> Iterator[SupervisorSpec | WorkerSpec]:
        """Yield every spec in the tree, depth first, in start order."""
        yield self
        for child in self.children:
            if isinstance(child, SupervisorSpec):
                yield from child.walk()
            else:
                yield child


ChildSpec = Union[WorkerSpec, SupervisorSpec]


def load_tree(path: str | Path) -> SupervisorSpec:
    """Read and validate a ``supervision.toml``; raise :class:`ConfigError` on any problem."""
    source = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(source, "", f"cannot read file: {exc.strerror or exc}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(source, "", f"not valid TOML: {exc}") from None
    return parse_tree(data, source)


def parse_tree(data: dict[str, Any], source: str = "<config>") -> SupervisorSpec:
    """Validate an already-parsed tree document (see the module docstring for its shape)."""
    return _TreeParser(data, source).parse()


class _TreeParser:
    def __init__(self, data: dict[str, Any], source: str) -> None:
        self.data = data
        self.source = source

    def fail(self, key: str, reason: str) -> ConfigError:
        return ConfigError(self.source, key, reason)

    def parse(self) -> SupervisorSpec:
        unknown = set(self.data) - {"root", "supervisors", "workers"}
        if unknown:
            raise self.fail(sorted(unknown)[0], "unknown key (expected root, supervisors, workers)")
        root = self.data.get("root")
        if not isinstance(root, str):
            raise self.fail("root", "missing or not a string: name the root supervisor")
        self.supervisors = self._table("supervisors")
        self.workers = self._table("workers")
        for name in self.supervisors.keys() & self.workers.keys():
            raise self.fail(f"workers.{name}", "duplicate name: also defined under supervisors")
        for section, table in (("supervisors", self.supervisors), ("workers", self.workers)):
            for name in table:
                if not _NAME.match(name):
                    raise self.fail(f"{section}.{name}", "invalid name (use 1-64 of A-Z a-z 0-9 _ . -)")
        if root not in self.supervisors:
            raise self.fail("root", f"no supervisor named {root!r} under [supervisors]")
        self.seen: set[str] = set()
        spec = self._supervisor(root, path=())
        unused = (self.supervisors.keys() | self.workers.keys()) - self.seen
        if unused:
            name = sorted(unused)[0]
            section = "supervisors" if name in self.supervisors else "workers"
            raise self.fail(f"{section}.{name}", "defined but not part of the tree under root")
        return spec

    def _table(self, key: str) -> dict[str, dict[str, Any]]:
        table = self.data.get(key, {})
        if not isinstance(table, dict):
            raise self.fail(key, "must be a table")
        for name, entry in table.items():
            if not isinstance(entry, dict):
                raise self.fail(f"{key}.{name}", "must be a table")
        return table

    def _supervisor(self, name: str, path: tuple[str, ...]) -> SupervisorSpec:
        key = f"supervisors.{name}"
        entry = self.supervisors[name]
        self._no_unknown_keys(key, entry, _SUPERVISOR_KEYS)
        self.seen.add(name)
        strategy = entry.get("strategy", "one_for_one")
        if strategy not in STRATEGIES:
            raise self.fail(f"{key}.strategy", f"unknown strategy {strategy!r} (expected {', '.join(STRATEGIES)})")
        intensity = self._int(f"{key}.intensity", entry.get("intensity", 1), minimum=0)
        period = self._positive_number(f"{key}.period", entry.get("period", 5))
        children_names = entry.get("children", [])
        if not isinstance(children_names, list) or not all(isinstance(c, str) for c in children_names):
            raise self.fail(f"{key}.children", "must be a list of child names")
        children: list[ChildSpec] = []
        for index, child in enumerate(children_names):
            child_key = f"{key}.children[{index}]"
            if child in path or child == name:
                raise self.fail(child_key, f"cycle: {' -> '.join((*path, name, child))}")
            if child in self.seen:
                raise self.fail(child_key, f"duplicate name: {child!r} appears twice in the tree")
            if child in self.supervisors:
                children.append(self._supervisor(child, (*path, name)))
            elif child in self.workers:
                children.append(self._worker(child))
            else:
                raise self.fail(child_key, f"no worker or supervisor named {child!r}")
        return SupervisorSpec(
            name=name,
            strategy=strategy,
            intensity=intensity,
            period=period,
            children=tuple(children),
            restart=self._restart(key, entry),
            shutdown=self._shutdown(key, entry, INFINITY),
        )

    def _worker(self, name: str) -> WorkerSpec:
        key = f"workers.{name}"
        entry = self.workers[name]
        self._no_unknown_keys(key, entry, _WORKER_KEYS)
        self.seen.add(name)
        actor = entry.get("actor")
        if not isinstance(actor, str):
            raise self.fail(f"{key}.actor", "missing or not a string: give 'package.module:Class'")
        try:
            _import_actor(actor)
        except (ImportError, AttributeError, ValueError, TypeError) as exc:
            raise self.fail(f"{key}.actor", f"unknown actor class {actor!r}: {exc}") from None
        args = entry.get("args", {})
        if not isinstance(args, dict):
            raise self.fail(f"{key}.args", "must be a table")
        return WorkerSpec(
            name=name,
            actor=actor,
            restart=self._restart(key, entry),
            shutdown=self._shutdown(key, entry, Shutdown.from_ms(DEFAULT_WORKER_SHUTDOWN_MS)),
            args=args,
        )

    def _no_unknown_keys(self, key: str, entry: dict[str, Any], allowed: set[str]) -> None:
        unknown = sorted(set(entry) - allowed)
        if unknown:
            raise self.fail(f"{key}.{unknown[0]}", f"unknown key (expected one of {', '.join(sorted(allowed))})")

    def _restart(self, key: str, entry: dict[str, Any]) -> Restart:
        restart = entry.get("restart", "permanent")
        if restart not in RESTARTS:
            raise self.fail(f"{key}.restart", f"unknown restart type {restart!r} (expected {', '.join(RESTARTS)})")
        return restart

    def _shutdown(self, key: str, entry: dict[str, Any], default: Shutdown) -> Shutdown:
        if "shutdown" not in entry:
            return default
        value = entry["shutdown"]
        if value in ("brutal_kill", "infinity"):
            return Shutdown(value)
        if isinstance(value, str):
            raise self.fail(f"{key}.shutdown",
                            f"unknown shutdown {value!r} (milliseconds, 'brutal_kill' or 'infinity')")
        return Shutdown.from_ms(self._int(f"{key}.shutdown", value, minimum=1))

    def _int(self, key: str, value: Any, *, minimum: int) -> int:
        if not is_int(value):
            raise self.fail(key, f"must be an integer, got {type(value).__name__}")
        if value < minimum:
            raise self.fail(key, f"must be {'positive' if minimum == 1 else f'at least {minimum}'}, got {value}")
        return value

    def _positive_number(self, key: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(key, f"must be a number, got {type(value).__name__}")
        if not value > 0 or value != value or value == float("inf"):
            raise self.fail(key, f"must be a positive finite number, got {value}")
        return value


def with_worker_args(spec: SupervisorSpec, extra: dict[str, Any]) -> SupervisorSpec:
    """The same tree with ``extra`` merged into every worker's args (the file's args win).

    A release hands run-time context (data directory, endpoints, key locations) to every actor
    this way, so supervision files stay the same across environments.
    """
    children = tuple(
        with_worker_args(child, extra) if isinstance(child, SupervisorSpec)
        else dataclasses.replace(child, args={**extra, **child.args})
        for child in spec.children
    )
    return dataclasses.replace(spec, children=children)


def _import_actor(path: str) -> type:
    from tai_autonomics.runtime.server import Server

    module_name, sep, class_name = path.partition(":")
    if not sep or not module_name or not class_name:
        raise ValueError("expected 'package.module:Class'")
    cls = getattr(importlib.import_module(module_name), class_name)
    if not (isinstance(cls, type) and issubclass(cls, Server)):
        raise TypeError(f"{path} is not a Server subclass")
    return cls


def render_tree(spec: SupervisorSpec) -> str:
    """The tree as text, in the shape docs/specification.md §3 draws it."""
    lines = [_describe(spec)]
    _render_children(spec, "", lines)
    return "\n".join(lines)


def _describe(spec: ChildSpec) -> str:
    if isinstance(spec, SupervisorSpec):
        return f"{spec.name} ({spec.strategy}, intensity {spec.intensity} per {spec.period:g} s)"
    shutdown = f"shutdown {spec.shutdown} ms" if spec.shutdown.kind == "timeout" else str(spec.shutdown)
    return f"{spec.name:<18} {spec.restart:<10} {shutdown:<18} {spec.actor}"


def _render_children(spec: SupervisorSpec, indent: str, lines: list[str]) -> None:
    for i, child in enumerate(spec.children):
        last = i == len(spec.children) - 1
        lines.append(f"{indent}{'└── ' if last else '├── '}{_describe(child)}")
        if isinstance(child, SupervisorSpec):
            _render_children(child, indent + ("    " if last else "│   "), lines)
