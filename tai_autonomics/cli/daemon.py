"""``tree``, ``foreground``, ``ping`` and ``stop``: running the daemon and looking at it."""

from __future__ import annotations

import argparse
import dataclasses
import fcntl
import logging
import os
import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tai_autonomics import datadir, devprofile, logs, preflight
from tai_autonomics.actors import operation_api, status_api
from tai_autonomics.actors.names import ACQUISITION, PUBLISHER
from tai_autonomics.cli._errors import AlreadyRunning
from tai_autonomics.config import ReleaseConfig, default_supervision, load_release
from tai_autonomics.errors import Problems, TaiError
from tai_autonomics.gateway import GatewayConfig, GatewayServer, dev_tokens, gateway_config, resolve_port
from tai_autonomics.runtime import Node, SupervisorSpec, load_tree, render_tree, with_worker_args

log = logging.getLogger("tai_autonomics.daemon")

EXIT_GAVE_UP = 1
DRAINED = (ACQUISITION, PUBLISHER)  # the actors whose operations wait on outside parties
DRAIN_ANSWER_S = 0.5  # after the budget: recording the interruptions and answering their callers
STOP_WAIT_S = 10.0


def register(subparsers: argparse._SubParsersAction) -> None:
    tree = subparsers.add_parser("tree", help="print the configured supervision tree",
                                 description="Validate and print a supervision tree file.")
    tree.add_argument("--config", metavar="FILE",
                      help="supervision tree file (default: ./supervision.toml if there is one, "
                           "else the tree shipped in the package)")
    tree.set_defaults(func=_tree)

    fg = subparsers.add_parser("foreground", help="run the daemon in the foreground",
                               description="Start the actor system and the supervision tree; stop both "
                                           "in reverse order on SIGTERM or SIGINT.")
    _release_options(fg)
    fg.add_argument("--supervision", metavar="FILE",
                    help="supervision tree file (default: the release file's, else ./supervision.toml if "
                         "there is one, else the tree shipped in the package)")
    fg.add_argument("--port", type=int, metavar="N", help="gateway port (default: $PORT, else 8080)")
    fg.add_argument("--host", metavar="ADDR",
                    help="gateway address (default: $TAI_HOST, else the release file's [gateway] host, "
                         "else 0.0.0.0 on Cloud Run ($K_SERVICE set), else 127.0.0.1)")
    fg.set_defaults(func=_foreground)

    for name, func, text in (("ping", _ping, "check that the daemon is running"),
                             ("stop", _stop, "stop a running daemon (SIGTERM, then wait)")):
        cmd = subparsers.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".")
        _release_options(cmd)
        cmd.set_defaults(func=func)


def _release_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="release file from rel/ (default: the dev profile)")
    parser.add_argument("--data-dir", metavar="DIR", help="data directory (default: ./var)")


def _release(args: argparse.Namespace) -> ReleaseConfig:
    release = load_release(args.config)
    if args.data_dir:
        release = ReleaseConfig(**{**release.__dict__, "data_dir": Path(args.data_dir)})
    if getattr(args, "supervision", None):
        release = ReleaseConfig(**{**release.__dict__, "supervision": Path(args.supervision)})
    return release


def _tree(args: argparse.Namespace) -> int:
    print(render_tree(load_tree(args.config or default_supervision())))
    return 0


class _Lock:
    """One daemon per data directory: an exclusive lock on ``daemon.pid`` held for its lifetime."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / "daemon.pid"

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            raise AlreadyRunning(f"another tai-autonomics is already running with data dir {self.path.parent} "
                                 f"(pid {self.holder() or 'unknown'}); stop it first (tai-autonomics stop)") from None
        os.ftruncate(self._fd, 0)
        os.write(self._fd, f"{os.getpid()}\n".encode())

    def holder(self) -> int:
        """The pid of the running daemon, or 0 if none holds the lock."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return 0
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return int(os.read(fd, 32).strip() or 0)
        finally:
            os.close(fd)
        return 0


def _foreground(args: argparse.Namespace) -> int:
    release = _release(args)
    logs.configure(release.system.log_level)
    tree_file = release.tree_file()
    spec, http = _checked(release, tree_file, args.port, args.host)
    _Lock(release.data_dir).acquire()
    if release.admin_port_auto:  # under the lock: this data dir's port file is ours
        port = devprofile.admin_port(release.data_dir, release.system.bind)
        release = dataclasses.replace(release, system=dataclasses.replace(release.system, admin_port=port))
    dev = devprofile.prepare(release) if release.profile == "dev" else None
    if dev is not None:  # tokens unset in the environment are made once and kept in DATA_DIR/tokens.env
        http = dataclasses.replace(http, tokens=dev_tokens(release.data_dir, os.environ))
    try:
        return _run_tree(release, with_worker_args(spec, {"context": dev.context if dev else release.context()}), http,
                         tree_file)
    finally:
        if dev is not None:
            dev.stop()


def _checked(release: ReleaseConfig, tree_file: Path, port: int | None,
             host: str | None) -> tuple[SupervisorSpec, GatewayConfig]:
    """The tree and the gateway's configuration, once every setting is checked, before anything
    starts; every problem at once (a production start that named only the first took one start
    per problem), or the one problem as before."""
    problems: list[TaiError] = []
    spec: SupervisorSpec | None = None
    http: GatewayConfig | None = None
    try:
        spec = load_tree(tree_file)
    except TaiError as exc:
        problems.append(exc)
    try:
        http = gateway_config(release.sections.get("gateway", {}), port=resolve_port(port, os.environ),
                              root=spec.name if spec else "root", environ=os.environ, source=release.source,
                              host=host)
    except TaiError as exc:
        problems.append(exc)
    if release.profile != "dev":  # the dev profile makes what it needs (devprofile.prepare)
        problems.extend(preflight.check(release, os.environ))
    if not problems:  # last: it makes the data dir, and a start with problems changes nothing
        try:
            datadir.ensure_writable(release.data_dir)  # one clear line, not a traceback at the first write
        except TaiError as exc:
            problems.append(exc)
    if len(problems) == 1:
        raise problems[0]
    if problems:
        raise Problems(f"{len(problems)} problems with {release.source} and the environment (above); "
                       f"nothing was started", problems)
    assert spec is not None and http is not None  # each was made, or its problem was raised above
    return spec, http


def _run_tree(release: ReleaseConfig, spec: SupervisorSpec, http: GatewayConfig, tree_file: Path) -> int:
    """Start the node, the tree, then the gateway; stop them in reverse (the gateway first, so
    no request reaches a tree that is stopping)."""
    stopping: list[str] = []

    def on_signal(signum: int, _frame: object) -> None:
        stopping.append(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    node = Node(release.system).start()
    gateway: GatewayServer | None = None
    try:
        node.start_tree(spec)
        logs.event(log, "tree started", event="tree_started", root=spec.name, profile=release.profile,
                   pid=os.getpid(), supervision=str(tree_file.resolve()))
        gateway = GatewayServer(node, http).start()
        while not stopping:
            gave_up = node.wait_for_exit(0.2)
            if gave_up is not None:
                why = gave_up.report or gave_up.reason
                logs.event(log, f"root supervisor gave up: {why}", logging.CRITICAL, event="root_gave_up", reason=why)
                return EXIT_GAVE_UP
        logs.event(log, "stopping", event="stopping", signal=stopping[0], drain_s=http.drain_s)
        _drain(node, gateway, http.drain_s)
        return 0
    finally:
        try:
            if gateway is not None:
                gateway.stop()
        finally:
            node.shutdown()
            logs.event(log, "stopped", event="stopped")


def _drain(node: Node, gateway: GatewayServer, budget_s: float) -> None:
    """SIGTERM on Cloud Run (docs/specification.md §11): ``draining`` — new writes refused, ``/readyz`` 503 — then
    the operations in flight get ``budget_s`` to end; each still waiting on an outside party is
    recorded as interrupted and its caller answered 503, so the whole stop fits Cloud Run's 10 s
    whatever the outside parties do."""
    started = time.monotonic()
    gateway.drain()
    try:
        status_api.drain(node.client(), 2.0)
    except TaiError as exc:  # a tree without ProdMode, or one restarting: the gateway refuses writes anyway
        logs.event(log, "ProdMode did not enter draining", logging.WARNING, event="drain_mode_failed", code=exc.code)
    with ThreadPoolExecutor(len(DRAINED), thread_name_prefix="drain") as pool:
        asks = {name: pool.submit(_drain_actor, node, name, budget_s) for name in DRAINED}
        interrupted = {name: ask.result() for name, ask in asks.items()}
    answered = gateway.wait_idle(max(0.0, budget_s + DRAIN_ANSWER_S - (time.monotonic() - started)))
    logs.event(log, "drained", event="drained", seconds=round(time.monotonic() - started, 3),
               interrupted=interrupted, requests_answered=answered)


def _drain_actor(node: Node, name: str, budget_s: float) -> int | None:
    """Ask an operation actor to drain; how many operations it interrupted (None: it could not say)."""
    try:
        return operation_api.drain(node.client(), name, budget_s, budget_s + DRAIN_ANSWER_S)
    except TaiError as exc:
        logs.event(log, f"{name} did not drain", logging.WARNING, event="drain_failed", actor=name, code=exc.code)
        return None


def _ping(args: argparse.Namespace) -> int:
    release = _release(args)
    lock = _Lock(release.data_dir)
    pid = lock.holder()
    if not pid:
        return _not_running(lock)
    port = devprofile.recorded_admin_port(release.data_dir) if release.admin_port_auto else release.system.admin_port
    print(f"pong (pid {pid}, data dir {release.data_dir.resolve()}, admin port {port})")
    return 0


def _stop(args: argparse.Namespace) -> int:
    lock = _Lock(_release(args).data_dir)
    pid = lock.holder()
    if not pid:
        return _not_running(lock)
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_WAIT_S
    while lock.holder() and time.monotonic() < deadline:
        time.sleep(0.05)
    if lock.holder():
        print(f"pid {pid} did not stop within {STOP_WAIT_S:g} s", file=sys.stderr)
        return 1
    print(f"stopped (pid {pid})")
    return 0


def _not_running(lock: _Lock) -> int:
    """Say where we looked: with several data dirs, "not running" alone does not say which one."""
    path = lock.path.resolve()
    print(f"not running: no tai-autonomics holds the lock on {path} (data dir {path.parent}; "
          f"another data dir: --data-dir or --config)", file=sys.stderr)
    return 1
