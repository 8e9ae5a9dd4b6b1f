"""Serving an ASGI app with uvicorn on a socket bound here, in the calling thread or a background one.

Shared by the gateway and the sandbox, so both get the same lessons: the socket is bound
before uvicorn runs (a port in use is the caller's clear error, and port 0 reports the port it
got), and it is bound with ``IPPROTO_TCP`` — with protocol 0 asyncio does not set TCP_NODELAY on
accepted connections and every response waits ~40 ms for a delayed ACK. In a background thread
uvicorn installs no signal handlers, so SIGTERM stays the main thread's. No client can hold a
descriptor for long without sending a whole request (the idle timeout, the request-read
deadline), nor much memory with an endless head, and the open connections are capped (issue 14:
EMFILE in ``accept()``). Requests are parsed by httptools, in C (issue 13: CPU per request).
"""

from __future__ import annotations

import asyncio
import enum
import json
import resource
import socket
import threading
from collections.abc import Callable
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
IDLE_TIMEOUT_S = 5
"""How long a connection may wait, idle, for its next request, its first one included (uvicorn's
``timeout_keep_alive``, whose default this is)."""
REQUEST_READ_TIMEOUT_S = 10.0
"""How long a request may take to arrive whole, headers and body, from its first byte. Bodies are
small JSON (the gateway refuses more than 1 MiB: 100 KB/s would still make it), so a request
still unfinished after this is a client that stalled or holds the connection on purpose
(slowloris); uvicorn would wait for it for ever, its idle timer being cancelled by the first byte."""
RETRY_AFTER_S = 1
"""The ``Retry-After`` of the 503 a connection over the cap gets: connections come and go within
the idle timeout, so a second is a fair first guess."""
REFUSED_LINGER_S = 1.0
"""How long a refused connection is kept, reading and discarding, after its 503 and our end's
FIN: closing at once with the client's request unread would send a reset, which can destroy the
503 before the client reads it. The client closes after reading the answer, usually sooner. A
refused connection counts towards the cap while it lingers: it holds a descriptor too."""
MAX_HEAD_BYTES = 16 * 1024
"""How much of a request's head (request line and headers) may arrive without its end, h11's
limit: the parser buffers a header whole, and the heads here (a bearer token, a few headers) are
well under 2 KiB. The count starts after the data in which the head began, so that data's length
(at most asyncio's 256 KiB read) may come on top."""
_FD_SHARE = 2
"""The default cap is the process's descriptor limit divided by this: the other half is for the
rest of the process (the bridge's actor connections, the ledger's files, child pipes)."""


def default_max_connections() -> int:
    """Half the process's soft ``RLIMIT_NOFILE``: past it new connections are refused with a 503
    rather than ``accept()`` failing with EMFILE, which starves every other user of descriptors
    in the process (issue 14: the daemon died of it)."""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft == resource.RLIM_INFINITY:
        soft = 1 << 20  # Linux's default nr_open: no process gets more
    return max(1, soft // _FD_SHARE)


def _refusal() -> bytes:
    body = json.dumps({"error": {"code": "too_many_connections",
                                 "message": "the server has too many open connections; retry later"}}).encode()
    head = (f"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nretry-after: {RETRY_AFTER_S}\r\nconnection: close\r\n\r\n")
    return head.encode() + body


_REFUSAL = _refusal()
_TIMED_OUT = b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
_HEAD_TOO_LARGE = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"


class _Part(enum.Enum):
    HEADERS = enum.auto()
    BODY = enum.auto()


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


class _Config(uvicorn.Config):
    """uvicorn's configuration with the two limits our protocol reads (a connection's protocol
    is built by uvicorn and sees only the configuration)."""

    def __init__(self, app: Any, *, max_connections: int, request_read_timeout_s: float, **options: Any) -> None:
        super().__init__(app, **options)
        self.max_connections = max_connections
        self.request_read_timeout_s = request_read_timeout_s


class _Protocol(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol on httptools (a C parser: h11, the pure-Python one, cost
    0.1-0.2 ms of CPU per request in each server, issue 13) with four bounds on what a client can
    hold (issue 14: under an open-loop load whose client fell behind, connections piled up until
    ``accept()`` failed with EMFILE and the daemon died).

    - The idle timeout from the moment a connection is made: uvicorn starts its keep-alive
      timer only after a response, so a connection that never sent its first request held a
      descriptor for ever. The first byte cancels the timer, as after a response.
    - The request-read deadline: from a request's first byte until it is whole (the parser has
      it all, headers and body), at most ``request_read_timeout_s``; then a 408 if the headers
      were read and no response started, and the connection is closed.
    - The connection cap: a connection made while ``max_connections`` are open gets a 503 with
      ``Retry-After`` at once and is closed, so the ones open keep being served. uvicorn's own
      ``limit_concurrency`` is no cap on descriptors: it answers only once a request has
      arrived, so a client that sends nothing is never refused.
    - The head's size: httptools buffers a header of any length (h11 stopped at 16 KiB), so a
      head still unfinished past :data:`MAX_HEAD_BYTES` gets a 431 and the connection is closed."""

    config: _Config
    _read_deadline: asyncio.TimerHandle | None = None
    _refused = False
    _request_part: _Part | None = None
    """Which part of a request the parser is in, None between requests (its callbacks say)."""
    _head_bytes: int | None = None
    """The bytes received of the unfinished head since the data in which it began; None while
    that data is being parsed (the request's share of it is unknown, so it is not counted)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.config.max_connections:
            self._refuse(_REFUSAL)
            return
        self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive, self.timeout_keep_alive_handler)

    def _refuse(self, answer: bytes) -> None:
        """Answer, then keep reading and dropping what comes for a while before closing: closing
        with the client's bytes unread would send a reset, which can destroy the answer."""
        self._refused = True
        self.transport.write(answer)
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(REFUSED_LINGER_S, self.transport.close)

    def data_received(self, data: bytes) -> None:
        if self._refused:  # a refused connection's bytes are read only to be dropped
            return
        super().data_received(data)
        if self.transport.is_closing():  # the parser refused the request: uvicorn answered 400
            return
        if self._request_part is _Part.HEADERS:
            self._head_bytes = 0 if self._head_bytes is None else self._head_bytes + len(data)
            if self._head_bytes > MAX_HEAD_BYTES:
                self._refuse(_HEAD_TOO_LARGE)
                return
        if self._request_part is None:
            if self._read_deadline is not None:
                self._read_deadline.cancel()
                self._read_deadline = None
        elif self._read_deadline is None:
            self._read_deadline = self.loop.call_later(self.config.request_read_timeout_s, self._read_too_slow)

    def on_message_begin(self) -> None:
        self._request_part = _Part.HEADERS  # the parser calls this at a request's first byte
        self._head_bytes = None
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self._request_part = _Part.BODY
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._request_part = None  # a WebSocket's upgrade request too: its connection gets no deadline
        super().on_message_complete()

    def _read_too_slow(self) -> None:
        self._read_deadline = None
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if self._request_part is _Part.BODY and cycle is not None and not cycle.response_started:
            cycle.response_started = True  # the application's own answer, if it comes, is dropped
            self.transport.write(_TIMED_OUT)
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True  # the application waiting for the body gets http.disconnect
            cycle.message_event.set()
        self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._read_deadline is not None:
            self._read_deadline.cancel()
            self._read_deadline = None
        super().connection_lost(exc)


class Server(uvicorn.Server):
    """uvicorn with our logging (JSON lines through the root logger) and a hook once it listens."""

    def __init__(self, app: Any, on_started: Callable[[], None], *, graceful_s: float,
                 max_connections: int | None = None, request_read_timeout_s: float = REQUEST_READ_TIMEOUT_S,
                 **options: Any) -> None:
        """``max_connections`` None: :func:`default_max_connections`; both limits are parameters so a
        test can make them small."""
        # uvicorn annotates the graceful timeout as int, but hands it to asyncio.timeout, which takes seconds as a float
        super().__init__(_Config(app, log_config=None, access_log=False, lifespan="off",
                                 timeout_graceful_shutdown=graceful_s,
                                 timeout_keep_alive=IDLE_TIMEOUT_S, http=_Protocol,
                                 max_connections=default_max_connections() if max_connections is None
                                 else max_connections,
                                 request_read_timeout_s=request_read_timeout_s, **options))
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
