"""A thespian transport for the actors of one node: persistent Unix-socket connections.

Why: on ``multiprocTCPBase`` every message opens a TCP connection, waits for a delivery
acknowledgement and closes it again; that costs about 1 ms of CPU over both sides, 20 times a
pickled round trip over a socketpair on the same machine (docs/performance.md). Here each
sender keeps one connection per receiver for the life of both, frames messages with a length
prefix and pipelines them: a message costs one ``send`` and one ``recv`` (often fewer: several
messages queued for one receiver leave in one ``send``), no acknowledgement, no connect.

Addresses are socket files in one directory per node (``<base>/<admin port>``): ``admin`` for
the admin, ``<pid>-<n>`` for actors and external callers. The directory is created ``0700`` and
checked to belong to the daemon's user before anything binds in it, so other local users cannot
connect at all. On top of that every connection starts with a hello frame carrying the node's
secret (32 random bytes in ``secret``, mode 0600, in that directory) and the sender's address;
the receiver checks the peer's uid (``SO_PEERCRED``) and the secret before it unpickles
anything, and drops the connection otherwise. The secret matters for a process that shares the
uid (or root) and did not start this node: nothing it sends is unpickled.

Failure surfaces as thespian expects from a transport: a send to an address whose socket is
gone or refuses (the actor exited or was killed) completes with ``SendStatus.DeadTarget``, and
thespian's system layer turns that into dead letters and ``PoisonMessage`` as on the TCP base;
``ChildActorExited`` comes from ``SIGCHLD`` as on every multiprocess base. What is written to a
connection is complete from the sender's side once the kernel took it: messages a receiver had
read but not yet handled when it died are lost, as on the TCP base (where the acknowledgement
also comes on receipt, not on handling).

Not offered (see docs/thespian-base.md): conventions of several actor systems, admin routing
and "Outbound Only", which need addresses reachable from other machines.
"""

from __future__ import annotations

import errno
import hmac
import itertools
import logging
import os
import pickle
import secrets
import selectors
import socket
import stat
import struct
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from thespian.actors import ActorAddress, ActorExitRequest, ActorSystemStartupFailure, WatchMessage
from thespian.system.messages.multiproc import ChildMayHaveDied
from thespian.system.timing import ExpirationTimer, currentTime
from thespian.system.transport import (
    ExternalInterfaceTransportInit,
    ReceiveEnvelope,
    SendStatus,
    Thespian__Run_Errored,
    Thespian__Run_Expired,
    Thespian__Run_HandlerResult,
    Thespian__Run_Terminated,
    Thespian__UpdateWork,
    TransmitOnly,
    TransportInit__Base,
)
from thespian.system.transport.asyncTransportBase import asyncTransportBase
from thespian.system.transport.wakeupTransportBase import wakeupTransportBase
from thespian.system.utilis import thesplog

DIRECTORY_CAPABILITY = "Unix Socket Directory"
"""Capability naming the directory that holds one subdirectory per node (default: a per-user
directory under the system's temporary directory)."""
DEFAULT_ADMIN_PORT = 1900
SECRET_BYTES = 32
_HEADER = struct.Struct("<I")
_RECV_SIZE = 256 * 1024
_LISTEN_BACKLOG = 1024
_CONNECT_RETRY = timedelta(milliseconds=2)
"""A full listen backlog (``EAGAIN`` on connect) is retried after this long."""
_DEAD = (errno.ENOENT, errno.ECONNREFUSED, errno.ENOTDIR)
_CLOSED = (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN, errno.EBADF)
_names = itertools.count(1)


class UnixActorAddress:
    """The address details of an actor on this base: the path of its socket file."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.text = "(U|" + os.path.basename(path) + ")"  # thespian formats addresses per message

    def __eq__(self, other: object) -> bool:
        return isinstance(other, UnixActorAddress) and other.path == self.path

    def __hash__(self) -> int:
        return hash(self.path)

    def __str__(self) -> str:
        return self.text

    def isLocalAddr(self) -> bool:  # noqa: N802 (thespian's name)
        return True

    def isSameSystem(self, other: Any) -> bool:  # noqa: N802 (thespian's name)
        return True


class UnixEndpoint(TransportInit__Base):
    """What a parent hands a child it starts (thespian's ``prepEndpoint``)."""

    def __init__(self, *args: Any) -> None:
        self.args = args

    @property
    def addrInst(self) -> Any:  # noqa: N802 (thespian's name)
        return self.args[0]


class _Copy:
    """Init marker for ``external_transport_clone``."""


def node_directory(capabilities: dict[str, Any]) -> str:
    """The node's socket directory for these capabilities, created ``0700`` if missing and
    checked to be a directory of this user that nobody else can open (else the start fails)."""
    base = capabilities.get(DIRECTORY_CAPABILITY) or os.path.join(tempfile.gettempdir(),
                                                                  f"thespian-unix-{os.getuid()}")
    node = os.path.join(base, str(capabilities.get("Admin Port", DEFAULT_ADMIN_PORT)))
    for path in (base, node):
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass
        info = os.lstat(path)
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
            raise ActorSystemStartupFailure(
                f"unsafe actor socket directory {path}: it must be a directory owned by uid "
                f"{os.getuid()} with no access for group or others (mode 0700)")
    return node


def node_secret(directory: str) -> bytes:
    """The node's secret, made on first use (``O_EXCL``: concurrent starters agree on one)."""
    path = os.path.join(directory, "secret")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        with open(path, "rb") as existing:
            secret = existing.read()
        if len(secret) == SECRET_BYTES:
            return secret
        # a writer between O_EXCL and its write, or a torn file: replace it atomically
        fresh = secrets.token_bytes(SECRET_BYTES)
        temporary = f"{path}.{os.getpid()}"
        with open(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as out:
            out.write(fresh)
        os.replace(temporary, path)
        return node_secret(directory)
    fresh = secrets.token_bytes(SECRET_BYTES)
    with open(fd, "wb") as out:
        out.write(fresh)
    return fresh


def _address(path: str) -> ActorAddress:
    return ActorAddress(UnixActorAddress(path))


def _connectable(path: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(path)
        except OSError:
            return False
    return True


def _frame(payload: bytes) -> bytes:
    return _HEADER.pack(len(payload)) + payload


class _Outgoing:
    """One persistent connection to a receiver, with what is not yet written to it."""

    __slots__ = ("sock", "pending", "intents", "registered")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.pending = bytearray()
        # (offset in ``pending`` at which the intent's frame ends, intent)
        self.intents: deque[tuple[int, Any]] = deque()
        self.registered = 0


class _Incoming:
    """One accepted connection: its unparsed bytes and, after the hello, the sender."""

    __slots__ = ("sock", "data", "sender")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.data = bytearray()
        self.sender: ActorAddress | None = None


class UnixTransport(asyncTransportBase, wakeupTransportBase):
    """thespian's transport interface over persistent Unix-socket connections (module docstring)."""

    _aTB_processing: bool  # asyncTransportBase's flags, set here too on the direct send path
    _aTB_sending: bool

    def __init__(self, initType: Any, *args: Any) -> None:  # noqa: N803 (thespian's signature)
        super().__init__()
        if isinstance(initType, ExternalInterfaceTransportInit):
            capabilities = args[0]
            self._directory = node_directory(capabilities)
            self._adminAddr = self.getAdminAddr(capabilities)
            path = None
        elif isinstance(initType, UnixEndpoint):
            _instance, assigned, self._parentAddr, self._adminAddr, self._directory = initType.args
            path = assigned.addressDetails.path if assigned is not None else None
        elif isinstance(initType, _Copy):
            self._adminAddr, self._directory = args
            path = None
        else:
            raise ActorSystemStartupFailure(f"invalid UnixTransport init type ({type(initType)})")
        # an actor's (or the logger's) transport, told to end its run, ends as a receiver at once
        self._actor = isinstance(initType, UnixEndpoint) and path is None
        self._secret = node_secret(self._directory)
        self._owner = os.getpid()
        self._path = path or os.path.join(self._directory, f"{self._owner}-{next(_names)}")
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._bind(self.socket, self._path)
        self.socket.listen(_LISTEN_BACKLOG)
        self.socket.setblocking(False)
        self.myAddress = _address(self._path)
        self._hello = _frame(self._secret + pickle.dumps(self.myAddress, pickle.HIGHEST_PROTOCOL))
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self.socket, selectors.EVENT_READ, self._accept)
        self._selector.register(self._wake_r, selectors.EVENT_READ, self._woken)
        self._out: dict[str, _Outgoing] = {}
        self._in: dict[int, _Incoming] = {}
        self._retry: list[Any] = []  # intents whose connect found a full backlog
        self._envelopes: deque[Any] = deque()
        self._done: list[tuple[Any, Any]] = []  # completions, made outside the exclusive section
        self._watches: list[int] = []
        self._checkChildren = False
        self._shutdownSignalled = False
        self._aborting: Any = None
        self._woke = False

    @staticmethod
    def _bind(sock: socket.socket, path: str) -> None:
        """Bind ``path``; a file left there by a dead process (nothing accepts on it) is removed."""
        try:
            sock.bind(path)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE or _connectable(path):
                raise
            os.unlink(path)
            sock.bind(path)

    # -- thespian's transport interface ----------------------------------------------------

    def close(self) -> None:
        if not hasattr(self, "_selector"):
            return
        for conn in list(self._out.values()):
            self._fail(conn, SendStatus.Failed)
        for intent in self._retry:
            self._complete(intent, SendStatus.Failed)
        self._retry.clear()
        self._finish()
        for incoming in list(self._in.values()):
            incoming.sock.close()
        self._in.clear()
        self._selector.close()
        os.close(self._wake_r)
        os.close(self._wake_w)
        self.socket.close()
        self._unlink()
        del self._selector

    def _unlink(self) -> None:
        if os.getpid() == self._owner:  # a forked child must not remove its parent's socket
            try:
                os.unlink(self._path)
            except FileNotFoundError:
                pass

    def __del__(self) -> None:
        self.close()

    def external_transport_clone(self) -> UnixTransport:
        return UnixTransport(_Copy(), self._adminAddr, self._directory)

    def protectedFileNumList(self) -> list[int]:  # noqa: N802 (thespian's name)
        return [self.socket.fileno(), self._wake_r, self._wake_w,
                *(conn.sock.fileno() for conn in self._out.values()), *self._in]

    def childResetFileNumList(self) -> list[int]:  # noqa: N802 (thespian's name)
        return self.protectedFileNumList()

    @staticmethod
    def getAdminAddr(capabilities: dict[str, Any]) -> ActorAddress:  # noqa: N802 (thespian's name)
        return _address(os.path.join(node_directory(capabilities), "admin"))

    @staticmethod
    def getAddressFromString(addrspec: Any) -> ActorAddress:  # noqa: N802 (thespian's name)
        return _address(str(addrspec))

    @staticmethod
    def getConventionAddress(capabilities: dict[str, Any]) -> None:  # noqa: N802 (thespian's name)
        """Conventions are not offered: the node is one machine's one actor system."""
        return None

    @staticmethod
    def probeAdmin(addr: ActorAddress) -> bool:  # noqa: N802 (thespian's name)
        return _connectable(addr.addressDetails.path)

    def prepEndpoint(self, assignedLocalAddr: ActorAddress, capabilities: dict[str, Any]) -> UnixEndpoint:  # noqa: N802,N803
        from thespian.system.addressManager import ActorLocalAddress

        details = assignedLocalAddr.addressDetails
        if isinstance(details, ActorLocalAddress):
            return UnixEndpoint(details.addressInstanceNum, None, self.myAddress, self._adminAddr, self._directory)
        return UnixEndpoint(None, assignedLocalAddr, self.myAddress, self._adminAddr, self._directory)

    def connectEndpoint(self, endPoint: Any) -> None:  # noqa: N802,N803 (thespian's name)
        """Nothing to do: the child announces itself with its first message."""

    def deadAddress(self, addressManager: Any, childAddr: ActorAddress) -> None:  # noqa: N802,N803
        conn = self._out.get(childAddr.addressDetails.path) if isinstance(
            childAddr.addressDetails, UnixActorAddress) else None
        if conn is not None:
            self._fail(conn, SendStatus.DeadTarget)
        super().deadAddress(addressManager, childAddr)

    def serializer(self, intent: Any) -> bytes:
        return pickle.dumps(intent.message, pickle.HIGHEST_PROTOCOL)

    def set_watch(self, watchlist: list[int]) -> None:
        if watchlist == self._watches:  # thespian calls this after every message, nearly always []
            return
        for fd in set(self._watches) - set(watchlist):
            self._selector.unregister(fd)
        for fd in set(watchlist) - set(self._watches):
            self._selector.register(fd, selectors.EVENT_READ, self._watched)
        self._watches = list(watchlist)

    def interrupt_wait(self, signal_shutdown: bool = False, check_children: bool = False) -> None:
        """Wake the loop (from a signal handler or another thread): one byte on a pipe."""
        self._shutdownSignalled |= signal_shutdown
        self._checkChildren |= check_children
        try:
            os.write(self._wake_w, b"w")
        except (BlockingIOError, OSError):
            pass  # already full (a wake-up is pending) or closed

    def abort_run(self, drain: bool = False) -> None:
        """End the run (after sending what is queued, with ``drain``). thespian asks an actor's
        transport this only as the actor exits: it stops receiving then, so that what is sent to
        it from now on fails as a dead target (its socket is gone; connections are closed, and a
        sender re-connecting finds nothing) instead of waiting unread in a dying process. thespian's
        TCP base gets the same from its missing acknowledgements."""
        self._aborting = drain
        if self._actor and self.socket.fileno() >= 0:
            self._selector.unregister(self.socket)
            self.socket.close()
            self._unlink()
            for incoming in list(self._in.values()):
                self._close_incoming(incoming)

    def _updateStatusResponse(self, resp: Any) -> None:  # noqa: N802 (thespian's name)
        asyncTransportBase._updateStatusResponse(self, resp)
        wakeupTransportBase._updateStatusResponse(self, resp)
        for envelope in self._envelopes:
            resp.addReceivedMessage(envelope.sender, self.myAddress, str(envelope.message))

    # -- sending --------------------------------------------------------------------------------

    def _schedulePreparedIntent(self, transmitIntent: Any, has_exclusive_flag: bool = False) -> None:  # noqa: N802,N803
        """Hand a serialized intent straight to the connection when nothing waits before it.

        thespian's version queues every intent, then scans the queue for expired intents and
        takes it out again: three scans, four lock round trips and about 40 Python calls per
        message that decide nothing while the queue is empty. When the queue is empty, fewer than
        ``MAX_PENDING_TRANSMITS`` are in flight and this is the main thread, the intent is
        sent at once under the same flags thespian's ``_runQueued`` holds; only if it is not
        written at once does it take a transmit slot and thespian's completion callback (its
        ``_submitTransmit``, less the debug line). Otherwise (a backlog, a thread, thespian's
        ``Thespian__UpdateWork`` nudge) thespian's path runs, so order per receiver, the ~950
        tx-only cliff and the drop level are thespian's.
        """
        if (self._aTB_queuedPendingTransmits or not self._canSendNow() or self._aTB_sending
                or not transmitIntent.serMsg or isinstance(transmitIntent.message, Thespian__UpdateWork)
                or threading.current_thread() is not threading.main_thread()
                or not (has_exclusive_flag or self._exclusively_processing())):
            super()._schedulePreparedIntent(transmitIntent, has_exclusive_flag)
            return
        self._aTB_processing = self._aTB_sending = True
        try:
            self._send(transmitIntent)
            if not (self._done and self._done[-1][0] is transmitIntent):
                # still in flight: it holds one of thespian's transmit slots until it completes
                # (an intent written at once, nearly all of them, never needs the slot)
                self._aTB_numPendingTransmits += 1
                transmitIntent.addCallback(self._async_txdone, self._async_txdone)
        finally:
            self._aTB_sending = False
            if not has_exclusive_flag:
                self._aTB_processing = False
        # Completions run with the flags free, so what their callbacks send (thespian's admin
        # and actor manager send from them) takes this path again; what was queued while a
        # caller held the flag is sent now, as thespian's own completion callback would.
        self._finish()
        while self._aTB_queuedPendingTransmits and self._canSendNow():
            if not self._runQueued(has_exclusive_flag=has_exclusive_flag):
                break

    def _scheduleTransmitActual(self, intent: Any, has_exclusive_flag: bool = False) -> None:  # noqa: N802
        """Called by thespian with its processing flag held (thespian's UDP transport completes
        intents here too); completions are made before returning."""
        self._send(intent)
        self._finish()

    def _send(self, intent: Any) -> None:
        details = intent.targetAddr.addressDetails
        if details == self.myAddress.addressDetails:  # not ActorAddress ==: thespian's slower override
            self._envelopes.append(ReceiveEnvelope(intent.targetAddr, intent.message))
            self.interrupt_wait()
            self._complete(intent, SendStatus.Sent)
            return
        if not isinstance(details, UnixActorAddress):
            thesplog("UnixTransport cannot send to %s", intent.targetAddr, level=logging.WARNING)
            self._complete(intent, SendStatus.DeadTarget)
            return
        conn = self._out.get(details.path)
        if conn is None:
            conn = self._connect(details.path, intent)
            if conn is None:
                return
        frame = _frame(intent.serMsg)
        if not conn.pending:  # an idle connection (the usual case): write through, no buffering
            try:
                sent = conn.sock.send(frame)
            except OSError:
                sent = 0  # full or closed: the buffered path below meets it again and handles it
            if sent == len(frame):
                self._complete(intent, SendStatus.Sent)
                return
            frame = frame[sent:]
        conn.pending += frame
        conn.intents.append((len(conn.pending), intent))
        self._flush(details.path, conn)

    def _complete(self, intent: Any, status: Any) -> None:
        self._done.append((intent, status))

    def _finish(self) -> None:
        """Run the completions: thespian's callbacks schedule the next transmits from here."""
        while self._done:
            done, self._done = self._done, []
            for intent, status in done:
                intent.tx_done(status)

    def _connect(self, path: str, intent: Any) -> _Outgoing | None:
        """A new connection to ``path`` (None: ``intent`` is already completed or set to retry)."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            sock.connect(path)
        except OSError as exc:
            sock.close()
            if exc.errno == errno.EAGAIN and not intent.expired():  # listen backlog full
                intent.retry_at = ExpirationTimer(_CONNECT_RETRY)
                self._retry.append(intent)
                return None
            self._complete(intent, SendStatus.DeadTarget if exc.errno in _DEAD else SendStatus.Failed)
            return None
        conn = _Outgoing(sock)
        conn.pending += self._hello
        self._out[path] = conn
        self._register(conn, selectors.EVENT_READ, path)
        return conn

    def _register(self, conn: _Outgoing, events: int, path: str) -> None:
        """Watch an outgoing connection for its peer closing it (read) and, while bytes wait,
        for room to write."""
        if conn.registered == events:
            return
        if conn.registered:
            self._selector.modify(conn.sock, events, path)
        else:
            self._selector.register(conn.sock, events, path)
        conn.registered = events

    def _flush(self, path: str, conn: _Outgoing) -> None:
        """Write what the kernel takes now; complete the intents whose frames are all out."""
        try:
            sent = conn.sock.send(conn.pending)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            if exc.errno not in _CLOSED:
                raise
            self._lost(path, conn)
            return
        if sent:
            del conn.pending[:sent]
            done = []
            while conn.intents and conn.intents[0][0] <= sent:
                done.append(conn.intents.popleft()[1])
            if sent and conn.intents:
                conn.intents = deque((end - sent, intent) for end, intent in conn.intents)
            for intent in done:
                self._complete(intent, SendStatus.Sent)
        if path in self._out and conn is self._out[path]:
            self._register(conn, selectors.EVENT_READ | (selectors.EVENT_WRITE if conn.pending else 0), path)

    def _lost(self, path: str, conn: _Outgoing) -> None:
        """The receiver closed the connection: it has exited (or its transport was replaced).
        What was not written is tried once more on a new connection; a refusal there makes it
        a dead target."""
        self._drop(path, conn)
        unsent = [intent for _end, intent in conn.intents]
        conn.intents.clear()
        for intent in unsent:
            if getattr(intent, "reconnected", False):
                self._complete(intent, SendStatus.DeadTarget)
            else:
                intent.reconnected = True
                self._send(intent)

    def _drop(self, path: str, conn: _Outgoing) -> None:
        if self._out.get(path) is conn:
            del self._out[path]
        if conn.registered:
            self._selector.unregister(conn.sock)
            conn.registered = 0
        conn.sock.close()

    def _fail(self, conn: _Outgoing, status: Any) -> None:
        path = next((p for p, c in self._out.items() if c is conn), "")
        self._drop(path, conn)
        failed = [intent for _end, intent in conn.intents]
        conn.intents.clear()
        for intent in failed:
            self._complete(intent, status)

    def _outgoing_event(self, path: str, events: int) -> None:
        conn = self._out.get(path)
        if conn is None:
            return
        if events & selectors.EVENT_READ:
            try:
                data = conn.sock.recv(1)
            except BlockingIOError:
                data = b"?"
            except OSError:
                data = b""
            if not data:  # receivers never write: readable means closed
                self._lost(path, conn)
                return
        if events & selectors.EVENT_WRITE:
            self._flush(path, conn)

    def _retry_connects(self, now: float) -> None:
        due = [intent for intent in self._retry if intent.retry_at.view(now).expired()]
        if due:
            self._retry = [intent for intent in self._retry if intent not in due]
            for intent in due:
                self._send(intent)

    # -- receiving ------------------------------------------------------------------------------

    def _accept(self, _events: int) -> None:
        while True:
            try:
                sock, _ = self.socket.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                thesplog("UnixTransport accept failed: %s", exc, level=logging.WARNING)
                return
            _pid, uid, _gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                                   struct.calcsize("3i")))
            if uid != os.getuid():
                thesplog("UnixTransport refused a connection from uid %d", uid, level=logging.WARNING)
                sock.close()
                continue
            sock.setblocking(False)
            incoming = _Incoming(sock)
            self._in[sock.fileno()] = incoming
            self._selector.register(sock, selectors.EVENT_READ, incoming)

    def _read(self, incoming: _Incoming) -> None:
        try:
            data: bytes | bytearray = incoming.sock.recv(_RECV_SIZE)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._close_incoming(incoming)
            return
        buffered = incoming.data
        if buffered:  # the rest of a frame read before; else frames are parsed from ``data`` as read
            buffered += data
            data = buffered
        start = 0
        size = len(data)
        while size - start >= 4:
            (length,) = _HEADER.unpack_from(data, start)
            end = start + 4 + length
            if end > size:
                break
            payload = data[start + 4:end]
            start = end
            if incoming.sender is None:
                if not self._greeted(incoming, payload):
                    return
                continue
            try:
                message = pickle.loads(payload)
            except Exception as exc:  # a class this process cannot import, say
                thesplog("UnixTransport could not unpickle a message from %s: %s", incoming.sender, exc,
                         level=logging.ERROR)
                continue
            self._envelopes.append(ReceiveEnvelope(incoming.sender, message))
        if buffered:
            del buffered[:start]
        elif start < size:
            incoming.data = bytearray(data[start:])
        if incoming.sender is None and len(incoming.data) > 4 + SECRET_BYTES + 4096:
            self._close_incoming(incoming)  # no hello this big: not one of ours

    def _greeted(self, incoming: _Incoming, payload: bytes | bytearray) -> bool:
        """Check the hello frame: the secret first (nothing is unpickled before it matches)."""
        if len(payload) <= SECRET_BYTES or not hmac.compare_digest(payload[:SECRET_BYTES], self._secret):
            thesplog("UnixTransport dropped a connection without the node's secret", level=logging.WARNING)
            self._close_incoming(incoming)
            return False
        try:
            sender = pickle.loads(payload[SECRET_BYTES:])
        except Exception as exc:
            sender = exc
        if not isinstance(sender, ActorAddress):
            thesplog("UnixTransport dropped a connection whose hello names no address: %s", sender,
                     level=logging.WARNING)
            self._close_incoming(incoming)
            return False
        incoming.sender = sender
        return True

    def _close_incoming(self, incoming: _Incoming) -> None:
        self._in.pop(incoming.sock.fileno(), None)
        self._selector.unregister(incoming.sock)
        incoming.sock.close()

    def _woken(self, _events: int) -> None:
        try:
            while os.read(self._wake_r, 512):
                pass
        except BlockingIOError:
            pass
        if self._checkChildren:
            self._checkChildren = False
            self._envelopes.append(ReceiveEnvelope(self.myAddress, ChildMayHaveDied()))
        if self._shutdownSignalled:
            self._shutdownSignalled = False
            self._envelopes.append(ReceiveEnvelope(self.myAddress, ActorExitRequest()))
        self._woke = True

    def _watched(self, _events: int) -> None:
        """Watched descriptors are collected per pass by ``_runWithExpiry``."""

    # -- the loop -------------------------------------------------------------------------------

    def _pending_transmits(self) -> int:
        return sum(len(conn.intents) for conn in self._out.values()) + len(self._retry)

    def _runWithExpiry(self, incomingHandler: Any) -> Any:  # noqa: N802,N803 (thespian's name)
        transmit_only = incomingHandler == TransmitOnly or isinstance(incomingHandler, TransmitOnly)
        self._aborting = None
        while True:
            if self._aborting is not None and not (self._aborting and self._pending_transmits()):
                return Thespian__Run_Terminated()
            if not transmit_only:
                while self._envelopes:
                    envelope = self._envelopes.popleft()
                    if incomingHandler is None:
                        return envelope
                    result = Thespian__Run_HandlerResult(incomingHandler(envelope))
                    if not result:
                        return result
                    if self._aborting is not None:
                        break
                if self._aborting is not None:
                    continue
            elif not self._pending_transmits():
                return 0
            if self._done:  # completions made while handling (deadAddress)
                self._finish()
                continue
            deadline = self.run_time._time_to_quit  # thespian's ExpirationTimer; None: never (no views)
            timeout = None if deadline is None else deadline - currentTime()
            if timeout is not None and timeout <= 0:
                return Thespian__Run_Expired()
            if self._retry:
                timeout = 0.0 if timeout is None else min(timeout, _CONNECT_RETRY.total_seconds())
            try:
                events = self._selector.select(timeout)
            except InterruptedError:
                continue
            except OSError as exc:
                return Thespian__Run_Errored(exc)
            ready: list[int] = []
            # other threads' sends run _send under the same flag (thespian's exclusive_processing,
            # without its generator: this runs once per message)
            while not self._exclusively_processing():
                time.sleep(0.000001)
            try:
                for key, mask in events:
                    self._dispatch(key, mask, ready)
                if self._retry:
                    self._retry_connects(currentTime())
            finally:
                self._not_processing()
            self._finish()
            if ready:
                self._envelopes.append(ReceiveEnvelope(self.myAddress, WatchMessage(ready)))
            if self._woke:
                # another thread queued work (thespian's UDP transport answers the same way: the
                # caller's loop looks at its queues again); what arrived meanwhile comes first
                self._woke = False
                if not self._envelopes and not transmit_only:
                    return Thespian__UpdateWork()

    def _dispatch(self, key: selectors.SelectorKey, mask: int, ready: list[int]) -> None:
        handler: Any = key.data
        if isinstance(handler, _Incoming):
            self._read(handler)
        elif isinstance(handler, str):
            self._outgoing_event(handler, mask)
        elif handler == self._watched:
            ready.append(key.fd)
        else:
            callback: Callable[[int], None] = handler
            callback(mask)
