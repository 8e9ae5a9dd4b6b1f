"""Calling actors by name from outside the actor system.

A :class:`Client` owns one thespian context (the system's, or a thread's private one): an
``ask`` returns the first message that arrives on that context, so replies are matched to calls
by reference and anything else that arrives meanwhile is set aside for its owner.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any

from thespian.actors import PoisonMessage

from tai_autonomics.runtime.errors import (
    ActorCrashed,
    ActorRestarting,
    CallError,
    CallTimeout,
    NoSuchActor,
    error_from,
)
from tai_autonomics.runtime.messages import (
    Batch,
    Call,
    Cast,
    Exiting,
    ListNames,
    Location,
    Moved,
    Registered,
    Reply,
    Whereis,
    call_refs,
)
from tai_autonomics.runtime.server import DEFAULT_CALL_TIMEOUT, RESOLVE_WAIT_S

_POLL_S = 0.001
"""A listen that takes what has already arrived (it returns as soon as one message has). After a
death notice it looks for the dead incarnation's reply: a reply it sent was in this process's
socket buffer before it died, and the notice follows that death through the supervisor and the
registry, so one pass of the transport finds it. Each such look ends with one empty listen, on
the path of the first call after a restart (it was 10 ms: the larger part of a restart)."""
_EARLY = 0.05  # an ask that comes back empty this long before its deadline hit a dead address


class Client:
    """Call, cast and look up actors through one thespian context. Not thread-safe."""

    def __init__(self, context: Any, registry: Any, *, multiprocess: bool) -> None:
        self._context = context
        self._registry = registry
        self._multiprocess = multiprocess
        self._cache: dict[str, Location] = {}
        self._refs = call_refs()
        self._inbox: deque[Any] = deque()  # the rest of a Batch, for the next wait
        self.aside: list[Exiting] = []

    def call(self, name: str, msg_type: str, payload: Any = None, timeout: float = DEFAULT_CALL_TIMEOUT) -> Any:
        """Call the actor registered as ``name``; its reply, or the error it answered as the class
        registered for its code (a :class:`CallError` when the call itself failed).

        A call that reaches an incarnation on its way out (or a dead address) was not run, so
        it is sent again to the next incarnation within the same timeout.
        """
        deadline = time.monotonic() + timeout
        ref = next(self._refs)
        gone = ""
        while True:
            location = self._resolve(name, deadline, after=gone)
            reply = self.wait_for(location.address, Call(ref, msg_type, payload),
                                  lambda m: (isinstance(m, Reply) and m.ref == ref)
                                  or (isinstance(m, Moved) and (m.name, m.incarnation) == (name, location.incarnation)),
                                  deadline - time.monotonic())
            if isinstance(reply, Moved):
                # its reply, if it sent one before it exited, was on its way before this notice
                # (sent by the registry once the supervisor saw the exit); take what has arrived
                self._forget(reply)
                answered = self._arrived(lambda m: isinstance(m, Reply) and m.ref == ref)
                if answered is not None:
                    return _unwrap(answered)
                # it died with our call: it may have run part of it
                raise ActorCrashed(f"{name} exited before answering {msg_type!r}",
                                   detail={"actor": name, "message_type": msg_type})
            if isinstance(reply, Reply) and not _not_delivered(reply):
                return _unwrap(reply)
            if deadline - time.monotonic() > _EARLY:
                self._cache.pop(name, None)
                gone = location.incarnation
                continue
            if isinstance(reply, Reply):
                return _unwrap(reply)
            raise CallTimeout(f"no reply from {name!r} to {msg_type!r} within {timeout:g} s",
                              detail={"actor": name, "message_type": msg_type, "timeout_s": timeout})

    def cast(self, name: str, msg_type: str, payload: Any = None, timeout: float = DEFAULT_CALL_TIMEOUT) -> None:
        """Send without waiting for a reply (resolving the name may wait up to ``timeout``)."""
        self._context.tell(self._resolve(name, time.monotonic() + timeout).address, Cast(msg_type, payload))

    def whereis(self, name: str, wait: float = 0.0, after: str = "") -> Location:
        """The live incarnation of ``name`` (address, incarnation id, pid), or an empty Location.

        With ``wait``, wait that long for the name to be registered; with ``after``, wait for an
        incarnation other than that one (to see a restart through).
        """
        return self._lookup(name, wait, after, subscribe=False)

    def _lookup(self, name: str, wait: float, after: str, *, subscribe: bool) -> Location:
        """A cached address is only safe with a death notice: thespian gives none itself.

        The registry answers every lookup within its wait, so an ask that comes back empty long
        before its deadline was not answered but cut short: on multiprocTCPBase the failure of
        the send to a dead incarnation that preceded it ends it (1-3 ms after a restart, the
        caller then failed with ``NoSuchActor`` while the replacement was starting). It is
        asked again."""
        deadline = time.monotonic() + wait + DEFAULT_CALL_TIMEOUT
        while True:
            reply = self.wait_for(self._registry, Whereis(name, wait, after, subscribe),
                                  lambda m: isinstance(m, Location) and m.name == name, deadline - time.monotonic())
            if reply is not None or deadline - time.monotonic() <= _EARLY:
                return reply or Location(name)

    def registry_info(self) -> Registered:
        reply = self.wait_for(self._registry, ListNames(), lambda m: isinstance(m, Registered),
                              DEFAULT_CALL_TIMEOUT)
        if reply is None:
            raise CallTimeout("the name registry did not answer")
        return reply

    def _resolve(self, name: str, deadline: float, after: str = "") -> Location:
        location = self._cache.get(name)
        if location is not None:
            return location
        wait = min(RESOLVE_WAIT_S, max(0.0, deadline - time.monotonic()))
        location = self._lookup(name, wait, after, subscribe=self._multiprocess)
        if location.address is None:
            raise NoSuchActor(f"no actor is registered as {name!r}", detail={"actor": name})
        if self._multiprocess:  # the in-process base cannot tell a dead address apart: always ask
            self._cache[name] = location
        return location

    def wait_for(self, address: Any, msg: Any, wanted: Callable[[Any], bool], timeout: float) -> Any:
        """Send ``msg`` and wait for the first answer ``wanted`` accepts (None on timeout).

        A supervisor's exit notice arriving meanwhile is kept in :attr:`aside`.
        """
        deadline = time.monotonic() + timeout
        received = self._context.ask(address, msg, max(timeout, 0.001))
        if received is None:
            return None
        if not self._inbox and wanted(received):  # the common case: the answer came first
            return received
        self._inbox.extend(received.messages if isinstance(received, Batch) else (received,))
        return self._take(wanted, deadline)

    def listen(self, timeout: float, wanted: Callable[[Any], bool]) -> Any:
        """The first message ``wanted`` accepts within ``timeout`` (None if none came).

        What else arrives is handled as during a call: a registry's notice that a cached actor
        moved is acted on, not dropped, or the next call to that name would go to a dead address
        and wait out its whole timeout (no second notice comes).
        """
        return self._take(wanted, time.monotonic() + timeout)

    def _take(self, wanted: Callable[[Any], bool], deadline: float) -> Any:
        while True:
            while self._inbox:
                answer = self._inbox.popleft()
                if wanted(answer):
                    return answer
                if isinstance(answer, PoisonMessage):
                    raise CallError(f"actor rejected the message: {answer.details}")
                self._set_aside(answer)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            received = self._context.listen(remaining)
            if received is None:
                return None
            self._inbox.extend(received.messages if isinstance(received, Batch) else (received,))

    def _arrived(self, wanted: Callable[[Any], bool]) -> Any:
        """The first message ``wanted`` accepts among those already arrived (None if none has)."""
        for answer in self._inbox:
            if wanted(answer):
                self._inbox.remove(answer)
                return answer
        found = None
        while (received := self._context.listen(_POLL_S)) is not None:
            for answer in received.messages if isinstance(received, Batch) else (received,):
                if found is None and wanted(answer):
                    found = answer
                else:
                    self._set_aside(answer)
        return found

    def _set_aside(self, answer: Any) -> None:
        """Keep a message that is not the awaited answer if it matters later."""
        if isinstance(answer, Exiting):
            self.aside.append(answer)
        elif isinstance(answer, Moved):
            self._forget(answer)

    def _forget(self, moved: Moved) -> None:
        cached = self._cache.get(moved.name)
        if cached is not None and cached.incarnation == moved.incarnation:
            del self._cache[moved.name]


def _not_delivered(reply: Reply) -> bool:
    """The old incarnation refused the call unrun because it is on its way out."""
    return reply.error is not None and reply.error.code == ActorRestarting.code


def _unwrap(reply: Reply) -> Any:
    if reply.error is None:
        return reply.value
    raise error_from(reply.error)
