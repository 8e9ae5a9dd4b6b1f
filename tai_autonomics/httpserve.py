"""Serving an ASGI app with uvicorn on a socket bound here, in the calling thread or a background one.

Shared by the gateway and the sandbox, so both get the same two lessons: the socket is bound
before uvicorn runs (a port in use is the caller's clear error, and port 0 reports the port it
got), and it is bound with ``IPPROTO_TCP`` — with protocol 0 asyncio does not set TCP_NODELAY on
accepted connections and every response waits ~40 ms for a delayed ACK. In a background thread
uvicorn installs no signal handlers, so SIGTERM stays the main thread's.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
IDLE_TIMEOUT_S = 5
"""How long a connection may wait, idle, for its next request, its first one included (uvicorn's
``timeout_keep_alive``, whose default this is)."""


def listen(host: str, port: int, backlog: int = 128) -> socket.socket:
    """A listening TCP socket on ``host:port`` (IPv6 if the host has a colon); OSError if not."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    return sock


def url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class _Protocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol, with the idle timeout from the moment a connection is made.

    uvicorn starts its keep-alive timer only after a response, so a connection that never sends
    its first request (a client that stalled or vanished, or a slow one on purpose) held a
    descriptor of the serving process for ever: under an open-loop load whose client falls
    behind, they piled up until ``accept()`` failed with EMFILE (issue 14). The timer is the
    same one uvicorn uses, and the first byte received cancels it, as after a response."""

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive, self.timeout_keep_alive_handler)


class Server(uvicorn.Server):
    """uvicorn with our logging (JSON lines through the root logger) and a hook once it listens."""

    def __init__(self, app: Any, on_started: Callable[[], None], *, graceful_s: float, **options: Any) -> None:
        # uvicorn annotates the graceful timeout as int, but hands it to asyncio.timeout, which takes seconds as a float
        super().__init__(uvicorn.Config(app, log_config=None, access_log=False, lifespan="off",
                                        timeout_graceful_shutdown=graceful_s,  # type: ignore[arg-type]
                                        timeout_keep_alive=IDLE_TIMEOUT_S, http=_Protocol, **options))
        self._on_started = on_started

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self._on_started()


class ServerThread:
    """``server`` serving ``sock`` in a background thread; the socket is closed when it ends."""

    def __init__(self, app: Any, sock: socket.socket, name: str, *, graceful_s: float, **options: Any) -> None:
        self._ready = threading.Event()
        self.server = Server(app, self._ready.set, graceful_s=graceful_s, **options)
        self._sock = sock
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)

    def _serve(self) -> None:
        try:
            self.server.run(sockets=[self._sock])
        finally:
            self._sock.close()
            self._ready.set()

    def start(self, timeout: float = START_TIMEOUT_S) -> bool:
        """Start serving; True once it listens, False if it ended or did not start within ``timeout``."""
        self._thread.start()
        self._ready.wait(timeout)
        return self.server.started and self._thread.is_alive()

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> bool:
        """Finish the requests in flight (up to the graceful period), stop; False if the thread lingers."""
        self.server.should_exit = True
        if self._thread.ident is not None:
            self._thread.join(timeout)
        return not self._thread.is_alive()
