"""PartyHttp, the operation actors' POST to an outside party: the same request on the wire as
``httpx.Client.post``, on one persistent connection, and the client's errors, including those
raised while the answer's body is read."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator

import httpx
import pytest

from tai_autonomics.actors._party_http import PartyHttp

OK = b"HTTP/1.1 201 Created\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n{\"ok\":true}"
CUT = b"HTTP/1.1 201 Created\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"ok\""


class _Party:
    """A raw HTTP/1.1 server on loopback: records each request's bytes and the connections it
    accepted; ``answer(request)`` gives the bytes to send back (None: send nothing, hold the
    connection open)."""

    def __init__(self, answer: Callable[[bytes], bytes | None]) -> None:
        self.answer = answer
        self.requests: list[bytes] = []
        self.connections = 0
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}/customer/v1"
        self._open: list[socket.socket] = []
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:  # closed by the test
                return
            self.connections += 1
            self._open.append(conn)
            self._threads.append(threading.Thread(target=self._serve, args=(conn,), daemon=True))
            self._threads[-1].start()

    def _serve(self, conn: socket.socket) -> None:
        buffered = b""
        while True:
            while b"\r\n\r\n" not in buffered or len(buffered.partition(b"\r\n\r\n")[2]) < _length(buffered):
                chunk = conn.recv(65536)
                if not chunk:
                    return
                buffered += chunk
            head, _, rest = buffered.partition(b"\r\n\r\n")
            request, buffered = head + b"\r\n\r\n" + rest[:_length(buffered)], rest[_length(buffered):]
            self.requests.append(request)
            reply = self.answer(request)
            if reply is None:
                return  # hold the connection: no answer
            conn.sendall(reply)
            if reply is CUT:
                conn.close()
                return

    def close(self) -> None:
        """Stop serving and wait for every thread of the party to end. A socket closed in one
        thread does not wake another blocked in its ``accept`` or ``recv``; a shutdown does."""
        for sock in (self._sock, *self._open):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:  # already closed (an answer cut on purpose), or never connected
                pass
            sock.close()
        for thread in self._threads:
            thread.join(5)
        assert not [t for t in self._threads if t.is_alive()], "the party's threads did not end"


def _length(buffered: bytes) -> int:
    for line in buffered.partition(b"\r\n\r\n")[0].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


@pytest.fixture
def party_factory() -> Iterator[Callable[[Callable[[bytes], bytes | None]], _Party]]:
    made: list[_Party] = []

    def make(answer: Callable[[bytes], bytes | None]) -> _Party:
        made.append(_Party(answer))
        return made[-1]

    yield make
    for party in made:
        party.close()


def test_the_request_on_the_wire_is_the_clients_and_the_connection_is_kept(party_factory) -> None:
    party = party_factory(lambda _request: OK)
    body = {"sku_id": "sku-001", "artifacts": {"image": "registry.example/app:1.0"}, "note": "é"}
    with httpx.Client(base_url=party.url, timeout=5) as client:
        expected = client.post("/deployments", json=body, headers={"Idempotency-Key": "op-1-0"}, timeout=3)
    http = PartyHttp(party.url, 5)
    try:
        answers = [http.post("/deployments", body, {"Idempotency-Key": "op-1-0"}, 3) for _ in range(3)]
    finally:
        http.close()
    assert expected.status_code == 201
    assert [(a.status_code, a.json()) for a in answers] == [(201, {"ok": True})] * 3
    assert party.requests[1:] == [party.requests[0]] * 3  # byte for byte what httpx.Client.post sent
    assert party.connections == 2  # the client's, then one persistent connection for all three posts


def test_an_answer_cut_after_its_headers_is_a_transport_error_from_post(party_factory) -> None:
    answers = iter([CUT, OK])
    party = party_factory(lambda _request: next(answers))
    http = PartyHttp(party.url, 5)
    try:
        with pytest.raises(httpx.TransportError):
            http.post("/deployments", {}, {"Idempotency-Key": "op-2-0"}, 3)
        assert http.post("/deployments", {}, {"Idempotency-Key": "op-2-0"}, 3).json() == {"ok": True}
    finally:
        http.close()


def test_a_party_that_does_not_answer_within_the_timeout_is_a_timeout(party_factory) -> None:
    party = party_factory(lambda _request: None)
    http = PartyHttp(party.url, 30)
    try:
        with pytest.raises(httpx.TimeoutException):
            http.post("/deployments", {}, {"Idempotency-Key": "op-3-0"}, 0.2)  # the call's timeout, not the default
    finally:
        http.close()
