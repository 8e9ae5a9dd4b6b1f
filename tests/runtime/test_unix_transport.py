"""multiprocUnixBase's transport: what other users, and processes without the node's secret, get
from an actor's socket (nothing is unpickled), which directories it refuses to use, and its
direct send path next to thespian's transmit queue (backpressure and order)."""

from __future__ import annotations

import os
import pickle
import shutil
import socket
import struct
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from thespian.system.transport import (
    ExternalInterfaceTransportInit,
    ReceiveEnvelope,
    SendStatus,
    TransmitIntent,
    TransmitOnly,
)
from thespian.system.transport.asyncTransportBase import MAX_PENDING_TRANSMITS, asyncTransportBase

from tai_autonomics.runtime import Node, NodeConfig, unixbase
from tai_autonomics.runtime._unixtransport import UnixTransport
from tai_autonomics.runtime.errors import SystemError_
from tests.helpers import free_port, wait_until
from tests.runtime.support import workers

NOBODY = 65534


class _MakeDirectory:
    """Unpickling this makes a directory: the proof that a payload was unpickled."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return os.mkdir, (self.path,)


@pytest.fixture(scope="module")
def node() -> Iterator[Node]:
    # directly under the system's temporary directory (pytest's are 0700 all the way down), so
    # that the test below can open the way to the sockets for another uid
    sockets = tempfile.mkdtemp(prefix="tai-unix-test-")
    try:
        with Node(NodeConfig(base=unixbase.NAME, admin_port=free_port(), socket_dir=sockets)) as n:
            yield n
    finally:
        shutil.rmtree(sockets)


def _directory(node: Node) -> Path:
    return Path(unixbase.node_directory(node._capabilities))


def _actor_socket(node: Node, tree) -> str:
    tree({"root": {"children": ["a"]}}, workers("a"))
    path = node._own_client.whereis("a").address.addressDetails.path
    assert Path(path).parent == _directory(node)
    return path


def _frame(payload: bytes) -> bytes:
    return struct.pack("<I", len(payload)) + payload


def _send_and_read(path: str, data: bytes) -> bytes:
    """Connect, send ``data``, and read until the actor's side closes (it never writes)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(path)
        sock.sendall(data)
        return sock.recv(1)


def test_without_the_nodes_secret_nothing_is_unpickled(node: Node, tree, tmp_path: Path) -> None:
    path = _actor_socket(node, tree)
    marker = tmp_path / "unpickled"
    evil = pickle.dumps(_MakeDirectory(marker))
    for data in (_frame(evil),                                   # no hello at all
                 _frame(os.urandom(unixbase.SECRET_BYTES) + evil),  # a guessed secret
                 _frame(b"\0" * unixbase.SECRET_BYTES + evil) + _frame(evil)):
        assert _send_and_read(path, data) == b""  # the actor closed the connection
    assert not marker.exists()
    assert node.call("a", "echo", "still here") == "still here"

    # The control: the same bytes behind the right secret are unpickled (so the check above,
    # not a malformed frame, is what refused them).
    secret = (_directory(node) / "secret").read_bytes()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(path)
        sock.sendall(_frame(secret + evil))
        assert sock.recv(1) == b""  # not an address: dropped, after unpickling it
    wait_until(marker.is_dir, what="the payload unpickled")
    assert node.call("a", "echo", "still here") == "still here"


def test_the_sockets_are_in_a_directory_only_the_daemons_user_can_open(node: Node, tree) -> None:
    path = _actor_socket(node, tree)
    for directory in (_directory(node), _directory(node).parent):
        info = directory.stat()
        assert (info.st_uid, info.st_mode & 0o777) == (os.getuid(), 0o700)
    assert sorted(p.name for p in _directory(node).iterdir() if not p.is_socket()) == ["secret"]
    assert (_directory(node) / "secret").stat().st_mode & 0o777 == 0o600

    connect = f"import socket; socket.socket(socket.AF_UNIX).connect({path!r})"
    as_nobody = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "/usr/bin/python3", "-c"]
    refused = subprocess.run([*as_nobody, connect], capture_output=True, text=True, timeout=30)
    assert refused.returncode != 0 and "PermissionError" in refused.stderr, refused.stderr

    # Even with the directories opened to everyone, another uid is dropped before anything is read.
    modes = {d: d.stat().st_mode & 0o777 for d in (_directory(node), _directory(node).parent)}
    try:
        for directory in modes:
            directory.chmod(0o777)
        Path(path).chmod(0o777)
        send = (f"import socket; s = socket.socket(socket.AF_UNIX); s.settimeout(10); s.connect({path!r}); "
                f"s.sendall(b'x' * 64); print(repr(s.recv(1)))")
        dropped = subprocess.run([*as_nobody, send], capture_output=True, text=True, timeout=30)
    finally:
        for directory, mode in modes.items():
            directory.chmod(mode)
    assert (dropped.returncode, dropped.stdout.strip()) in ((0, "b''"), (1, "")), dropped.stderr
    if dropped.returncode:
        assert "ConnectionResetError" in dropped.stderr or "BrokenPipeError" in dropped.stderr, dropped.stderr
    assert node.call("a", "echo", 1) == 1


@pytest.mark.parametrize("unsafe", ["group_readable", "other_owner", "symlink"])
def test_an_unsafe_socket_directory_is_refused(tmp_path: Path, unsafe: str) -> None:
    sockets = tmp_path / "sockets"
    if unsafe == "symlink":
        (tmp_path / "elsewhere").mkdir(mode=0o700)
        sockets.symlink_to(tmp_path / "elsewhere")
    else:
        sockets.mkdir(mode=0o700)
        sockets.chmod(0o750) if unsafe == "group_readable" else os.chown(sockets, NOBODY, NOBODY)
    node = Node(NodeConfig(base=unixbase.NAME, admin_port=free_port(), socket_dir=str(sockets)))
    with pytest.raises(SystemError_, match=f"unsafe actor socket directory {sockets}"):
        node.start()
    assert [p.name for p in tmp_path.iterdir() if p.name != "elsewhere"] == ["sockets"]


def test_shutdown_removes_the_nodes_sockets(tmp_path: Path) -> None:
    with Node(NodeConfig(base=unixbase.NAME, admin_port=free_port(), socket_dir=str(tmp_path / "s"))) as node:
        directory = _directory(node)
        assert (directory / "admin").is_socket()
    assert not directory.exists()


@pytest.fixture
def transports(tmp_path: Path) -> Iterator[tuple[UnixTransport, UnixTransport]]:
    """A sending and a receiving transport in this process, driven by hand (no actor system)."""
    capabilities = {unixbase.DIRECTORY_CAPABILITY: str(tmp_path / "sockets"), "Admin Port": 1}
    pair = (UnixTransport(ExternalInterfaceTransportInit(), capabilities),
            UnixTransport(ExternalInterfaceTransportInit(), capabilities))
    yield pair
    for transport in pair:
        transport.close()


def _schedule(sender: UnixTransport, target, message, outcomes: list) -> None:
    def done(status, intent) -> None:
        outcomes.append((intent.message, status))

    sender.scheduleTransmit(None, TransmitIntent(target, message, onSuccess=done, onError=done))


def _receive(receiver: UnixTransport, sender: UnixTransport, count: int) -> list:
    """Run both ends by turns (the sender's loop flushes what the kernel would not take at
    once) until ``count`` messages have arrived."""
    received: list = []
    for _ in range(5000):
        if len(received) == count:
            return received
        sender.run(TransmitOnly, 0.002)
        envelope = receiver.run(None, 0.002)
        if isinstance(envelope, ReceiveEnvelope):
            received.append(envelope.message)
    raise AssertionError(f"{len(received)} of {count} messages arrived")


def test_a_send_on_an_idle_connection_skips_thespians_transmit_queue(transports, monkeypatch) -> None:
    """The direct path: no queue, no slot held, completed as sent at once, in order; a dead
    target still completes as one."""
    sender, receiver = transports
    queued: list = []
    monkeypatch.setattr(sender, "_qtx", lambda intent: queued.append(intent) or asyncTransportBase._qtx(sender, intent))
    outcomes: list = []
    for i in range(50):
        _schedule(sender, receiver.myAddress, i, outcomes)
    assert outcomes == [(i, SendStatus.Sent) for i in range(50)]
    assert (queued, sender._aTB_numPendingTransmits) == ([], 0)
    assert _receive(receiver, sender, 50) == list(range(50))

    gone = UnixTransport.getAddressFromString(str(Path(receiver._directory) / "no-such-actor"))
    _schedule(sender, gone, "lost", outcomes)
    assert outcomes[-1] == ("lost", SendStatus.DeadTarget)
    assert (queued, sender._aTB_numPendingTransmits) == ([], 0)


def test_a_receiver_that_does_not_read_backs_sends_up_into_thespians_queue_in_order(transports) -> None:
    """Backpressure stays thespian's: what the kernel does not take holds a transmit slot, past
    MAX_PENDING_TRANSMITS the rest waits in thespian's queue; everything arrives in order and
    completes, and once the backlog is gone a send is direct again."""
    sender, receiver = transports
    outcomes: list = []
    big = b"x" * 100_000
    for i in range(60):
        _schedule(sender, receiver.myAddress, (i, big), outcomes)
    assert sender._aTB_numPendingTransmits == MAX_PENDING_TRANSMITS
    assert len(sender._aTB_queuedPendingTransmits) == 60 - MAX_PENDING_TRANSMITS - len(outcomes) > 0
    assert [i for i, _big in _receive(receiver, sender, 60)] == list(range(60))
    assert [(i, status) for (i, _big), status in outcomes] == [(i, SendStatus.Sent) for i in range(60)]
    assert (sender._aTB_numPendingTransmits, len(sender._aTB_queuedPendingTransmits)) == (0, 0)

    _schedule(sender, receiver.myAddress, "direct", outcomes)
    assert outcomes[-1] == ("direct", SendStatus.Sent)
    assert _receive(receiver, sender, 1) == ["direct"]


def test_a_send_from_a_completion_callback_is_sent_at_once(transports) -> None:
    """thespian's admin and actor manager send from completion callbacks (the admin's shutdown
    answer, say): such a send must leave at once, not wait in thespian's queue for a next send
    that may never come (it did, and every ActorSystem.shutdown() waited its full 10 s)."""
    sender, receiver = transports
    outcomes: list = []

    def then_second(status, intent) -> None:
        outcomes.append((intent.message, status))
        _schedule(sender, receiver.myAddress, "second", outcomes)

    sender.scheduleTransmit(None, TransmitIntent(receiver.myAddress, "first", onSuccess=then_second))
    assert outcomes == [("first", SendStatus.Sent), ("second", SendStatus.Sent)]
    assert (sender._aTB_numPendingTransmits, len(sender._aTB_queuedPendingTransmits)) == (0, 0)
    assert _receive(receiver, sender, 2) == ["first", "second"]
