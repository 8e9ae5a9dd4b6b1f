"""What a client can hold of a server built with :mod:`tai_autonomics.httpserve` (the gateway's and
the sandbox's), over real loopback sockets (issue 14: the daemon died of EMFILE in ``accept()``).

The server runs a small ASGI app so the limits can be made small and the requests held at will."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
import websockets.sync.client

from tai_autonomics import httpserve
from tests.helpers import wait_until

DEADLINE_S = 1.0  # the request-read deadline of these servers
RECV_TIMEOUT_S = DEADLINE_S + 10  # generous: the machine is shared; the server must close well within it


class _App:
    """Answers ``/hold`` once released (counting the requests it holds), anything else at once,
    both after reading the whole body, with its length; echoes a WebSocket's messages."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.holding = 0

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            await self._echo(receive, send)
            return
        size, more = 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            size += len(message.get("body", b""))
            more = message.get("more_body", False)
        if scope["path"] == "/hold":
            self.holding += 1
            await asyncio.to_thread(self.release.wait)
        body = str(size).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    @staticmethod
    async def _echo(receive: Any, send: Any) -> None:
        while (message := await receive())["type"] != "websocket.disconnect":
            if message["type"] == "websocket.connect":
                await send({"type": "websocket.accept"})
            else:
                await send({"type": "websocket.send", "text": message["text"]})


@contextmanager
def _serving(app: _App, **limits: Any) -> Iterator[str]:
    sock = httpserve.listen("127.0.0.1", 0)
    address = httpserve.url(sock)
    server = httpserve.ServerThread(app, sock, "httpserve-test", graceful_s=0.5, **limits)
    assert server.start()
    try:
        yield address
    finally:
        app.release.set()
        assert server.stop()


def _connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)))
    sock.settimeout(RECV_TIMEOUT_S)
    return sock


def _read_to_end(sock: socket.socket) -> bytes:
    """All the server sends until it closes its end (socket.timeout if it never does)."""
    received = b""
    while chunk := sock.recv(4096):
        received += chunk
    return received


@pytest.mark.parametrize("partial", [
    b"POST /x HTTP/1.1\r\nHost: test\r\nContent-Ty",  # the headers never finish
    b"POST /x HTTP/1.1\r\nHost: test\r\nContent-Length: 100\r\n\r\n" + b"{" * 10,  # the body falls short
], ids=["partial-headers", "short-body"])
def test_a_request_that_stops_halfway_is_closed_after_the_deadline_while_others_are_served(partial: bytes) -> None:
    """uvicorn cancels its idle timer at a request's first byte and then waits for the rest for
    ever, so a client sending part of a request (stalled, or slowloris on purpose) held a
    descriptor for ever. Now the connection is closed once the request is ``DEADLINE_S`` late,
    with a 408 if its headers were read, and other clients are served meanwhile."""
    with _serving(_App(), request_read_timeout_s=DEADLINE_S) as url:
        slow = _connect(url)
        try:
            started = time.monotonic()
            slow.sendall(partial)
            with httpx.Client(base_url=url, timeout=10) as client:
                assert [client.post("/x", content=b"{}").status_code for _ in range(3)] == [200] * 3
            answer = _read_to_end(slow)
            assert time.monotonic() - started >= DEADLINE_S
        finally:
            slow.close()
    if b"Content-Length: 100" in partial:
        assert answer.startswith(b"HTTP/1.1 408 ") and b"connection: close" in answer.lower()
    else:
        assert answer == b""  # no request to answer: the connection is just closed


def test_a_steady_request_within_the_deadline_is_served() -> None:
    """The deadline is on the whole request, not between its bytes, but a request that arrives
    in pieces within it is served as before."""
    with _serving(_App(), request_read_timeout_s=DEADLINE_S) as url:
        sock = _connect(url)
        try:
            sock.sendall(b"POST /x HTTP/1.1\r\nHost: test\r\nContent-Length: 4\r\n")
            sock.sendall(b"Connection: close\r\n\r\n{}")
            sock.sendall(b"{}")
            answer = _read_to_end(sock)
        finally:
            sock.close()
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"\r\n\r\n4")


def _get(url: str, path: str) -> bytes:
    """One request on a new connection that asks to be closed, and all of the answer."""
    sock = _connect(url)
    try:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n".encode())
        return _read_to_end(sock)
    finally:
        sock.close()


def test_past_the_connection_cap_a_new_connection_gets_503_and_service_resumes_once_others_close() -> None:
    """Without a cap every connection costs the process a descriptor until ``accept()`` fails
    with EMFILE, which took the whole daemon down; uvicorn's ``limit_concurrency`` answers only
    once a request arrived, so it caps nothing a silent client holds. Over the cap a connection
    is answered at once, 503 with ``Retry-After``, while those open are served to the end."""
    app = _App()
    with _serving(app, max_connections=2) as url:
        held = [_connect(url) for _ in range(2)]
        try:
            for sock in held:
                sock.sendall(b"GET /hold HTTP/1.1\r\nHost: test\r\n\r\n")
            wait_until(lambda: app.holding == 2, what="both requests held by the app")
            refused = _get(url, "/x")
            assert refused.startswith(b"HTTP/1.1 503 ") and b"retry-after: 1\r\n" in refused.lower()
            assert b"too_many_connections" in refused
            app.release.set()
            for sock in held:  # the connections open before the cap was reached are answered
                assert sock.recv(4096).startswith(b"HTTP/1.1 200 ")
        finally:
            for sock in held:
                sock.close()
        answers: list[bytes] = []
        wait_until(lambda: answers.append(_get(url, "/x")) or answers[-1].startswith(b"HTTP/1.1 200 "),
                   what="a new connection served once the held ones closed")


def test_a_head_that_never_ends_gets_431_and_is_closed() -> None:
    """httptools buffers a header of any length (h11 stopped at 16 KiB), so within the request
    deadline a client could make the server hold as much memory as it can send. A head still
    unfinished past ``MAX_HEAD_BYTES`` (plus the first read's length) is answered 431 and
    closed; a head under the limit is served."""
    endless = b"GET /x HTTP/1.1\r\nHost: test\r\nX-Filler: " + b"a" * (1 << 20)
    with _serving(_App()) as url:
        sock = _connect(url)
        try:
            sock.sendall(endless)
            answer = _read_to_end(sock)
        finally:
            sock.close()
        with httpx.Client(base_url=url, timeout=10) as client:
            assert client.get("/x", headers={"X-Filler": "a" * (httpserve.MAX_HEAD_BYTES // 2)}).status_code == 200
    assert answer.startswith(b"HTTP/1.1 431 ") and b"connection: close" in answer.lower()


def test_a_websocket_outlives_the_request_read_deadline() -> None:
    """The deadline bounds reading a request; once the connection became a WebSocket its upgrade
    request is whole, and a session quiet for longer than the deadline stays open."""
    with _serving(_App(), request_read_timeout_s=DEADLINE_S) as url:
        with websockets.sync.client.connect(url.replace("http://", "ws://") + "/ws") as ws:
            with pytest.raises(TimeoutError):  # not ConnectionClosed: the server kept it open
                ws.recv(timeout=DEADLINE_S * 2)
            ws.send("still here")
            assert ws.recv(timeout=RECV_TIMEOUT_S) == "still here"
