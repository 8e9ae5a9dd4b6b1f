"""``tai-autonomics remote-shell``: an operator's shell attached to a running daemon (docs/specification.md §7).

Interactive on a terminal (history kept across sessions, completion of commands, actor names
and levels from the table the daemon sends when the session opens); otherwise it runs the
``-c`` lines, or the lines read from standard input, and exits 1 if any was refused, so it can
be scripted. The token comes from the environment (``TAI_TOKEN_ADMIN`` unless ``--token-env``
names another), never from the command line, where other users of the machine could read it.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import signal
import sys
import termios
import threading
import tty
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from tai_autonomics.cli._errors import TokenMissing
from tai_autonomics.gateway.config import DEFAULT_PORT, TOKEN_ENV
from tai_autonomics.gateway.shell_client import Result, ShellClient
from tai_autonomics.logs import LOG_LEVELS

if TYPE_CHECKING:
    from prompt_toolkit.completion import NestedCompleter

HISTORY_FILE = "remote_shell_history"


def register(subparsers: argparse._SubParsersAction) -> None:
    shell = subparsers.add_parser(
        "remote-shell", help="attach an interactive shell to a running daemon",
        description="Attach to a running daemon's remote shell (WebSocket /v1/shell, admin token). Every "
                    "command is recorded as a shell.command receipt. Type 'help' for the commands.")
    shell.add_argument("--url", default=f"http://127.0.0.1:{DEFAULT_PORT}",
                       help=f"the daemon's gateway (default: http://127.0.0.1:{DEFAULT_PORT})")
    shell.add_argument("--token-env", default=TOKEN_ENV["admin"], metavar="NAME",
                       help=f"environment variable holding an admin bearer token (default: {TOKEN_ENV['admin']}; "
                            "the dev profile writes it to DATA_DIR/tokens.env)")
    shell.add_argument("-c", "--command", action="append", default=[], metavar="LINE", dest="lines",
                       help="run LINE and exit (repeatable; without it, lines come from standard input "
                            "when that is not a terminal)")
    shell.add_argument("--json", action="store_true", help="print each result as one JSON line")
    shell.add_argument("--history", type=Path, metavar="FILE",
                       help="interactive history file (default: $XDG_STATE_HOME/tai-autonomics/"
                            f"{HISTORY_FILE})")
    shell.set_defaults(func=_remote_shell)


def _remote_shell(args: argparse.Namespace) -> int:
    token = os.environ.get(args.token_env, "").strip()
    if not token:
        raise TokenMissing(f"no admin token: set {args.token_env} (the dev profile writes it to DATA_DIR/tokens.env; "
                           "load it with: set -a; . var/tokens.env; set +a)")
    with ShellClient(args.url, token) as client:
        if args.lines:
            return _batch(client, args.lines, args.json)
        if not sys.stdin.isatty():
            return _batch(client, (line for line in sys.stdin if line.strip()), args.json)
        return interactive(client, args.history or _default_history())


def _batch(client: ShellClient, lines: Iterable[str], as_json: bool) -> int:
    failed = False
    for line in lines:
        result = run(client, line.rstrip("\n"), as_json)
        _show(result, as_json)
        failed |= not result.ok
        if _quits(line):
            break
    return 1 if failed else 0


def _quits(line: str) -> bool:
    """``quit`` ends the session here even if the daemon refused it (say, it could not be recorded)."""
    return line.strip() == "quit"


def interactive(client: ShellClient, history: Path) -> int:
    # imported here: every tai-autonomics command loads this module, only a terminal session needs these
    from prompt_toolkit import PromptSession
    from prompt_toolkit.auto_suggest import AutoSuggestFromHistory
    from prompt_toolkit.history import FileHistory, History, InMemoryHistory

    kept: History
    try:
        history.parent.mkdir(parents=True, exist_ok=True)
        history.touch()
        kept = FileHistory(str(history))
    except OSError as exc:
        print(f"history not kept: cannot write {history}: {exc.strerror}", file=sys.stderr)
        kept = InMemoryHistory()
    session: PromptSession[str] = PromptSession(history=kept, completer=completer(client),
                                                auto_suggest=AutoSuggestFromHistory(), complete_while_typing=False)
    print(f"connected to {client.url} as {client.welcome.get('subject')}; every command is recorded as a "
          "shell.command receipt. Type help, or quit.")
    while True:
        try:
            line = session.prompt("tai> ")
        except KeyboardInterrupt:
            continue  # Ctrl-C drops the line being typed, as in any shell
        except EOFError:
            line = "quit"
        if not line.strip():
            continue
        _show(run(client, line, as_json=False), as_json=False)
        if _quits(line):
            return 0


def run(client: ShellClient, line: str, as_json: bool) -> Result:
    """Run ``line``; a refreshing ``top`` shows each look as it comes (redrawing the screen on a
    terminal) until its count, a key press or Ctrl-C, which stop it and print its last look."""
    if line.split()[:1] != ["top"]:
        return client.run(line)
    with KeyOrInterrupt(sys.stdin.fileno() if sys.stdin.isatty() else None) as stop:
        def show(update: Result) -> None:
            if as_json:  # marked, so that a script can tell the looks from the command's result
                print(json.dumps({"ok": True, "command": update.command, "update": True, "value": update.value},
                                 separators=(",", ":")), flush=True)
            elif stop.terminal:
                print("\x1b[H\x1b[2J" + update.text + "\n(press any key to stop)", flush=True)
            else:
                print(update.text + "\n", flush=True)

        return client.run(line, on_update=show, stop_requested=stop)


class KeyOrInterrupt:
    """While entered: whether a key was pressed on terminal ``fd`` (read without echo or Enter)
    or Ctrl-C was (SIGINT is caught, not raised: a refreshing command is stopped, not torn down
    in the middle of reading the daemon's frame)."""

    def __init__(self, fd: int | None) -> None:
        self.terminal = fd is not None
        self._fd = fd
        self._interrupted = False
        self._saved_mode: list[Any] | None = None
        self._saved_handler: Any = None

    def __enter__(self) -> KeyOrInterrupt:
        if threading.current_thread() is threading.main_thread():  # signal handlers live in the main thread
            self._saved_handler = signal.signal(signal.SIGINT, self._interrupt)
        if self._fd is not None:
            self._saved_mode = termios.tcgetattr(self._fd)
            tty.setcbreak(self._fd)
        return self

    def _interrupt(self, _signum: int, _frame: object) -> None:
        self._interrupted = True

    def __call__(self) -> bool:
        if self._interrupted:
            return True
        if self._fd is not None and select.select([self._fd], [], [], 0)[0]:
            os.read(self._fd, 1024)  # the key pressed, and whatever came with it
            return True
        return False

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None and self._saved_mode is not None:
            termios.tcsetattr(self._fd, termios.TCSADRAIN, self._saved_mode)
        if self._saved_handler is not None:
            signal.signal(signal.SIGINT, self._saved_handler)


def completer(client: ShellClient) -> NestedCompleter:
    """Commands first; then what the command's usage says comes next: an actor, a level, a
    command, or a literal word (the daemon's grammar, see ``gateway/shell_commands.py``)."""
    from prompt_toolkit.completion import NestedCompleter

    actors = dict.fromkeys(client.actors)
    choices = {"NAME": actors, "SUP": actors, "LEVEL": dict.fromkeys(LOG_LEVELS),
               "COMMAND": {c["name"]: None for c in client.commands}}
    table = {}
    for command in client.commands:
        following = [word.strip("[]") for word in command["usage"].split()[1:2]]
        word = following[0] if following else ""
        table[command["name"]] = choices.get(word, {word: None} if word.islower() else None)
    return NestedCompleter.from_nested_dict(table)


def _show(result: Result, as_json: bool, out: TextIO | None = None) -> None:
    out = out or sys.stdout
    if as_json:
        record = {"ok": result.ok, "command": result.command, "receipt": result.receipt, "value": result.value}
        if not result.ok:
            record = {"ok": False, "receipt": result.receipt, "error": result.error}
        print(json.dumps(record, separators=(",", ":")), file=out, flush=True)
    elif result.ok:
        print(result.text, file=out, flush=True)
    else:
        print(f"error [{result.error.get('code')}]: {result.error.get('message')}", file=sys.stderr, flush=True)


def _default_history() -> Path:
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "tai-autonomics" / HISTORY_FILE
