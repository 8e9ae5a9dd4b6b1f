"""The server behaviour (OTP's ``gen_server``) on a thespian actor.

thespian retries a message whose handler raised and then bounces a ``PoisonMessage`` while the
actor carries on with possibly broken state. Here an unexpected exception instead:
1. sends the caller an error reply at once (exception type and message, never a traceback);
2. tells the supervisor why, and stops taking work (later calls get ``actor_restarting``);
3. is ended by the supervisor, which restarts a fresh incarnation.

A :class:`~tai_autonomics.errors.TaiError` raised by a handler is a deliberate refusal, not a
crash: the caller gets its code and message and the actor keeps its state.

Subclasses implement ``init(args)``, ``call_<type>(payload)`` for calls (the return value is the
reply), ``cast_<type>(payload)`` for casts, ``on_timer(payload)`` for timers set with
:meth:`start_timer`, and ``terminate(reason)``.

An actor must never block waiting for another (thespian runs one message at a time), so a
server calls other actors with :meth:`Server.call_actor`, whose result arrives later in a
callback, and answers its own caller later with :meth:`Process.reply` after returning
:data:`NOREPLY` (OTP's ``{noreply, State}`` + ``gen_server:reply/2``). Blocking I/O (an outside
party's HTTP call) goes to :meth:`Server.run_blocking`: it runs on a worker thread and its
continuation comes back to the actor like an answer.

Sending is coalesced: the calls, casts and replies one handling sends to one receiver travel as
one thespian message (a :class:`~tai_autonomics.runtime.messages.Batch`), because thespian's
per-message cost dwarfs the handling of a call; an actor with :attr:`Process.coalesce_s` also
holds them for a few milliseconds while requests stream in, so the calls of many requests
travel together. A runtime message (registration, exit notice) first sends everything queued.
"""

from __future__ import annotations

import heapq
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from thespian.actors import (
    Actor,
    ActorExitRequest,
    DeadEnvelope,
    PoisonMessage,
    ThespianWatch,
    WakeupMessage,
    WatchMessage,
)

from tai_autonomics.errors import TaiError
from tai_autonomics.runtime import _process
from tai_autonomics.runtime._offload import Offload
from tai_autonomics.runtime.errors import (
    ActorCrashed,
    ActorRestarting,
    CallTimeout,
    NoSuchActor,
    UnknownMessage,
    error_from,
)
from tai_autonomics.runtime.messages import (
    Batch,
    Call,
    Cast,
    ErrorInfo,
    Exiting,
    Init,
    Location,
    Moved,
    Reply,
    Shutdown,
    Started,
    StartFailed,
    Unregister,
    Whereis,
    call_refs,
)
from tai_autonomics.runtime.stats import MessageRate, snapshot

log = logging.getLogger(__name__)

NOREPLY = object()
"""Returned by a call handler that will answer later with :meth:`Process.reply`."""

DEFERRED = object()
"""Returned by ``init`` that needs answers from other actors before the actor counts as
started; it then calls :meth:`Process.confirm_started` or :meth:`Process.fail_start`
(OTP's ``proc_lib:init_ack``). The next sibling starts only after that."""

DEFAULT_CALL_TIMEOUT = 5.0
RESOLVE_WAIT_S = 5.0
"""How long a caller waits for a name to be (re-)registered: a restart takes milliseconds, so a
name still missing after this is no actor at all, even for a call with a long timeout."""

_IGNORED = (PoisonMessage, DeadEnvelope)
_COALESCED = (Call, Cast, Reply)
MAX_HELD = 256  # messages held for coalescing; more are sent at once


@dataclass(frozen=True)
class Caller:
    """Who to answer: kept by a handler that returned :data:`NOREPLY`."""

    address: Any
    ref: str


class _Stop(Exception):
    def __init__(self, reason: str, reply: Any) -> None:
        self.reason, self.reply = reason, reply


class Process(Actor):
    """What every runtime actor shares: identity, start handshake, the call envelope, exit.

    :class:`Server` (workers) and the supervisor both build on it, so the start, call and
    exit protocols exist once.
    """

    name: str = ""
    incarnation: str = ""
    coalesce_s: float = 0.0
    """While many requests are under way (they arrive less than this apart, or answers to other
    requests' calls are due: :meth:`_awaiting_more`), hold what handlers send for up to this
    long, so that the calls of many requests travel together instead of one thespian message
    each. One request's own steps are never held. Zero (the default): send when each handling
    ends."""

    def __init__(self) -> None:
        super().__init__()
        self._parent: Any = None
        self._log_level: str | None = None  # set by $log_level, or inherited from the supervisor at start
        self._registry: Any = None
        self._exiting = False
        self._started = False
        # calls and casts that came before the start was confirmed: the supervisor registers a
        # child's name as it creates it, so callers may reach it before (or while) it runs init
        self._early: list[tuple[Any, Any]] = []
        self._calling: tuple[Any, str] | None = None  # (sender, ref) of the call being handled
        self._outbox: list[tuple[Any, list[Any]]] | None = None
        self._held: list[tuple[Any, list[Any]]] = []
        self._last_request = self._request_gap = float("-inf")
        self._flush_armed = False
        self._handled = MessageRate(time.monotonic())

    # -- the protocol -------------------------------------------------------------------

    def receiveMessage(self, msg: Any, sender: Any) -> ThespianWatch | None:
        """Handle one thespian message; what the handling sends goes out when it ends, the
        calls, casts and replies for one receiver together as one :class:`Batch`."""
        if self._outbox is not None:  # the in-process base delivers inside a send: same outbox
            self._handle_one(msg, sender)
            return None
        self._outbox, self._held = self._held, []
        try:
            self._handle_one(msg, sender)
        finally:
            outbox, self._outbox = self._outbox, None
            if self.coalesce_s and self._hold(outbox, msg):
                self._held = outbox
            else:
                for address, messages in outbox:
                    self._transmit(address, messages)
        return self._watch()

    def _watch(self) -> ThespianWatch | None:
        """File descriptors thespian should wake this actor for, besides its mailbox."""
        return None

    def _hold(self, outbox: list[tuple[Any, list[Any]]], msg: Any) -> bool:
        """Whether to keep ``outbox`` for the next handling (asked only of a process with a
        :attr:`coalesce_s`: only such a one holds messages and arms their flush)."""
        if isinstance(msg, WakeupMessage) and isinstance(msg.payload, _Flush):
            self._flush_armed = False
            return False
        if not outbox or self._exiting or sum(len(queued) for _, queued in outbox) >= MAX_HELD:
            return False
        if not (self.requests_streaming(self.coalesce_s) or self._awaiting_more(outbox)):
            return False
        if not self._flush_armed:
            self._flush_armed = True
            self.wakeupAfter(timedelta(seconds=self.coalesce_s), payload=_Flush())
        return True

    def _awaiting_more(self, outbox: list[tuple[Any, list[Any]]]) -> bool:
        """Whether answers other than those to the calls in ``outbox`` are due (a process that
        makes no calls of its own awaits none)."""
        return False

    def requests_streaming(self, window: float) -> bool:
        """Whether calls and casts arrive less than ``window`` apart (the last two did, and the
        last one came less than ``window`` ago): many requests are under way, so waiting that
        long gathers more of them, while a lone request's steps would only be delayed."""
        return self._request_gap < window and time.monotonic() - self._last_request < window

    def _note_request(self) -> None:
        """Count a call or cast as handled and note when it came (one clock read for both)."""
        now = time.monotonic()
        self._handled.count(now)
        self._request_gap, self._last_request = now - self._last_request, now

    def send(self, targetAddr: Any, msg: Any) -> None:
        """thespian's send, coalescing calls, casts and replies while a message is handled.

        A runtime message (a registration, an exit notice) first sends everything queued, to
        every receiver: what others learn from it (a death notice, say) must not overtake what
        was sent before it (the reply to the call that crashed).
        """
        outbox = self._outbox
        if outbox is None:
            super().send(targetAddr, msg)
        elif isinstance(msg, _COALESCED):
            for address, messages in outbox:
                if address == targetAddr:
                    messages.append(msg)
                    return
            outbox.append((targetAddr, [msg]))
        else:
            for address, messages in outbox:
                self._transmit(address, messages)
            outbox.clear()
            super().send(targetAddr, msg)

    def _transmit(self, address: Any, messages: list[Any]) -> None:
        super().send(address, messages[0] if len(messages) == 1 else Batch(tuple(messages)))

    def _handle_one(self, msg: Any, sender: Any) -> None:
        if isinstance(msg, Call):  # the common message first
            self._note_request()
            self._on_call(msg, sender)
        elif isinstance(msg, Batch):
            for inner in msg.messages:
                self._handle_one(inner, sender)
        elif isinstance(msg, Cast):
            self._note_request()
            self._on_cast(msg)
        elif isinstance(msg, WakeupMessage) and isinstance(msg.payload, _Flush):
            return  # its handling ends by sending what was held
        else:
            if not isinstance(msg, WakeupMessage):  # a timer is no one's message (a supervisor's ticks 4/s)
                self._handled.count(time.monotonic())
            self._handle_other(msg, sender)

    def _handle_other(self, msg: Any, sender: Any) -> None:
        """A runtime message or anything else: not a call, a cast, a batch or a flush."""
        if isinstance(msg, Init):
            self._on_init(msg, sender)
        elif isinstance(msg, ActorExitRequest):
            self._on_exit_request()
        elif not isinstance(msg, _IGNORED):
            self._guarded(self.handle_message, msg, sender, message_type=type(msg).__name__)

    def _on_init(self, msg: Init, sender: Any) -> None:
        _process.die_with_parent()
        self._parent = sender
        self._registry = msg.registry
        self.name, self.incarnation = msg.name, msg.incarnation
        try:
            if msg.log_level is not None:
                self._log_level = _process.set_log_level(msg.log_level)
            self.start(msg)
        except Exception as exc:  # a failed init fails the start, with the reason
            self.fail_start(exc.message if isinstance(exc, TaiError) else f"{type(exc).__name__}: {exc}")

    def identity(self) -> dict[str, Any]:
        """What every ``$info`` reply starts with: who, which incarnation, where, logging at what."""
        return {"name": self.name, "incarnation": self.incarnation, "pid": os.getpid(),
                "log_level": logging.getLevelName(logging.getLogger().getEffectiveLevel())}

    def set_log_level(self, level: Any) -> dict[str, str]:
        """``$log_level``, which every actor answers: this process's level now, remembered so that
        a supervisor starts (and restarts) its children at it, not back at the configured one."""
        self._log_level = _process.set_log_level(level)
        return {"name": self.name, "level": self._log_level}

    def stats(self) -> dict[str, Any]:
        """``$stats``, which every actor answers: its process's memory and CPU, the messages it has
        handled (in all and per second) and those it has not yet got off its hands: held for
        coalescing, or handed to thespian and not yet delivered (on TCP: not acknowledged by the
        receiver; on the Unix-socket transport, which has no acknowledgement: not yet written)."""
        return snapshot(self._handled, time.monotonic(), self._pending_outbound())

    def _pending_outbound(self) -> int | None:
        """Messages held here plus thespian's transmits in progress or queued; None where thespian
        does not show them (the in-process base has no transport)."""
        held = sum(len(queued) for _, queued in self._held)
        transport = getattr(getattr(self, "_myRef", None), "transport", None)
        in_progress = getattr(transport, "_aTB_numPendingTransmits", None)
        queued = getattr(transport, "_aTB_queuedPendingTransmits", None)
        if not isinstance(in_progress, int) or queued is None:
            return None
        return held + in_progress + len(queued)

    def fail_start(self, reason: str) -> None:
        """A deferred start failed: the supervisor's start (or restart) fails with ``reason``."""
        log.error("actor failed to start", extra={"fields": {"actor": self.name, "reason": reason}})
        self._exiting = True
        self.send(self._parent, StartFailed(self.name, reason))
        self._release_early()

    def confirm_started(self) -> None:
        """Confirm the start to whoever started this incarnation (the next child may start).

        The starter registers the name (the supervisor as it creates the child, the node for
        the root), on its connection to the registry, which is already open: a registration
        from here would open a new connection from this fresh process (about 0.45 ms) and come
        after ``init``, on the path of every restart. Calls that arrived meanwhile are handled
        now, after ``init``.
        """
        self._started = True
        self.send(self._parent, Started(self.name, self.incarnation, os.getpid()))
        self._release_early()

    def _release_early(self) -> None:
        """Handle the calls and casts that arrived before the start was confirmed: now that it
        is, or refused unrun (callers send them again to the next incarnation) once this one is
        on its way out (OTP's messages queued in a mailbox before ``init`` returns)."""
        early, self._early = self._early, []
        for msg, sender in early:
            if isinstance(msg, Call):
                self._on_call(msg, sender)
            else:
                self._on_cast(msg)

    def _on_call(self, msg: Call, sender: Any) -> None:
        if not self._started and not self._exiting:
            self._early.append((msg, sender))
            return
        if self._exiting:
            self.send(sender, Reply(msg.ref, error=ErrorInfo(
                ActorRestarting.code, f"{self.name} is restarting after a crash; retry")))
            return
        self._calling = (sender, msg.ref)  # a Caller is made only for a handler that asks for it
        try:
            value = self.handle_call(msg.type, msg.payload)
        except _Stop as stop:
            self.send(sender, Reply(msg.ref, value=stop.reply))
            self.exit(normal=True, reason=stop.reason)
        except TaiError as exc:
            self.send(sender, Reply(msg.ref, error=_error_info(exc)))
        except Exception as exc:
            self.send(sender, Reply(msg.ref, error=ErrorInfo(
                ActorCrashed.code, str(exc), type(exc).__name__, {"actor": self.name, "message_type": msg.type})))
            self.crash(msg.type, exc)
        else:
            if value is not NOREPLY:
                self.send(sender, Reply(msg.ref, value=value))
        finally:
            self._calling = None

    @property
    def caller(self) -> Caller:
        """Who made the call being handled, for a handler that returns :data:`NOREPLY` and
        answers later with :meth:`reply`; there is none outside a call handler."""
        if self._calling is None:
            raise RuntimeError(f"{self.name}: only a call handler has a caller")
        return Caller(*self._calling)

    def reply(self, caller: Caller, value: Any = None, error: BaseException | None = None) -> None:
        """Answer a call whose handler returned :data:`NOREPLY` (with a value or an error: a
        :class:`TaiError` crosses as its code, any other exception as ``actor_crashed``)."""
        if error is None:
            self.send(caller.address, Reply(caller.ref, value=value))
        else:
            self.send(caller.address, Reply(caller.ref, error=_error_info(error)))

    def _on_cast(self, msg: Cast) -> None:
        if not self._started and not self._exiting:
            self._early.append((msg, None))
        elif not self._exiting:
            self._guarded(self.handle_cast, msg.type, msg.payload, message_type=msg.type)

    def _guarded(self, handler: Callable[..., Any], *args: Any, message_type: str) -> None:
        """Run a callback that has no caller to answer; a crash still ends this incarnation."""
        try:
            handler(*args)
        except _Stop as stop:
            self.exit(normal=True, reason=stop.reason)
        except TaiError as exc:
            log.warning("refused", extra={"fields": {"actor": self.name, "message_type": message_type,
                                                      "code": exc.code, "reason": exc.message}})
        except Exception as exc:
            self.crash(message_type, exc)

    def crash(self, message_type: str, exc: BaseException) -> None:
        """Let it crash: stop taking work and tell the supervisor, which ends and restarts us."""
        log.error("actor crashed", exc_info=exc, extra={"fields": {
            "actor": self.name, "incarnation": self.incarnation, "message_type": message_type}})
        self.exit(normal=False, reason=f"{type(exc).__name__}: {exc}",
                  message_type=message_type, exception=type(exc).__name__)

    def exit(self, *, normal: bool, reason: str, message_type: str = "", exception: str = "",
             report: str = "") -> None:
        if self._exiting:
            return
        self._exiting = True  # from here on, calls are refused unrun (and re-sent by callers)
        self._release_early()
        self._run_terminate(reason)  # before the name goes: what terminate answers must not
        if self._registry is not None:  # race the registry's notice that this incarnation is gone
            self.send(self._registry, Unregister(self.name, self.incarnation))
        if self._parent is not None:
            self.send(self._parent, Exiting(self.name, self.incarnation, normal, reason, message_type, exception,
                                            report))
        else:
            self.send(self.myAddress, ActorExitRequest())

    def _on_exit_request(self) -> None:
        if not self._exiting:
            self._exiting = True
            self._release_early()
            self._run_terminate("killed")

    def _run_terminate(self, reason: str) -> None:
        try:
            self.terminate(reason)
        except Exception as exc:
            log.error("terminate failed", exc_info=exc, extra={"fields": {"actor": self.name}})

    # -- hooks the two behaviours fill in -----------------------------------------------

    def start(self, msg: Init) -> None:
        """Initialise, then :meth:`confirm_started` (possibly later, for a supervisor)."""
        self.confirm_started()

    def handle_call(self, msg_type: str, payload: Any) -> Any:
        raise UnknownMessage(f"{self.name} answers no calls")

    def handle_cast(self, msg_type: str, payload: Any) -> None:
        raise UnknownMessage(f"{self.name} takes no casts")

    def handle_message(self, msg: Any, sender: Any) -> None:
        """Anything that is not a call, a cast or a runtime message."""

    def terminate(self, reason: str) -> None:
        """Last words before this incarnation ends (shutdown, normal stop or crash)."""


@dataclass
class _Outgoing:
    name: str
    msg_type: str
    payload: Any
    then: Callable[[Any, TaiError | None], None]
    deadline: float
    incarnation: str = ""


class Server(Process):
    """A worker actor with OTP ``gen_server`` semantics. See the module docstring."""

    blocking_workers: int = 8
    """Threads for :meth:`run_blocking` in this actor's process (started on first use)."""

    def __init__(self) -> None:
        super().__init__()
        self._offload: Offload | None = None
        self._handlers: dict[str, Callable[[Any], Any]] = {}  # call type -> its call_<type>, once looked up
        self._outgoing: dict[str, _Outgoing] = {}
        self._refs = call_refs()
        self._locations: dict[str, Location] = {}
        self._resolving: dict[str, list[str]] = {}
        # Call deadlines are ours, not one thespian wakeup each: thespian keeps its wakeups in a
        # list it re-sorts on every add, so at a few hundred calls/s with 5-40 s timeouts the
        # pending wakeups cost milliseconds per call. One wakeup is armed for the earliest.
        self._deadlines: list[tuple[float, str]] = []
        self._armed: float | None = None

    def _awaiting_more(self, outbox: list[tuple[Any, list[Any]]]) -> bool:
        """Other requests in flight have calls outstanding, and their answers are what a held
        message can travel with. A request's own steps (call, answer, next call, reply) follow
        each other quickly too, but holding them would only delay that one request."""
        sending = sum(isinstance(msg, Call) for _, queued in outbox for msg in queued)
        resolving = sum(len(refs) for refs in self._resolving.values())  # sent once the name resolves
        return len(self._outgoing) > sending + resolving

    def start(self, msg: Init) -> None:
        if self.init(dict(msg.args or {})) is not DEFERRED:
            self.confirm_started()

    def init(self, args: dict[str, Any]) -> Any:
        """Build fresh state (from durable storage) for this incarnation; may return
        :data:`DEFERRED` to confirm the start later."""

    def handle_call(self, msg_type: str, payload: Any) -> Any:
        handler = self._handlers.get(msg_type)  # the common case: a call_<type> already looked up
        if handler is not None:
            return handler(payload)
        if msg_type == "$info":
            cls = type(self)
            return {**self.identity(), "actor": f"{cls.__module__}:{cls.__qualname__}"}
        if msg_type == "$state":
            return self.inspect_state()
        if msg_type == "$log_level":
            return self.set_log_level(payload)
        if msg_type == "$stats":
            return self.stats()
        return self._handler("call_", msg_type)(payload)

    def handle_cast(self, msg_type: str, payload: Any) -> None:
        self._handler("cast_", msg_type)(payload)

    def _handler(self, prefix: str, msg_type: str) -> Callable[[Any], Any]:
        handler = getattr(self, prefix + msg_type, None) if msg_type.isidentifier() else None
        if handler is None:
            raise UnknownMessage(f"{self.name} has no handler for {prefix[:-1]} {msg_type!r}",
                                 detail={"actor": self.name, "message_type": msg_type})
        if prefix == "call_":
            self._handlers[msg_type] = handler
        return handler

    def handle_message(self, msg: Any, sender: Any) -> None:
        if isinstance(msg, Reply):
            self._on_reply(msg)
        elif isinstance(msg, Location):
            self._on_location(msg)
        elif isinstance(msg, Moved):
            self._on_moved(msg)
        elif isinstance(msg, WakeupMessage) and isinstance(msg.payload, _Deadline):
            self._on_deadlines(msg.payload.at)
        elif isinstance(msg, WatchMessage):
            self._on_blocking_ended()
        elif isinstance(msg, PoisonMessage) and isinstance(msg.poisonMessage, Call):
            self._redispatch(msg.poisonMessage.ref)
        elif isinstance(msg, WakeupMessage):
            self.on_timer(msg.payload)
        elif isinstance(msg, Shutdown):
            self.exit(normal=True, reason=msg.reason)
        else:
            self.handle_info(msg, sender)

    def start_timer(self, seconds: float, payload: Any = None) -> None:
        """Deliver ``payload`` to :meth:`on_timer` after ``seconds``."""
        self.wakeupAfter(timedelta(seconds=seconds), payload=payload)

    def stop(self, reason: str = "normal", reply: Any = None) -> None:
        """End this incarnation normally after the current message (replying ``reply`` to a call)."""
        raise _Stop(reason, reply)

    # -- blocking work (an outside party's HTTP call) ------------------------------------------

    def run_blocking(self, work: Callable[[], Any], *,
                     then: Callable[[Any, BaseException | None], None]) -> None:
        """Run ``work`` (blocking I/O, say an HTTP call to a slow outside party) on one of
        :attr:`blocking_workers` threads, and ``then(value, error)`` in this actor once it ends;
        meanwhile the actor goes on handling messages, so one slow party holds up only the
        request waiting on it. ``work`` must not touch the actor's state. An exception ``then``
        raises crashes the actor, as one from a handler does. On the in-process base (actors
        share the caller's thread) ``work`` and ``then`` run at once, within the handling.
        """
        if not _process.in_forked_actor():  # part of the handling that asked, as its crash would be
            try:
                value, error = work(), None
            except Exception as exc:
                value, error = None, exc
            then(value, error)
            return
        if self._offload is None:
            self._offload = Offload(self.blocking_workers)
        self._offload.submit(work, then)

    def _on_blocking_ended(self) -> None:
        if self._offload is None:  # a stray watch notice: nothing was ever offloaded
            return
        for then, value, error in self._offload.finished():
            self._guarded(then, value, error, message_type="blocking")

    def _watch(self) -> ThespianWatch | None:
        return ThespianWatch([self._offload.fileno]) if self._offload is not None and not self._exiting else None

    def _run_terminate(self, reason: str) -> None:
        super()._run_terminate(reason)
        if self._offload is not None:
            self._offload.stop()

    # -- calling other actors (never blocking) -------------------------------------------------

    def call_actor(self, name: str, msg_type: str, payload: Any = None, *,
                   then: Callable[[Any, TaiError | None], None],
                   timeout: float = DEFAULT_CALL_TIMEOUT) -> None:
        """Call the actor registered as ``name``; ``then(value, error)`` runs when it answers.

        ``error`` is a :class:`TaiError`, of the class registered for its code: the callee's
        refusal, :class:`ActorCrashed`, :class:`NoSuchActor` or :class:`CallTimeout`. A callee that
        restarts before running the call is followed to its next incarnation, as :meth:`Node.call` does.
        """
        ref = next(self._refs)
        deadline = time.monotonic() + timeout
        self._outgoing[ref] = _Outgoing(name, msg_type, payload, then, deadline)
        heapq.heappush(self._deadlines, (deadline, ref))
        self._arm_deadline()
        self._dispatch(ref)

    def _arm_deadline(self) -> None:
        """Keep one thespian wakeup armed at the earliest deadline of a call still unanswered."""
        deadlines = self._deadlines
        while deadlines and deadlines[0][1] not in self._outgoing:
            heapq.heappop(deadlines)
        if not deadlines or (self._armed is not None and self._armed <= deadlines[0][0]):
            return
        self._armed = deadlines[0][0]
        self.wakeupAfter(timedelta(seconds=max(0.0, self._armed - time.monotonic())), payload=_Deadline(self._armed))

    def _on_deadlines(self, armed: float) -> None:
        if armed == self._armed:
            self._armed = None
        now = time.monotonic()
        while self._deadlines and self._deadlines[0][0] <= now:
            self._on_deadline(heapq.heappop(self._deadlines)[1])
        self._arm_deadline()

    def _dispatch(self, ref: str, gone: str = "") -> None:
        out = self._outgoing[ref]
        location = self._locations.get(out.name)
        if location is not None and location.incarnation != gone:
            out.incarnation = location.incarnation
            self.send(location.address, Call(ref, out.msg_type, out.payload))
            return
        self._locations.pop(out.name, None)
        out.incarnation = ""
        waiting = self._resolving.setdefault(out.name, [])
        waiting.append(ref)
        if len(waiting) == 1:
            wait = min(RESOLVE_WAIT_S, max(0.0, out.deadline - time.monotonic()))
            self.send(self._registry, Whereis(out.name, wait, gone, subscribe=True))

    def _on_location(self, location: Location) -> None:
        refs = [r for r in self._resolving.pop(location.name, []) if r in self._outgoing]
        if location.address is None:
            for ref in refs:
                self._settle(ref, None, NoSuchActor(f"no actor is registered as {location.name!r}",
                                                    detail={"actor": location.name}))
            return
        self._locations[location.name] = location
        for ref in refs:
            self._dispatch(ref)

    def _on_moved(self, moved: Moved) -> None:
        """A callee incarnation is gone: forget its address, and fail the calls it never answered
        (it may have died running them, so they are not sent again: at most once)."""
        location = self._locations.get(moved.name)
        if location is not None and location.incarnation == moved.incarnation:
            del self._locations[moved.name]
        lost = [ref for ref, out in self._outgoing.items()
                if out.name == moved.name and out.incarnation == moved.incarnation]
        for ref in lost:
            self._settle(ref, None, ActorCrashed(f"{moved.name} exited before answering",
                                                 detail={"actor": moved.name,
                                                         "message_type": self._outgoing[ref].msg_type}))
        self._guarded(self.on_down, moved.name, moved.incarnation, message_type="down")

    def _on_reply(self, reply: Reply) -> None:
        if reply.error is not None and reply.error.code == ActorRestarting.code:
            self._redispatch(reply.ref)
        elif reply.error is not None:
            self._settle(reply.ref, None, error_from(reply.error))
        else:
            self._settle(reply.ref, reply.value, None)

    def _redispatch(self, ref: str) -> None:
        """The callee was on its way out and did not run the call: follow it to its successor."""
        out = self._outgoing.get(ref)
        if out is not None:
            self._dispatch(ref, gone=out.incarnation)

    def _on_deadline(self, ref: str) -> None:
        out = self._outgoing.get(ref)
        if out is not None and ref in self._resolving.get(out.name, ()):
            self._settle(ref, None, NoSuchActor(f"no actor was registered as {out.name!r} within the call timeout",
                                                detail={"actor": out.name}))
        elif out is not None:
            self._settle(ref, None, CallTimeout(
                f"no reply from {out.name!r} to {out.msg_type!r} within the call timeout",
                detail={"actor": out.name, "message_type": out.msg_type}))

    def _settle(self, ref: str, value: Any, error: TaiError | None) -> None:
        out = self._outgoing.pop(ref, None)
        if out is not None:
            self._guarded(out.then, value, error, message_type=f"reply:{out.msg_type}")

    def on_timer(self, payload: Any) -> None:
        """A timer set with :meth:`start_timer` fired."""

    def on_down(self, name: str, incarnation: str) -> None:
        """An incarnation of ``name``, an actor this one has called, is gone (OTP's ``'DOWN'``
        message of a monitor): its address is forgotten and the calls it never answered have
        failed. A subscriber re-subscribes here, for instance."""

    def handle_info(self, msg: Any, sender: Any) -> None:
        """Any other message; by default ignored."""

    def inspect_state(self) -> dict[str, Any]:
        """A JSON-able view of the state, for the remote shell's ``state NAME``."""
        return {}


@dataclass(frozen=True)
class _Flush:
    """The wakeup that ends holding messages for :attr:`Process.coalesce_s`."""


@dataclass(frozen=True)
class _Deadline:
    at: float  # the monotonic time it was armed for


def _error_info(exc: BaseException) -> ErrorInfo:
    if isinstance(exc, TaiError):
        return ErrorInfo(exc.code, exc.message, type(exc).__name__, exc.detail)
    return ErrorInfo(ActorCrashed.code, str(exc), type(exc).__name__)

