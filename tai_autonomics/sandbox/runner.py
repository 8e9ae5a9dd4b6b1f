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
from datetime import timedelta
from pathlib import Path
from typing import IO

from tai_autonomics import httpserve, logs
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


def _bind(host: str, port: int) -> socket.socket:
    try:
        return httpserve.listen(host, port)
    except OSError as exc:
        raise SandboxStartError(f"cannot listen on {host}:{port}: {exc.strerror}",
                                detail={"host": host, "port": port}) from None


def _options() -> dict:
    return {"graceful_s": GRACEFUL_SHUTDOWN_S, "log_level": "warning"}


def serve_foreground(sandbox: Sandbox, host: str = "127.0.0.1", port: int = 0) -> None:
    """Serve until SIGTERM or SIGINT, then shut down gracefully and return."""
    sock = _bind(host, port)
    url = httpserve.url(sock)

    def ready() -> None:
        logs.event(log, READY_MESSAGE, url=url, port=sock.getsockname()[1], insurer_key_id=sandbox.insurer.key_id)

    server = httpserve.Server(sandbox.app, ready, **_options())

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
        self._serving: httpserve.ServerThread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> str:
        if self._serving is not None:
            raise SandboxStartError("the sandbox is already running")
        sock = _bind(self.host, self.port)
        self.port = sock.getsockname()[1]
        self._serving = httpserve.ServerThread(self.sandbox.app, sock, f"sandbox-{self.port}", **_options())
        if not self._serving.start(START_TIMEOUT_S):
            self.stop()
            raise SandboxStartError(f"the sandbox did not start on {self.url}")
        return self.url

    def stop(self) -> None:
        if self._serving is None:
            return
        if not self._serving.stop(STOP_TIMEOUT_S + GRACEFUL_SHUTDOWN_S):
            raise SandboxStartError(f"the sandbox thread on {self.url} did not stop")
        self._serving = None

    def __enter__(self) -> SandboxServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class SandboxProcess:
    """``tai-autonomics sandbox serve`` as a child process (the daemon's dev profile starts it so).

    Its JSON log lines are read from its stdout; ``on_line`` (default: drop them) gets each one.
    ``cert_validity``: how long the certificates its insurer issues are valid (default 90 days).
    """

    def __init__(self, data_dir: Path, *, host: str = "127.0.0.1", port: int = 0, faults: Sequence[Fault] = (),
                 seed: int = 0, ca_dir: Path | None = None, cert_validity: timedelta | None = None,
                 on_line: Callable[[str], object] | None = None) -> None:
        self.argv = [sys.executable, "-m", "tai_autonomics", "sandbox", "serve", "--host", host, "--port", str(port),
                     "--data-dir", str(data_dir), "--seed", str(seed)]
        if ca_dir is not None:
            self.argv += ["--ca-dir", str(ca_dir)]
        if cert_validity is not None:
            self.argv += ["--cert-validity-days", repr(cert_validity / timedelta(days=1))]
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
        assert self.process.stdout is not None  # stdout=PIPE
        self._reader = threading.Thread(target=self._read, args=(self.process.stdout, ready), name="sandbox-child-log",
                                        daemon=True)
        self._reader.start()
        ready.wait(START_TIMEOUT_S)
        if self.url is None:
            self.stop()
            raise SandboxStartError("the sandbox child process did not report that it is listening")
        return self.url

    def _read(self, stdout: IO[str], ready: threading.Event) -> None:
        for line in stdout:
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
        if self._reader is not None:
            self._reader.join(STOP_TIMEOUT_S)
        if self.process.stdout is not None:
            self.process.stdout.close()
        self.process = None
        return code

    def __enter__(self) -> SandboxProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
