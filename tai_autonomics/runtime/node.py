"""A node: one thespian actor system, its name registry, one supervision tree, and callers.

This is the runtime's front door for code outside the actors (the CLI, the gateway, tests):
start a system on the configured base, start a tree, ``call``/``cast`` actors by name, and
stop everything, leaving no process behind.

Three thespian bases are supported with the same semantics: ``multiprocUnixBase`` (the default:
every actor its own process, messages over persistent Unix-socket connections only the daemon's
user can open; ``runtime/unixbase.py``), ``multiprocTCPBase`` (thespian's own, every actor its own
process, a loopback TCP connection per message) and ``simpleSystemBase`` (everything in the
calling thread; fast unit tests).
"""

from __future__ import annotations

import logging
import shutil
import socket
import threading
import uuid
from dataclasses import dataclass
from typing import Any

from thespian.actors import ActorExitRequest, ActorSystem, ActorSystemStartupFailure

from tai_autonomics.runtime import _datastack, _process, _transport, unixbase
from tai_autonomics.runtime.client import Client
from tai_autonomics.runtime.errors import StartError, SystemError_
from tai_autonomics.runtime.messages import Exiting, Init, Location, Register, Shutdown, Started, StartFailed
from tai_autonomics.runtime.registry import Registry
from tai_autonomics.runtime.server import DEFAULT_CALL_TIMEOUT
from tai_autonomics.runtime.spec import SupervisorSpec
from tai_autonomics.runtime.supervisor import Supervisor

log = logging.getLogger(__name__)

BASES = (unixbase.NAME, "multiprocTCPBase", "simpleSystemBase")
SHUTDOWN_KILL_WAIT_S = 5.0
"""How long ``shutdown`` waits for SIGKILLed processes to be gone (the kernel takes milliseconds)."""


@dataclass(frozen=True)
class NodeConfig:
    """How to run the actor system (the ``[system]`` table of a release file)."""

    base: str = unixbase.NAME
    admin_port: int = 19500
    bind: str = "127.0.0.1"
    log_level: str = "INFO"
    socket_dir: str = ""
    """``multiprocUnixBase``: the private directory that holds a subdirectory of sockets per node
    (created 0700; empty: a per-user directory under the system's temporary directory)."""

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
        self._client: Client | None = None
        self._owner = 0
        self._threads = threading.local()
        self._lock = threading.Lock()
        self._private: list[Any] = []

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> Node:
        cfg = self.config
        if self.multiprocess:
            if cfg.base == "multiprocTCPBase":
                _transport.tune_tcp_transport(cfg.bind)
                _ensure_port_free(cfg.bind, cfg.admin_port)
            else:
                _ensure_admin_socket_free(self._capabilities)
            _datastack.start_actors_on_fresh_chunk()
            _process.become_subreaper()
            asys = ActorSystem(cfg.base, self._capabilities, logDefs=_transport.log_config(cfg.log_level),
                               transientUnique=True)
        else:
            asys = ActorSystem("simpleSystemBase", logDefs=_transport.log_config(cfg.log_level),
                               transientUnique=True)
        self._asys = asys
        self._registry = asys.createActor(Registry)
        self._client = Client(asys, self._registry, multiprocess=self.multiprocess)
        self._owner = threading.get_ident()
        if self.multiprocess:
            self._admin_pid = self._client.registry_info().ppid
        log.info("actor system started", extra={"fields": {
            "event": "system_started", "base": cfg.base, "admin_port": cfg.admin_port, "bind": cfg.bind}})
        return self

    @property
    def _capabilities(self) -> dict[str, Any]:
        capabilities: dict[str, Any] = {"Admin Port": self.config.admin_port}
        if self.config.socket_dir:
            capabilities[unixbase.DIRECTORY_CAPABILITY] = self.config.socket_dir
        return capabilities

    @property
    def multiprocess(self) -> bool:
        return self.config.base != "simpleSystemBase"

    def start_tree(self, spec: SupervisorSpec, timeout: float = 60.0) -> None:
        """Start ``spec`` as the root supervisor; return once every child confirmed its start."""
        if self._root is not None:
            raise StartError("a tree is already running on this node")
        root = self._system.createActor(Supervisor)
        incarnation = f"{spec.name}.{uuid.uuid4().hex[:12]}"
        reply = self._own_client.wait_for(root, Init(spec.name, incarnation, {}, self._registry, spec),
                               lambda m: isinstance(m, (Started, StartFailed)), timeout)
        if isinstance(reply, Started):  # the starter registers the name (Process.confirm_started)
            self._system.tell(self._registry, Register(spec.name, root, incarnation, reply.pid))
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
        done = self._own_client.wait_for(root, Shutdown("shutdown"),
                                     lambda m: isinstance(m, Exiting) and m.name == self._root_name, timeout)
        self._system.tell(root, ActorExitRequest())
        return done is not None

    def wait_for_exit(self, timeout: float) -> Exiting | None:
        """Wait up to ``timeout`` for the root supervisor to give up (escalation at the top): its
        :class:`Exiting` has reason ``shutdown``, as OTP's, and the why in ``report``."""
        if self.multiprocess:
            _process.reap_forks()
        gave_up = next((e for e in self._own_client.aside if e.name == self._root_name), None)
        if gave_up is None:
            gave_up = self._own_client.listen(timeout, lambda m: isinstance(m, Exiting) and m.name == self._root_name)
        if gave_up is None:
            return None
        self._own_client.aside.clear()
        self._system.tell(self._root, ActorExitRequest())
        self._root = None
        return gave_up

    def shutdown(self) -> None:
        """Stop the tree and the actor system; kill whatever process is left of this node."""
        if self._asys is None:
            return
        # The node's processes, named before anything stops: once the admin exits, its children
        # are re-parented and no longer found under it.
        processes = self._processes()
        try:
            self.stop_tree()
        finally:
            asys, self._asys = self._asys, None
            for context in self._private:
                context.__exit__(None, None, None)
            self._private.clear()
            asys.shutdown()  # bounded: see _transport (the tree is already stopped in order)
            if self._admin_pid:  # whatever thespian left behind, and wait until it is gone
                left = _process.end({**processes, **self._processes()}, SHUTDOWN_KILL_WAIT_S)
                if left:
                    log.error("processes of the node survived SIGKILL", extra={"fields": {
                        "event": "system_processes_left", "pids": left}})
                elif self.config.base == unixbase.NAME:  # the sockets of processes killed above
                    shutil.rmtree(unixbase.node_directory(self._capabilities), ignore_errors=True)
            log.info("actor system stopped", extra={"fields": {"event": "system_stopped"}})

    def _processes(self) -> dict[int, int]:
        """The admin and its descendants (pid → start time); none on the in-process base."""
        if not self._admin_pid:
            return {}
        return _process.identify([self._admin_pid, *_process.descendants(self._admin_pid)])

    def __enter__(self) -> Node:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    # -- calling actors ---------------------------------------------------------------------

    def call(self, name: str, msg_type: str, payload: Any = None, timeout: float = DEFAULT_CALL_TIMEOUT) -> Any:
        """Call the actor registered as ``name`` from this (the starting) thread."""
        return self._own_client.call(name, msg_type, payload, timeout)

    def cast(self, name: str, msg_type: str, payload: Any = None, timeout: float = DEFAULT_CALL_TIMEOUT) -> None:
        self._own_client.cast(name, msg_type, payload, timeout)

    def whereis(self, name: str, wait: float = 0.0, after: str = "") -> Location:
        return self._own_client.whereis(name, wait, after)

    def registered(self) -> dict[str, tuple[str, int]]:
        """Every live name → (incarnation, pid)."""
        return self._own_client.registry_info().entries

    def client(self) -> Client:
        """A :class:`Client` for the calling thread (thespian contexts are not thread-safe).

        On the multiprocess base each thread gets its own private endpoint, so a thread pool
        (the HTTP gateway's) can call actors concurrently. The in-process base runs actors in
        the thread that asks, so there only the starting thread may call.
        """
        if not self.multiprocess or threading.get_ident() == self._owner:
            return self._own_client
        client = getattr(self._threads, "client", None)
        if client is None:
            with self._lock:
                context = self._system.private()
                client = Client(context.__enter__(), self._registry, multiprocess=True)
                self._private.append(context)
            self._threads.client = client
        return client

    @property
    def _system(self) -> ActorSystem:
        if self._asys is None:
            raise SystemError_("the actor system is not running")
        return self._asys

    @property
    def _own_client(self) -> Client:
        """The starting thread's client (made by :meth:`start`)."""
        if self._client is None:
            raise SystemError_("the actor system is not running")
        return self._client


def port_is_free(host: str, port: int) -> bool:
    """Whether thespian's admin could bind ``host:port`` now (0: whether any port is free)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as thespian binds: TIME_WAIT is no owner
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str) -> int:
    """A port on ``host`` that nothing listens on now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def _ensure_admin_socket_free(capabilities: dict[str, Any]) -> None:
    """As :func:`_ensure_port_free`, for the admin socket of ``multiprocUnixBase`` (whose
    directory is checked, and made if missing, on the way: an unsafe one is refused here)."""
    transport = unixbase.ActorSystemBase.transportType
    try:
        admin = transport.getAdminAddr(capabilities)
    except ActorSystemStartupFailure as exc:
        raise SystemError_(str(exc), detail={"port": capabilities["Admin Port"]}) from None
    if transport.probeAdmin(admin):
        raise SystemError_(
            f"the actor admin socket {admin.addressDetails.path} is in use (is another tai-autonomics "
            f"running? stop it, or choose another [system] admin_port)", detail={"port": capabilities["Admin Port"]})


def _ensure_port_free(host: str, port: int) -> None:
    """thespian silently joins whatever admin already listens on the port: refuse instead."""
    if not port_is_free(host, port):
        raise SystemError_(
            f"the actor admin port {host}:{port} is already in use (is another tai-autonomics "
            f"running? stop it, or choose another [system] admin_port)",
            detail={"port": port})
