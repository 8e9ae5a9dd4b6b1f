"""The remote shell's commands (docs/specification.md §7): the grammar of a line, what each command asks of the
tree, and the text an operator reads.

Lines are parsed here, in the daemon, so every client gets the same grammar and the same
errors, and a client needs nothing but the table the session sends when it opens (names,
usage, help: enough for completion). A line that does not parse is refused with
``invalid_command`` and changes nothing: it is not run and not recorded. A line that parses is
first recorded as a ``shell.command`` receipt (through ProdMode, which picks the chain and
authority as for every receipt of the mode) and only then run, so nothing an operator does
through the shell goes unrecorded; if it cannot be recorded it is not run.

Actor messages go through the same allow-list as the gateway's ``/v1/actors/{name}/call``,
payloads are JSON only, and there is no evaluation of Python: the shell reaches exactly what
the HTTP gateway reaches, with a receipt for each command.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tai_autonomics.actors import status_api, supervisor_api
from tai_autonomics.actors.names import RECEIPT_LEDGER
from tai_autonomics.errors import TaiError
from tai_autonomics.gateway import observer, supervision
from tai_autonomics.gateway.auth import Identity
from tai_autonomics.gateway.context import scrape
from tai_autonomics.gateway.errors import ApiError
from tai_autonomics.gateway.policy import OPERATION_TIMEOUT_S, allowed_message
from tai_autonomics.logs import LOG_LEVELS
from tai_autonomics.runtime import set_log_level
from tai_autonomics.validation import loads_json, why_not_json

if TYPE_CHECKING:
    from tai_autonomics.gateway.context import Gateway

MAX_LINE = 4096
RECEIPTS_DEFAULT, RECEIPTS_MAX = 10, 1000
TOP_INTERVAL_S, TOP_MIN_INTERVAL_S, TOP_MAX_INTERVAL_S = 2.0, 0.2, 60.0
VERIFY_TIMEOUT_S = 600.0  # the ledger checks every stored receipt: minutes on a large ledger
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,127}")
_MESSAGE = re.compile(r"\$?[A-Za-z_][A-Za-z0-9_]{0,127}")


class ShellInputError(TaiError):
    """A line that is not a command: refused before it is recorded or run."""

    code = "invalid_command"


@dataclass(frozen=True)
class Command:
    """A parsed line: the command's name, its words, and the JSON payload of ``call``/``cast``."""

    name: str
    args: tuple[str, ...]
    line: str
    payload: Any = None
    options: dict[str, str | bool] = field(default_factory=dict)
    """Of a command with ``--options``: each one given, with its value (True for a switch)."""


@dataclass(frozen=True)
class Output:
    """What a command answers: a JSON value for programs and the text an operator reads."""

    value: Any
    text: str


@dataclass(frozen=True)
class _Spec:
    """One command. Its usage is its grammar: after the name, an UPPERCASE word is a placeholder
    checked by :data:`_PLACEHOLDERS`, a lowercase word is itself, ``[...]`` is optional, and
    ``[JSON]`` is the rest of the line as a JSON payload. The client completes from it too."""

    name: str
    usage: str
    help: str
    run: Callable[[Shell, Command], Awaitable[Output]]
    options: tuple[tuple[str, str | None], ...] = ()
    """Instead of positional words: ``--flag`` words in any order, each at most once, with the
    placeholder of the value that follows it (None: a switch)."""
    exclusive: tuple[str, ...] = ()
    """Options that may not be given together."""

    @property
    def words(self) -> list[tuple[str, bool]]:
        """Each word after the name, and whether it must be given."""
        return [(w.strip("[]"), not w.startswith("[")) for w in self.usage.split()[1:] if w != "[JSON]"]

    @property
    def takes_payload(self) -> bool:
        return self.usage.endswith("[JSON]")


def parse(line: Any) -> Command:
    """The command ``line`` names, with its arguments checked; :class:`ShellInputError` if not."""
    if not isinstance(line, str):
        raise ShellInputError("a command line must be a string")
    if len(line) > MAX_LINE:
        raise ShellInputError(f"a command line may be at most {MAX_LINE} characters", detail={"length": len(line)})
    text = line.strip()
    if not text:
        raise ShellInputError("empty command; type help")
    name, rest = (text.split(None, 1) + [""])[:2]
    spec = COMMANDS.get(name)
    if spec is None:
        raise ShellInputError(f"unknown command {name[:64]!r}; type help", detail={"command": name[:64]})
    if spec.options:
        return Command(name, tuple(rest.split()), text, options=_options(spec, rest.split()))
    expected = spec.words
    payload = None
    if spec.takes_payload:  # call NAME MSG [JSON]: the JSON is the rest of the line, spaces and all
        parts = rest.split(None, len(expected))
        words, raw = parts[:len(expected)], (parts[len(expected)] if len(parts) > len(expected) else "")
        payload = _json(raw) if raw else None
    else:
        words = rest.split()
    if not sum(required for _, required in expected) <= len(words) <= len(expected):
        raise ShellInputError(f"usage: {spec.usage}", detail={"command": name})
    for word, (placeholder, _) in zip(words, expected, strict=False):  # optional words may be left out
        _check_word(name, placeholder, word)
    return Command(name, tuple(words), text, payload)


def _options(spec: _Spec, words: list[str]) -> dict[str, str | bool]:
    takes = dict(spec.options)
    found: dict[str, str | bool] = {}
    words = list(words)
    while words:
        flag = words.pop(0)
        if flag not in takes:
            raise ShellInputError(f"{flag[:64]!r} is not an option of {spec.name}; usage: {spec.usage}",
                                  detail={"command": spec.name})
        if flag in found:
            raise ShellInputError(f"{flag} is given twice", detail={"command": spec.name})
        placeholder = takes[flag]
        if placeholder is None:
            found[flag] = True
            continue
        if not words:
            raise ShellInputError(f"{flag} needs a value ({placeholder}); usage: {spec.usage}",
                                  detail={"command": spec.name, "expected": placeholder})
        value = words.pop(0)
        _check_word(spec.name, placeholder, value)
        found[flag] = value
    given = [flag for flag in spec.exclusive if flag in found]
    if len(given) > 1:
        raise ShellInputError(f"{' and '.join(given)} cannot be given together", detail={"command": spec.name})
    return found


def _seconds(word: str) -> bool:
    try:
        return TOP_MIN_INTERVAL_S <= float(word) <= TOP_MAX_INTERVAL_S
    except ValueError:
        return False


def _check_word(command: str, placeholder: str, word: str) -> None:
    admits, says = _PLACEHOLDERS.get(placeholder, (placeholder.__eq__, f"is not {placeholder!r}"))
    if not word.isprintable() or not admits(word):
        raise ShellInputError(f"{word[:64]!r} {says}", detail={"command": command, "expected": placeholder})


#: what each placeholder of a usage admits, and what a refusal says
_PLACEHOLDERS: dict[str, tuple[Callable[[str], Any], str]] = {
    "NAME": (_NAME.fullmatch, "is not an actor name"),
    "SUP": (_NAME.fullmatch, "is not a supervisor name"),
    "MSG": (_MESSAGE.fullmatch, "is not a message type"),
    "LEVEL": (lambda w: w.upper() in LOG_LEVELS, f"is not a log level ({', '.join(LOG_LEVELS)})"),
    "N": (lambda w: w.isdecimal() and 1 <= int(w) <= RECEIPTS_MAX, f"is not a whole number 1-{RECEIPTS_MAX}"),
    "COMMAND": (lambda w: w in COMMANDS, "is not a command; type help"),
    "S": (_seconds, f"is not a number of seconds from {TOP_MIN_INTERVAL_S:g} to {TOP_MAX_INTERVAL_S:g}"),
    "KEY": (lambda w: w in observer.SORT_KEYS, f"is not a sort key ({', '.join(observer.SORT_KEYS)})"),
}


def _json(raw: str) -> Any:
    try:
        return loads_json(raw)
    except (ValueError, RecursionError) as exc:
        raise ShellInputError(f"the payload is not JSON: {why_not_json(exc)}", detail={"field": "payload"}) from None


class Shell:
    """One operator's session: runs parsed commands against the tree as ``identity``."""

    def __init__(self, gateway: Gateway, identity: Identity, session: str) -> None:
        self.gateway = gateway
        self.identity = identity
        self.session = session
        self.cpu = observer.CpuSampler()  # top's CPU % is over the time since this session last looked

    async def record(self, command: Command) -> dict[str, Any]:
        """The ``shell.command`` receipt of ``command``, durable before the command runs."""
        payload = {"subject": self.identity.subject, "role": self.identity.role, "session": self.session,
                   "command": command.name, "line": command.line}
        try:
            return await status_api.arecord(self.gateway.bridge, "shell.command", payload)
        except ApiError as exc:
            raise ApiError(503, "shell_not_recorded", f"the command was not run: it could not be recorded "
                           f"({exc.code})", {"cause": exc.code}) from None

    async def run(self, command: Command) -> Output:
        return await COMMANDS[command.name].run(self, command)

    async def call(self, actor: str, msg_type: str, payload: Any = None, timeout_s: float | None = None) -> Any:
        return await self.gateway.bridge.call(actor, msg_type, payload, timeout_s=timeout_s)


# -- the commands --------------------------------------------------------------------------------

async def _help(shell: Shell, command: Command) -> Output:
    specs = [COMMANDS[command.args[0]]] if command.args else list(COMMANDS.values())
    width = max(len(spec.usage) for spec in specs)
    return Output([{"usage": s.usage, "help": s.help} for s in specs],
                  "\n".join(f"{spec.usage.ljust(width)}  {spec.help}" for spec in specs))


async def _quit(shell: Shell, command: Command) -> Output:
    return Output({"bye": True}, "bye")


async def _tree(shell: Shell, command: Command) -> Output:
    tree = await supervision.walk(shell.gateway.bridge, shell.gateway.config.root)
    lines: list[str] = []

    def show(node: dict[str, Any], depth: int) -> None:
        lines.append("  " * depth + _describe(node))
        for child in node.get("children") or ():
            show(child, depth + 1)

    show(tree, 0)
    return Output(tree, "\n".join(lines))


def _describe(child: dict[str, Any]) -> str:
    if "state" not in child:  # the root, which has no supervisor to describe it
        return f"{child['name']} (supervisor)"
    text = (f"{child['name']} ({child.get('type')}) {child.get('state')}, pid {child.get('pid')}, "
            f"restarts {child.get('restarts', 0)}")
    if child.get("last_crash"):
        text += f", last crash: {child['last_crash']['reason']}"
    return text + (f" [cannot list children: {child['error']}]" if child.get("error") else "")


async def _which_children(shell: Shell, command: Command) -> Output:
    children = await supervisor_api.awhich_children(shell, command.args[0])
    return Output(children, "\n".join(_describe(child) for child in children) or "(no children)")


async def _state(shell: Shell, command: Command) -> Output:
    name = command.args[0]
    await _in_tree(shell, name)
    return _json_output(await shell.call(name, "$state"))


async def _in_tree(shell: Shell, name: str) -> str | None:
    """The supervisor of ``name`` (None for the root), or 404 ``no_such_actor`` if the live tree
    has no such actor.

    Asked of the tree first because a call to an unregistered name only says "could not answer
    now; retry later" (503): right for an actor between two incarnations, which its supervisor
    still lists, misleading for a name that does not exist, which no retry will find.
    """
    tree = await supervision.walk(shell.gateway.bridge, shell.gateway.config.root)
    parent = _parent_of(tree, name)
    if parent is None and name != tree["name"]:
        raise ApiError(404, "no_such_actor", f"no actor {name!r} in the supervision tree; type tree",
                       {"actor": name})
    return parent


async def _restart(shell: Shell, command: Command) -> Output:
    name = command.args[0]
    parent = await _in_tree(shell, name)
    if parent is None:
        raise ApiError(422, "cannot_restart_root", "the root supervisor has no supervisor to restart it; "
                       "restart the daemon instead", {"actor": name})
    answer = await supervisor_api.arestart_child(shell, parent, name)
    return Output({**answer, "supervisor": parent}, f"restarting {name} (by its supervisor {parent})")


def _parent_of(node: dict[str, Any], name: str) -> str | None:
    for child in node.get("children") or ():
        if child["name"] == name:
            return node["name"]
        found = _parent_of(child, name)
        if found is not None:
            return found
    return None


async def _call(shell: Shell, command: Command) -> Output:
    actor, msg_type = command.args
    allowed_message(shell.gateway.config, actor, msg_type)
    return _json_output(await shell.call(actor, msg_type, command.payload))


async def _cast(shell: Shell, command: Command) -> Output:
    actor, msg_type = command.args
    allowed_message(shell.gateway.config, actor, msg_type)
    await shell.gateway.bridge.cast(actor, msg_type, command.payload)
    return Output({"accepted": True}, f"sent {msg_type} to {actor}")


async def _mode(shell: Shell, command: Command) -> Output:
    if command.args:  # resume: ProdMode asks the insurer first, which may retry on its timers
        mode = await status_api.aresume(shell, OPERATION_TIMEOUT_S)
    else:
        mode = await status_api.amode(shell)
    text = f"{mode.get('mode')}: {mode.get('reason')}"
    if mode.get("manual_resume"):
        text += " (leaving read_only needs: mode resume)"
    return Output(mode, text)


async def _insurance(shell: Shell, command: Command) -> Output:
    return _json_output(await status_api.ainsurance(shell))


async def _receipts(shell: Shell, command: Command) -> Output:
    limit = int(command.args[0]) if command.args else RECEIPTS_DEFAULT
    found = await shell.call(RECEIPT_LEDGER, "latest", {"limit": limit})
    lines = [f"{r.get('leaf_index')}  {r.get('time')}  {r.get('kind')}  {r.get('chain')}#{r.get('seq')}  {r.get('id')}"
             + (f"  op {r['operation_id']}" if r.get("operation_id") else "") for r in found]
    return Output(found, "\n".join(lines) or "(the ledger is empty)")


async def _verify(shell: Shell, command: Command) -> Output:
    report = await shell.call(RECEIPT_LEDGER, "verify", timeout_s=VERIFY_TIMEOUT_S)
    return _json_output(report)


async def _metrics(shell: Shell, command: Command) -> Output:
    text = (await scrape(shell.gateway)).decode()
    samples = [line for line in text.splitlines() if line and not line.startswith("#")]
    return Output(samples, "\n".join(samples))


async def _log_level(shell: Shell, command: Command) -> Output:
    """Every process of the daemon: the gateway's own, then every actor in the live tree."""
    level = set_log_level(command.args[0])
    tree = await supervision.walk(shell.gateway.bridge, shell.gateway.config.root)
    names = [tree["name"], *names_below(tree)]

    async def set_one(name: str) -> str:
        try:
            await shell.call(name, "$log_level", level)
            return level
        except ApiError as exc:
            return f"not set: {exc.code}"

    results = dict(zip(names, await asyncio.gather(*(set_one(n) for n in names)), strict=True))
    logging.getLogger("tai_autonomics.gateway").warning(
        "log level set from the remote shell", extra={"fields": {"event": "log_level_set", "level": level,
                                                                 "subject": shell.identity.subject}})
    return Output({"gateway": level, "actors": results},
                  "\n".join([f"gateway: {level}", *(f"{name}: {result}" for name, result in results.items())]))


async def _top(shell: Shell, command: Command) -> Output:
    """One look at every actor (``shell.py`` repeats it for a refreshing ``top``)."""
    rows = observer.rows(await observer.observe(shell.gateway.bridge, shell.gateway.config.root))
    shell.cpu.annotate(rows, time.monotonic())
    key = str(command.options.get("--sort", "rss"))
    rows.sort(key=lambda row: observer.sort_value(row, key), reverse=True)
    if command.options.get("--json"):
        return Output(rows, json.dumps(rows, sort_keys=True, allow_nan=False))
    return Output(rows, observer.table(rows, key))


def refreshes(command: Command) -> tuple[int | None, float] | None:
    """How a command repeats: None for one answer; for ``top``, how many looks (None: until the
    client stops it) and the seconds between them."""
    if command.name != "top":
        return None
    count = 1 if command.options.get("--once") else int(command.options.get("--count", 0)) or None
    return count, float(command.options.get("--interval", TOP_INTERVAL_S))


def names_below(node: dict[str, Any]) -> list[str]:
    """The names of every actor under ``node`` of a walked tree, depth first."""
    return [n for child in node.get("children") or () for n in (child["name"], *names_below(child))]


def _json_output(value: Any) -> Output:
    return Output(value, json.dumps(value, indent=2, sort_keys=True, allow_nan=False))


COMMANDS: dict[str, _Spec] = {spec.name: spec for spec in (
    _Spec("tree", "tree", "the live supervision tree, with states, pids and restart counts", _tree),
    _Spec("which_children", "which_children SUP", "the children of supervisor SUP", _which_children),
    _Spec("state", "state NAME", "what actor NAME shows of its state", _state),
    _Spec("restart", "restart NAME", "ask NAME's supervisor to restart it (a fresh incarnation)", _restart),
    _Spec("call", "call NAME MSG [JSON]", "call actor NAME with an allowed message, payload JSON", _call),
    _Spec("cast", "cast NAME MSG [JSON]", "send actor NAME an allowed message without waiting", _cast),
    _Spec("mode", "mode [resume]", "the daemon's mode; 'resume' leaves read_only once the insurer confirms", _mode),
    _Spec("insurance", "insurance", "the certificate and the insurer client's state", _insurance),
    _Spec("receipts", "receipts [N]", f"the last N receipts of the ledger (default {RECEIPTS_DEFAULT})", _receipts),
    _Spec("verify", "verify", "check every stored receipt, chain, proof and checkpoint", _verify),
    _Spec("metrics", "metrics", "the daemon's metrics, as /metrics serves them", _metrics),
    _Spec("log_level", "log_level LEVEL", f"set the log level of every process ({', '.join(LOG_LEVELS)})",
          _log_level),
    _Spec("top", "top [--once] [--count N] [--interval S] [--sort KEY] [--json]",
          "per actor: memory, CPU, messages/s, restarts, last crash, pending outbound; refreshes every "
          f"{TOP_INTERVAL_S:g} s until a key is pressed (--once: one look; --sort rss|cpu|msgs|restarts)", _top,
          options=(("--once", None), ("--count", "N"), ("--interval", "S"), ("--sort", "KEY"), ("--json", None)),
          exclusive=("--once", "--count")),
    _Spec("help", "help [COMMAND]", "this list, or one command's usage", _help),
    _Spec("quit", "quit", "end the session", _quit),
)}


def describe_commands() -> list[dict[str, str]]:
    """The table a client gets when the session opens (for its help and completion)."""
    return [{"name": s.name, "usage": s.usage, "help": s.help} for s in COMMANDS.values()]
