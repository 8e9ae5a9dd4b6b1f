"""Running the sandbox: in the foreground (CLI), in a background thread (tests), or as a child process.

All three serve the same :class:`~tai_autonomics.sandbox.app.Sandbox` app with uvicorn on a
socket bound here (port 0 picks a free port, reported by :attr:`url` and the ``sandbox listening``
log line). The thread and the child are stopped by their ``stop()``, which waits for them to end.
"""

from __future__ import annotations

import json
import logging
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import uvicorn

from tai_autonomics import logs
from tai_autonomics.errors import TaiError
from tai_autonomics.sandbox.app import Sandbox, SandboxConfig
from tai_autonomics.sandbox.faults import Fault, format_fault_arg

log = logging.getLogger(__name__)

READY_MESSAGE = "sandbox listening"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
GRACEFUL_SHUTDOWN_S = 1.0


class SandboxStartError(TaiError):
    """The sandbox could not start (port in use, bad data directory, child exited)."""

    code = "sandbox_start_failed"


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, on_ready: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_ready = on_ready

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self._on_ready()


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto must be IPPROTO_TCP (not 0) for asyncio to set TCP_NODELAY on accepted connections;
    # without it every response waits ~40 ms for a delayed ACK (Nagle).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise SandboxStartError(f"cannot listen on {host}:{port}: {exc.strerror}",
                                detail={"host": host, "port": port}) from None
    return sock


def _server(sandbox: Sandbox, on_ready: Callable[[], None]) -> _Server:
    config = uvicorn.Config(
        sandbox.app, log_config=None, access_log=False, lifespan="off", log_level="warning",
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
    )
    return _Server(config, on_ready)


def _url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def serve_foreground(sandbox: Sandbox, host: str = "127.0.0.1", port: int = 0) -> None:
    """Serve until SIGTERM or SIGINT, then shut down gracefully and return."""
    sock = _bind(host, port)
    url = _url(sock)
    server = _server(sandbox, lambda: logs.event(log, READY_MESSAGE, url=url, port=sock.getsockname()[1],
                                                 insurer_key_id=sandbox.insurer.key_id))

    def request_exit(signum: int, frame: object) -> None:
        server.should_exit = True

    previous = {sig: signal.signal(sig, request_exit) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.run(sockets=[sock])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sock.close()
    logs.event(log, "sandbox stopped", url=url)


class SandboxServer:
    """The sandbox in a background thread of this process (for tests); a context manager.

    ``stop()`` followed by ``start()`` listens again on the same port, with the same state:
    between the two, clients get "connection refused".
    """

    def __init__(self, config: SandboxConfig, host: str = "127.0.0.1", port: int = 0) -> None:
        self.sandbox = Sandbox(config)
        self.host, self.port = host, port
        self._thread: threading.Thread | None = None
        self._server: _Server | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> str:
        if self._thread is not None:
            raise SandboxStartError("the sandbox is already running")
        sock = _bind(self.host, self.port)
        self.port = sock.getsockname()[1]
        ready = threading.Event()
        server = _server(self.sandbox, ready.set)

        def run() -> None:
            try:
                server.run(sockets=[sock])
            finally:
                sock.close()
                ready.set()

        self._server = server
        self._thread = threading.Thread(target=run, name=f"sandbox-{self.port}", daemon=True)
        self._thread.start()
        ready.wait(START_TIMEOUT_S)
        if not server.started:
            self.stop()
            raise SandboxStartError(f"the sandbox did not start on {self.url}")
        return self.url

    def stop(self) -> None:
        if self._thread is None:
            return
        self._server.should_exit = True
        self._thread.join(STOP_TIMEOUT_S + GRACEFUL_SHUTDOWN_S)
        if self._thread.is_alive():
            raise SandboxStartError(f"the sandbox thread on {self.url} did not stop")
        self._thread = self._server = None

    def __enter__(self) -> SandboxServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class SandboxProcess:
    """``tai-autonomics sandbox serve`` as a child process (the daemon's dev profile starts it so).

    Its JSON log lines are read from its stdout; ``on_line`` (default: drop them) gets each one.
    """

    def __init__(self, data_dir: Path, *, host: str = "127.0.0.1", port: int = 0, faults: Sequence[Fault] = (),
                 seed: int = 0, ca_dir: Path | None = None, on_line: Callable[[str], None] | None = None) -> None:
        self.argv = [sys.executable, "-m", "tai_autonomics", "sandbox", "serve", "--host", host, "--port", str(port),
                     "--data-dir", str(data_dir), "--seed", str(seed)]
        if ca_dir is not None:
            self.argv += ["--ca-dir", str(ca_dir)]
        for fault in faults:
            self.argv += ["--fault", format_fault_arg(fault)]
        self._on_line = on_line or (lambda line: None)
        self.process: subprocess.Popen[str] | None = None
        self.url: str | None = None
        self._reader: threading.Thread | None = None

    def start(self) -> str:
        self.process = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                        stdin=subprocess.DEVNULL)
        ready = threading.Event()
        self._reader = threading.Thread(target=self._read, args=(ready,), name="sandbox-child-log", daemon=True)
        self._reader.start()
        ready.wait(START_TIMEOUT_S)
        if self.url is None:
            self.stop()
            raise SandboxStartError("the sandbox child process did not report that it is listening")
        return self.url

    def _read(self, ready: threading.Event) -> None:
        for line in self.process.stdout:
            self._on_line(line)
            if self.url is None:
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(record, dict) and record.get("message") == READY_MESSAGE:
                    self.url = record["url"]
                    ready.set()
        ready.set()

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Send ``sig``, wait for the child to exit (kill it after a timeout) and return its exit code."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            code = self.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        self._reader.join(STOP_TIMEOUT_S)
        self.process.stdout.close()
        self.process = None
        return code

    def __enter__(self) -> SandboxProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
