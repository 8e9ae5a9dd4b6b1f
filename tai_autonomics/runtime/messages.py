"""The runtime's wire protocol between actors (pickled by thespian's multiprocess bases).

Plain dataclasses of builtins only: every message must survive pickling, because an
unpicklable reply is silently dropped by thespian and the caller would hang.

The messages of every call (:class:`Call`, :class:`Reply`, :class:`Cast`, :class:`Batch`) are
made and unpickled on both sides of every call, and that Python is a fixed part of a call's cost
next to thespian's (a raw ask is about 90 µs). So they have slots and pickle as a tuple of their
fields (a dataclass pickles its ``__dict__`` with the field names), their class travels as a
``copyreg`` extension code (an unpickler otherwise imports the module and looks the class up by
name: half of the unpickling), and they are not frozen (a frozen dataclass sets each field
through ``object.__setattr__``: three times as slow to make or unpickle). Nothing mutates them.
A call pickles to 53 bytes instead of 118 and unpickles in a quarter of the time.

Payloads, replies and start arguments are left out of the messages' ``repr``: thespian formats
every message it transmits for its debug log whatever the log level (``TransmitIntent.identify``),
so a receipt-sized payload was rendered on every send; and a payload never belongs in a log line.
"""

from __future__ import annotations

import copyreg
import itertools
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any


def call_refs() -> Iterator[str]:
    """References for one caller's calls, unique among them: a random prefix drawn once, then a
    counter (0.1 µs a reference; a uuid4 per call costs 1.7 µs, an ``os.urandom`` system call)."""
    prefix = uuid.uuid4().hex[:16]
    return (f"{prefix}.{n}" for n in itertools.count())


@dataclass(slots=True)
class Call:
    """A request expecting exactly one :class:`Reply` with the same ``ref``."""

    ref: str
    type: str
    payload: Any = field(default=None, repr=False)

    def __reduce__(self) -> tuple[Callable[..., Call], tuple[str, str, Any]]:
        return Call, (self.ref, self.type, self.payload)


@dataclass(slots=True)
class Cast:
    """A request with no reply."""

    type: str
    payload: Any = field(default=None, repr=False)

    def __reduce__(self) -> tuple[Callable[..., Cast], tuple[str, Any]]:
        return Cast, (self.type, self.payload)


@dataclass(slots=True)
class Batch:
    """Several calls, casts or replies for one receiver, sent as one thespian message.

    thespian's per-message cost (a connection, an acknowledgement, its pure-Python transport
    bookkeeping: about 0.7 ms of CPU on each side here) dwarfs handling a call, so what one
    handler sends to one receiver goes out together; the receiver handles them in order.
    """

    messages: tuple[Any, ...]

    def __reduce__(self) -> tuple[Callable[..., Batch], tuple[tuple[Any, ...]]]:
        return Batch, (self.messages,)


@dataclass(frozen=True)
class ErrorInfo:
    """Why a call failed: a stable code, the exception type and message (never a traceback)."""

    code: str
    message: str
    exception: str = ""
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Reply:
    """The answer to the :class:`Call` with the same ``ref``: its value, or why it failed."""

    ref: str
    value: Any = field(default=None, repr=False)
    error: ErrorInfo | None = None

    def __reduce__(self) -> tuple[Callable[..., Reply], tuple[str, Any, ErrorInfo | None]]:
        return Reply, (self.ref, self.value, self.error)


_EXTENSION_CODES = {Call: 0x7A1A0001, Cast: 0x7A1A0002, Reply: 0x7A1A0003, Batch: 0x7A1A0004}
"""Codes of the ``copyreg`` extension registry (private to this program; registered when this
module is imported, which every process of a node does before it unpickles a message)."""
for _message, _code in _EXTENSION_CODES.items():
    copyreg.add_extension(__name__, _message.__qualname__, _code)


@dataclass(frozen=True)
class Init:
    """Supervisor → new child: your identity, your args, where the registry is."""

    name: str
    incarnation: str
    args: Any = field(repr=False)
    registry: Any
    spec: Any = None
    log_level: str | None = None  # the supervisor's live level ($log_level); None: as configured


@dataclass(frozen=True)
class Started:
    name: str
    incarnation: str
    pid: int


@dataclass(frozen=True)
class StartFailed:
    name: str
    reason: str


@dataclass(frozen=True)
class Shutdown:
    """Supervisor → child: run your terminate hook, then report :class:`Exiting`."""

    reason: str = "shutdown"


@dataclass(frozen=True)
class Exiting:
    """Child → supervisor: I am done, and why. ``normal`` decides transient restarts: True for
    the reasons OTP does not restart a transient child for (``normal``, ``shutdown``).

    The supervisor, not the child, then ends the child's actor, so the reason always arrives
    before the exit notice and a restart decision never races it.
    """

    name: str
    incarnation: str
    normal: bool
    reason: str
    message_type: str = ""
    exception: str = ""
    report: str = ""
    """More than the reason says, for the logs: a supervisor that gave up exits ``shutdown``, as
    OTP's does, and says here that (and why) it reached its maximum restart intensity."""


@dataclass(frozen=True)
class Register:
    name: str
    address: Any
    incarnation: str
    pid: int


@dataclass(frozen=True)
class Unregister:
    name: str
    incarnation: str


@dataclass(frozen=True)
class Whereis:
    """Ask the registry for a name; if absent (or still the incarnation ``after``), wait up to
    ``wait`` seconds for it to be registered (again). A subscriber is sent :class:`Moved` when
    the incarnation it was given goes away."""

    name: str
    wait: float = 0.0
    after: str = ""
    subscribe: bool = False


@dataclass(frozen=True)
class Location:
    name: str
    address: Any = None
    incarnation: str = ""
    pid: int = 0


@dataclass(frozen=True)
class Registered:
    """Registry → asker: every live name with its incarnation and pid, and the registry's own
    pid and parent pid (the parent is the actor system's admin process)."""

    entries: dict[str, tuple[str, int]]
    pid: int = 0
    ppid: int = 0


@dataclass(frozen=True)
class ListNames:
    """Ask the registry for :class:`Registered`."""


@dataclass(frozen=True)
class Moved:
    """Registry → subscriber: this incarnation of the name is gone (thespian drops messages
    sent to a dead actor silently, so a cached address must be forgotten when it dies)."""

    name: str
    incarnation: str
