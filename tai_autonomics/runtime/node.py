"""A node: one thespian actor system, its name registry, one supervision tree, and callers.

This is the runtime's front door for code outside the actors (the CLI, the gateway, tests):
start a system on the configured base, start a tree, ``call``/``cast`` actors by name, and
stop everything, leaving no process behind.

Two thespian bases are supported with the same semantics: ``multiprocTCPBase`` (production;
every actor its own process) and ``simpleSystemBase`` (everything in the calling thread; fast
unit tests).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

from thespian.actors import ActorExitRequest, ActorSystem, PoisonMessage

from tai_autonomics.runtime import _process, _transport
from tai_autonomics.runtime.errors import (
    CallError,
    CallTimeout,
    NoSuchActor,
    StartError,
    SystemError_,
    error_from,
)
from tai_autonomics.runtime.messages import (
    Call,
    Cast,
    Exiting,
    Init,
    ListNames,
    Location,
    Registered,
    Reply,
    Shutdown,
    Started,
    StartFailed,
    Whereis,
)
from tai_autonomics.runtime.registry import Registry
from tai_autonomics.runtime.server import DEFAULT_CALL_TIMEOUT
from tai_autonomics.runtime.spec import SupervisorSpec
from tai_autonomics.runtime.supervisor import Supervisor

log = logging.getLogger(__name__)

BASES = ("multiprocTCPBase", "simpleSystemBase")
SYSTEM_SHUTDOWN_WAIT_S = 3.0
_EARLY = 0.05  # an ask that returns empty this long before its deadline hit a dead address


@dataclass(frozen=True)
class NodeConfig:
    """How to run the actor system (the ``[system]`` table of a release file)."""

    base: str = "multiprocTCPBase"
    admin_port: int = 19500
    bind: str = "127.0.0.1"
    log_level: str = "INFO"

    def __post_init__(self) -> None:
        if self.base not in BASES:
            raise ValueError(f"unknown thespian base {self.base!r} (expected {', '.join(BASES)})")


class Node:
    """One actor system and at most one tree. Use as a context manager, or start()/shutdown()."""

    def __init__(self, config: NodeConfig | None = None) -> None:
        self.config = config or NodeConfig()
        self._asys: ActorSystem | None = None
        self._registry: Any = None
        self._root: Any = None
        self._root_name = ""
        self._admin_pid = 0
        self._cache: dict[str, Location] = {}
        self._exits: list[Exiting] = []

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> Node:
        cfg = self.config
        if cfg.base == "multiprocTCPBase":
            _transport.tune_tcp_transport(cfg.bind)
            _process.become_subreaper()
            _ensure_port_free(cfg.bind, cfg.admin_port)
            capabilities = {"Admin Port": cfg.admin_port}
            asys = ActorSystem("multiprocTCPBase", capabilities, logDefs=_transport.log_config(cfg.log_level),
                               transientUnique=True)
        else:
            asys = ActorSystem("simpleSystemBase", logDefs=_transport.log_config(cfg.log_level),
                               transientUnique=True)
        self._asys = asys
        self._registry = asys.createActor(Registry)
        if self.multiprocess:
            self._admin_pid = self._registry_info().ppid
        log.info("actor system started", extra={"fields": {
            "event": "system_started", "base": cfg.base, "admin_port": cfg.admin_port, "bind": cfg.bind}})
        return self

    @property
    def multiprocess(self) -> bool:
        return self.config.base != "simpleSystemBase"

    def start_tree(self, spec: SupervisorSpec, timeout: float = 60.0) -> None:
        """Start ``spec`` as the root supervisor; return once every child confirmed its start."""
        if self._root is not None:
            raise StartError("a tree is already running on this node")
        root = self._system.createActor(Supervisor)
        incarnation = f"{spec.name}.{uuid.uuid4().hex[:12]}"
        reply = self._wait_for(root, Init(spec.name, incarnation, {}, self._registry, spec),
                               lambda m: isinstance(m, (Started, StartFailed)), timeout)
        if isinstance(reply, Started):
            self._root, self._root_name = root, spec.name
            return
        self._system.tell(root, ActorExitRequest())
        if reply is None:
            raise StartError(f"tree {spec.name!r} did not start within {timeout:g} s")
        raise StartError(f"tree {spec.name!r} failed to start: {reply.reason}", detail={"reason": reply.reason})

    def stop_tree(self, timeout: float = 30.0) -> bool:
        """Stop the tree in reverse start order; False if it did not finish within ``timeout``."""
        if self._root is None:
            return True
        root, self._root = self._root, None
        done = self._wait_for(root, Shutdown("shutdown"), lambda m: isinstance(m, Exiting), timeout)
        self._system.tell(root, ActorExitRequest())
        return done is not None

    def wait_for_exit(self, timeout: float) -> Exiting | None:
        """Wait up to ``timeout`` for the root supervisor to give up (escalation at the top)."""
        if self._exits:
            self._system.tell(self._root, ActorExitRequest())
            self._root = None
            return self._exits.pop(0)
        deadline = time.monotonic() + timeout
        if self.multiprocess:
            _process.reap_forks()
        while (remaining := deadline - time.monotonic()) > 0:
            msg = self._system.listen(remaining)
            if msg is None:
                return None
            if isinstance(msg, Exiting) and msg.name == self._root_name:
                self._system.tell(self._root, ActorExitRequest())
                self._root = None
                return msg
        return None

    def shutdown(self) -> None:
        """Stop the tree and the actor system; kill whatever process is left of this node."""
        if self._asys is None:
            return
        try:
            self.stop_tree()
        finally:
            asys, self._asys = self._asys, None
            self._shutdown_system(asys)
            if self._admin_pid:
                for pid in [*_process.descendants(self._admin_pid), self._admin_pid]:
                    _process.kill(pid)
                _process.reap_forks()
            log.info("actor system stopped", extra={"fields": {"event": "system_stopped"}})

    def _shutdown_system(self, asys: ActorSystem) -> None:
        """Ask thespian to shut down, but never wait on it for long.

        The tree is already stopped in order by then. thespian's ``shutdown()`` sometimes waits
        10 s for an admin that never confirms (seen here under load, with every actor already
        gone), which would break the 10 s SIGTERM budget; the sweep that follows kills
        whatever it left behind.
        """
        if not self.multiprocess:
            asys.shutdown()
            return
        waiter = threading.Thread(target=asys.shutdown, name="thespian-shutdown", daemon=True)
        waiter.start()
        waiter.join(SYSTEM_SHUTDOWN_WAIT_S)
        if waiter.is_alive():
            log.warning("actor system did not confirm its shutdown; killing its processes",
                        extra={"fields": {"event": "system_shutdown_forced", "waited_s": SYSTEM_SHUTDOWN_WAIT_S}})

    def __enter__(self) -> Node:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    # -- calling actors ---------------------------------------------------------------------

    def call(self, name: str, msg_type: str, payload: Any = None, timeout: float = DEFAULT_CALL_TIMEOUT) -> Any:
        """Call the actor registered as ``name``; its reply, or a :class:`CallError`."""
        deadline = time.monotonic() + timeout
        ref = uuid.uuid4().hex
        gone = ""
        while True:
            location = self._resolve(name, deadline, after=gone)
            reply = self._wait_for(location.address, Call(ref, msg_type, payload),
                                   lambda m: isinstance(m, Reply) and m.ref == ref,
                                   deadline - time.monotonic())
            if isinstance(reply, Reply) and not _not_delivered(reply):
                return _unwrap(reply)
            if deadline - time.monotonic() > _EARLY:  # it never ran the call: wait for the next incarnation
                self._cache.pop(name, None)
                gone = location.incarnation
                continue
            if isinstance(reply, Reply):
                return _unwrap(reply)
            raise CallTimeout(f"no reply from {name!r} to {msg_type!r} within {timeout:g} s",
                              detail={"actor": name, "message_type": msg_type, "timeout_s": timeout})

    def cast(self, name: str, msg_type: str, payload: Any = None, timeout: float = DEFAULT_CALL_TIMEOUT) -> None:
        """Send without waiting for a reply (resolving the name may wait up to ``timeout``)."""
        self._system.tell(self._resolve(name, time.monotonic() + timeout).address, Cast(msg_type, payload))

    def whereis(self, name: str, wait: float = 0.0, after: str = "") -> Location:
        """The live incarnation of ``name`` (address, incarnation id, pid), or an empty Location.

        With ``wait``, wait that long for the name to be registered; with ``after``, wait for an
        incarnation other than that one (to see a restart through).
        """
        reply = self._wait_for(self._registry, Whereis(name, wait, after),
                               lambda m: isinstance(m, Location) and m.name == name, wait + DEFAULT_CALL_TIMEOUT)
        return reply or Location(name)

    def registered(self) -> dict[str, tuple[str, int]]:
        """Every live name → (incarnation, pid)."""
        return self._registry_info().entries

    def _registry_info(self) -> Registered:
        reply = self._wait_for(self._registry, ListNames(), lambda m: isinstance(m, Registered),
                               DEFAULT_CALL_TIMEOUT)
        if reply is None:
            raise CallTimeout("the name registry did not answer")
        return reply

    def _resolve(self, name: str, deadline: float, after: str = "") -> Location:
        location = self._cache.get(name)
        if location is not None:
            return location
        location = self.whereis(name, wait=max(0.0, deadline - time.monotonic()), after=after)
        if location.address is None:
            raise NoSuchActor(f"no actor is registered as {name!r}", detail={"actor": name})
        if self.multiprocess:  # the in-process base cannot tell a dead address apart: always ask
            self._cache[name] = location
        return location

    def _wait_for(self, address: Any, msg: Any, wanted, timeout: float) -> Any:
        """Send ``msg`` and wait for the first answer ``wanted`` accepts; keep root exits aside."""
        deadline = time.monotonic() + timeout
        answer = self._system.ask(address, msg, max(timeout, 0.001))
        while True:
            if answer is not None and wanted(answer):
                return answer
            if isinstance(answer, PoisonMessage):
                raise CallError(f"actor rejected the message: {answer.details}")
            if isinstance(answer, Exiting) and answer.name == self._root_name:
                self._exits.append(answer)
            remaining = deadline - time.monotonic()
            if answer is None or remaining <= 0:
                return None
            answer = self._system.listen(remaining)

    @property
    def _system(self) -> ActorSystem:
        if self._asys is None:
            raise SystemError_("the actor system is not running")
        return self._asys


def _not_delivered(reply: Reply) -> bool:
    """The old incarnation refused the call unrun because it is on its way out."""
    return reply.error is not None and reply.error.code == "actor_restarting"


def _unwrap(reply: Reply) -> Any:
    if reply.error is None:
        return reply.value
    raise error_from(reply.error)


def _ensure_port_free(host: str, port: int) -> None:
    """thespian silently joins whatever admin already listens on the port: refuse instead."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as thespian binds: TIME_WAIT is no owner
        try:
            probe.bind((host, port))
        except OSError:
            raise SystemError_(
                f"the actor admin port {host}:{port} is already in use (is another tai-autonomics "
                f"running? stop it, or choose another [system] admin_port)",
                detail={"port": port}) from None
