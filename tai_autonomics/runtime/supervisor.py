"""The supervisor behaviour (OTP's ``supervisor``) on a thespian actor.

thespian delivers everything as messages and no actor may block, so the supervisor is one
explicit state machine. Work is a *plan*: a queue of steps (start this child, stop that one)
run one at a time, each finished by the event it waits for (``Started``,
``ChildActorExited``) or by its timer. A child that dies while a plan runs is queued and decided
when the plan is done. Every restart decision is made in :meth:`Supervisor._decide`.

Phases: ``starting`` (initial ordered start; a failure fails the whole start) → ``running`` →
``stopping`` (a shutdown from the parent, or giving up after too many restarts; children are
stopped in reverse order, then the supervisor reports ``Exiting`` to its own parent) →
``stopped``.

The semantics are OTP's ``supervisor``, checked against Erlang/OTP by
tests/runtime/test_otp_differential.py (scenarios in docs/supervision.md). In particular: a
temporary child that ``one_for_all`` or ``rest_for_one`` stops because a sibling died is removed,
not restarted; a supervisor that reaches its maximum restart intensity exits with reason
``shutdown`` (a ``transient`` parent leaves it stopped), the why in :attr:`Exiting.report`; a
child's death noticed while a restart already replaced it is not decided again; a child whose
process is gone is taken for dead even when thespian never says so (:meth:`_check_liveness`).
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections import deque
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

from thespian.actors import ActorExitRequest, ChildActorExited, WakeupMessage

from tai_autonomics.runtime import _process
from tai_autonomics.runtime.errors import NoSuchActor, SupervisorBusy, UnknownMessage
from tai_autonomics.runtime.intensity import RestartIntensity
from tai_autonomics.runtime.messages import (
    Exiting,
    Init,
    Register,
    Shutdown,
    Started,
    StartFailed,
    Unregister,
)
from tai_autonomics.runtime.server import Process
from tai_autonomics.runtime.spec import ChildSpec, SupervisorSpec

log = logging.getLogger(__name__)

START_TIMEOUT_S = 30.0
KILL_CONFIRM_S = 5.0
KILL_POLL_S = 0.01
"""How often a supervisor looks whether a child it SIGKILLed is gone: thespian's notice of the
death (``ChildActorExited``) can take seconds, or not come, when children die close together."""
LIVENESS_S = 0.25
"""How often a supervisor looks whether its children's processes are still there, for a death
thespian never reports: of three children SIGKILLed at once, one often goes unreported for good
(tests/runtime/test_otp_differential.py), where an OTP link always tells."""

Phase = Literal["starting", "running", "stopping", "stopped"]
ChildState = Literal["stopped", "starting", "running", "stopping"]
_Timer = Literal["start_timeout", "shutdown_timeout", "kill_confirm"]
_LIVENESS = "liveness"


@dataclass
class _Child:
    spec: ChildSpec
    address: Any = None
    incarnation: str = ""
    pid: int = 0
    state: ChildState = "stopped"
    exit: Exiting | None = None
    restarts: int = 0
    last_crash: dict[str, Any] | None = None
    """The last exit that counted as a crash (reason, exception, message type, wall-clock time):
    it outlives the incarnation it ended, so an operator sees why a child restarted."""

    @property
    def alive(self) -> bool:
        return self.state != "stopped"


@dataclass
class _Step:
    action: Literal["start", "stop"]
    child: _Child
    reason: str = "shutdown"  # of a stop: what the child's terminate hook is told
    forget: bool = False  # of a stop: remove the child once stopped (a temporary one is never restarted)


class Supervisor(Process):
    """Starts, watches and restarts children as its :class:`SupervisorSpec` says."""

    def __init__(self) -> None:
        super().__init__()
        # sent and logged once a handling has started any replacement (see _after_handling)
        self._unregisters: list[Unregister] = []
        self._crash_reports: list[dict[str, Any]] = []

    def start(self, msg: Init) -> None:
        self.spec: SupervisorSpec = msg.spec
        self._intensity = RestartIntensity(self.spec.intensity, self.spec.period)
        self._children = [_Child(spec) for spec in self.spec.children]
        self._plan: deque[_Step] = deque()
        self._current: _Step | None = None
        self._deaths: deque[tuple[_Child, str]] = deque()  # and the incarnation that died
        self._phase: Phase = "starting"
        self._give_up_reason = ""
        self._start_error = ""
        self._timer_seq = 0
        self._kill_deadline = 0.0
        self._plan.extend(_Step("start", child) for child in self._children)
        if _process.in_forked_actor():
            self.wakeupAfter(timedelta(seconds=LIVENESS_S), payload=_LIVENESS)
        self._advance()

    # -- events ---------------------------------------------------------------------------

    def _handle_one(self, msg: Any, sender: Any) -> None:
        try:
            super()._handle_one(msg, sender)
        finally:
            self._after_handling()

    def _after_handling(self) -> None:
        """Tell the registry which incarnations are gone and log the crash reports only now,
        after the handling has forked any replacement: a restart waits for that fork and the new
        child's start, not for these (each a transmit, about 0.2-1 ms on a busy machine). The
        registry forgets an incarnation anyway when its successor registers."""
        while self._unregisters:
            self.send(self._registry, self._unregisters.pop(0))
        while self._crash_reports:
            log.error("crash report", extra={"fields": self._crash_reports.pop(0)})

    def handle_message(self, msg: Any, sender: Any) -> None:
        if isinstance(msg, Started):
            self._on_started(msg)
        elif isinstance(msg, StartFailed):
            self._on_start_failed(self._by_name(msg.name), msg.reason)
        elif isinstance(msg, Exiting):
            self._on_exiting(msg)
        elif isinstance(msg, ChildActorExited):
            self._on_child_exited(msg.childAddress)
        elif isinstance(msg, WakeupMessage) and msg.payload == _LIVENESS:
            self._check_liveness()
        elif isinstance(msg, WakeupMessage):
            self._on_timer(msg.payload)
        elif isinstance(msg, Shutdown):
            self._stop_all(msg.reason)

    def _on_started(self, msg: Started) -> None:
        child = self._by_name(msg.name)
        if child is None or child.incarnation != msg.incarnation or child.state != "starting":
            return
        child.state, child.pid = "running", msg.pid
        log.info("child started", extra={"fields": {
            "event": "child_started", "supervisor": self.name, "child": child.spec.name,
            "incarnation": child.incarnation, "pid": msg.pid, "restarts": child.restarts}})
        if self._is_current("start", child):
            self._step_done()

    def _on_start_failed(self, child: _Child | None, reason: str) -> None:
        if child is None or child.state != "starting":
            return
        child.exit = Exiting(child.spec.name, child.incarnation, False, f"start failed: {reason}")
        self._end(child)
        self._start_failure(child, child.exit.reason)

    def _start_failure(self, child: _Child, reason: str) -> None:
        """A child did not start: fatal during the initial start, a crash afterwards."""
        if self._phase == "starting" and not self._start_error:
            self._start_error = f"child {child.spec.name!r} failed to start: {reason}"
            self._plan.clear()
        if self._is_current("start", child):
            self._step_done()

    def _on_exiting(self, msg: Exiting) -> None:
        child = self._by_name(msg.name)
        if child is None or child.incarnation != msg.incarnation:
            return
        child.exit = msg
        if child.state == "running":
            child.state = "stopping"
        self._end(child)

    def _on_child_exited(self, address: Any) -> None:
        child = next((c for c in self._children if c.address == address and c.alive), None)
        if child is None:
            return
        was_starting = child.state == "starting"
        self._gone(child)
        if self._is_current("stop", child):
            self._stop_done()
            return
        if was_starting:
            if child.exit is None:
                child.exit = Exiting(child.spec.name, child.incarnation, False, "exited while starting")
            self._start_failure(child, child.exit.reason)
        if self._phase in ("starting", "running") and not self._start_error:
            self._deaths.append((child, child.incarnation))
            self._advance()

    def _check_liveness(self) -> None:
        """Take a child whose process has ended for dead, whether or not thespian said so."""
        for child in list(self._children):
            if child.alive and child.pid and child.pid != os.getpid() and _process.exited(child.pid):
                log.warning("child process gone unreported", extra={"fields": {
                    "event": "child_gone_unreported", "supervisor": self.name, "child": child.spec.name,
                    "pid": child.pid}})
                self._on_child_exited(child.address)
        if self._phase != "stopped":
            self.wakeupAfter(timedelta(seconds=LIVENESS_S), payload=_LIVENESS)

    def _on_timer(self, payload: Any) -> None:
        kind, seq = payload
        step = self._current
        if step is None or seq != self._timer_seq:
            return
        child = step.child
        if kind == "start_timeout":
            self._on_start_failed(child, f"did not confirm its start within {START_TIMEOUT_S:g} s")
        elif kind == "shutdown_timeout":
            log.warning("child ignored shutdown; killing it", extra={"fields": {
                "event": "child_killed", "supervisor": self.name, "child": child.spec.name,
                "shutdown": str(child.spec.shutdown)}})
            self._kill(child)
        elif kind == "kill_confirm":
            killed = child.pid and child.pid != os.getpid() and _process.exited(child.pid)
            if killed or time.monotonic() >= self._kill_deadline:
                self._gone(child)  # without waiting for thespian's notice (or after giving up on it)
                self._stop_done()
            else:
                self._arm_timer("kill_confirm", KILL_POLL_S)

    # -- the plan -------------------------------------------------------------------------

    def _advance(self) -> None:
        while self._current is None:
            if self._plan:
                self._run(self._plan.popleft())
            elif self._deaths and self._phase == "running":
                self._decide(*self._deaths.popleft())
            elif not self._plan_finished():
                return

    def _run(self, step: _Step) -> None:
        if step.action == "start":
            self._current = step
            self._start_child(step.child)
        elif step.child.alive:
            self._current = step
            self._stop_child(step.child, step.reason)
        elif step.forget:
            self._forget(step.child)

    def _step_done(self) -> None:
        self._current = None
        self._timer_seq += 1
        self._advance()

    def _stop_done(self) -> None:
        if self._current is not None and self._current.forget:
            self._forget(self._current.child)
        self._step_done()

    def _forget(self, child: _Child) -> None:
        if child in self._children:
            self._children.remove(child)

    def _is_current(self, action: str, child: _Child) -> bool:
        return self._current is not None and self._current.action == action and self._current.child is child

    def _plan_finished(self) -> bool:
        """The plan ran dry: move on to the next phase. True if that queued more work."""
        if self._phase == "starting" and not self._start_error:
            self._phase = "running"
            self.confirm_started()
            return bool(self._deaths)
        if self._phase == "starting":  # undo a failed start in reverse order, then report it
            alive = [c for c in reversed(self._children) if c.alive]
            if alive:
                self._plan.extend(_Step("stop", c) for c in alive)
                return True
            self._phase = "stopped"
            self._exiting = True
            self.send(self._parent, StartFailed(self.name, self._start_error))
            self._release_early()
        elif self._phase == "stopping":  # giving up too: OTP's supervisor exits `shutdown` then
            self._phase = "stopped"
            self.exit(normal=True, reason="shutdown", report=self._give_up_reason)
        return False

    def _start_child(self, child: _Child) -> None:
        spec = child.spec
        child.incarnation = f"{spec.name}.{uuid.uuid4().hex[:12]}"
        child.exit = None
        child.pid = 0
        child.state = "starting"
        if isinstance(spec, SupervisorSpec):
            child.address = self.createActor(Supervisor)
            init = Init(spec.name, child.incarnation, {}, self._registry, spec, log_level=self._log_level)
        else:
            child.address = self.createActor(spec.actor_class())
            init = Init(spec.name, child.incarnation, spec.args, self._registry, log_level=self._log_level)
        self.send(child.address, init)
        if self._registry is not None:
            self.send(self._registry, Register(spec.name, child.address, child.incarnation, self._forked_pid()))
        self._arm_timer("start_timeout", START_TIMEOUT_S)

    def _forked_pid(self) -> int:
        """The process of the child just created (this process on the in-process base).

        The child is registered as it is created, as OTP registers a name before ``init`` runs:
        a restart's callers learn the new address while the process starts, not after it has
        confirmed its start (a registration from the child, or from here on ``Started``, is two
        to three more hops on the restart's path). Its calls wait in it until the start is
        confirmed (:meth:`Process._release_early`). thespian holds the registration until the
        child has announced its address, as it holds ``Init``."""
        if not _process.in_forked_actor():
            return os.getpid()
        return int(self._myRef._child_procs[-1].childProc.pid)

    def _stop_child(self, child: _Child, reason: str) -> None:
        shutdown = child.spec.shutdown
        if shutdown.kind == "brutal_kill":
            self._kill(child)
            return
        if child.state == "running":
            child.state = "stopping"
            self.send(child.address, Shutdown(reason))
        else:
            self._end(child)
        if shutdown.seconds is not None:
            self._arm_timer("shutdown_timeout", shutdown.seconds)

    def _end(self, child: _Child) -> None:
        """Ask thespian to end a child that has finished (or must finish) its work."""
        if child.alive:
            self.send(child.address, ActorExitRequest())

    def _kill(self, child: _Child) -> None:
        """SIGKILL a child (OTP's ``exit(Child, kill)``); the stop ends once its process is gone."""
        self._kill_deadline = time.monotonic() + KILL_CONFIRM_S
        if child.pid and child.pid != os.getpid():
            _process.kill(child.pid)
            self._arm_timer("kill_confirm", KILL_POLL_S)
        else:
            self.send(child.address, ActorExitRequest())
            self._arm_timer("kill_confirm", KILL_CONFIRM_S)

    def _gone(self, child: _Child) -> None:
        """A child's process has ended: its name goes (it could not unregister itself if killed)."""
        child.state = "stopped"
        if self._registry is not None:
            self._unregisters.append(Unregister(child.spec.name, child.incarnation))

    def _arm_timer(self, kind: _Timer, seconds: float) -> None:
        self._timer_seq += 1
        self.wakeupAfter(timedelta(seconds=seconds), payload=(kind, self._timer_seq))

    # -- decisions --------------------------------------------------------------------------

    def _decide(self, child: _Child, incarnation: str) -> None:
        """The one place that decides what a child's exit leads to."""
        if child.incarnation != incarnation or child.alive or child not in self._children:
            return  # a restart (or a stop) already dealt with that incarnation, as OTP's does
        exit_ = child.exit or Exiting(child.spec.name, child.incarnation, False, "killed")
        restart = child.spec.restart
        if restart == "temporary" or (restart == "transient" and exit_.normal):
            log.info("child exited, not restarted", extra={"fields": {
                "event": "child_exited", "supervisor": self.name, "child": child.spec.name,
                "reason": exit_.reason, "restart": restart}})
            if restart == "temporary":
                self._children.remove(child)
            return
        child.last_crash = {"reason": exit_.reason, "exception": exit_.exception or None,
                            "message_type": exit_.message_type or None, "time": round(time.time(), 3)}
        within_intensity = self._intensity.record(time.monotonic())
        self._crash_reports.append({
            "event": "crash_report", "supervisor": self.name, "actor": child.spec.name,
            "incarnation": child.incarnation, "message_type": exit_.message_type,
            "exception": exit_.exception, "reason": exit_.reason, "restart_count": child.restarts,
            "restarts_in_period": self._intensity.recent})
        if not within_intensity:
            self._after_handling()  # no replacement to wait for: the report precedes the giving up
            self._give_up(child)
            return
        targets = self._restart_targets(child)
        # OTP stops the siblings in reverse start order; temporary ones are removed, not restarted
        self._plan.extend(_Step("stop", t, forget=t.spec.restart == "temporary")
                          for t in reversed(targets) if t is not child)
        for target in targets:
            if target.spec.restart != "temporary":
                target.restarts += 1
                self._plan.append(_Step("start", target))

    def _restart_targets(self, child: _Child) -> list[_Child]:
        if self.spec.strategy == "one_for_all":
            return list(self._children)
        if self.spec.strategy == "rest_for_one":
            return self._children[self._children.index(child):]
        return [child]

    def _give_up(self, child: _Child) -> None:
        reason = (f"reached_max_restart_intensity: more than {self.spec.intensity} restarts in "
                  f"{self.spec.period:g} s (last: {child.spec.name})")
        log.critical("supervisor giving up", extra={"fields": {
            "event": "supervisor_gave_up", "supervisor": self.name, "reason": reason}})
        self._give_up_reason = reason
        self._stop_all("shutdown")

    def _stop_all(self, reason: str) -> None:
        if self._phase in ("stopping", "stopped"):
            return
        self._phase = "stopping"
        self._plan.clear()
        self._deaths.clear()
        self._plan.extend(_Step("stop", c, reason) for c in reversed(self._children) if c.alive)
        self._advance()

    # -- calls --------------------------------------------------------------------------------

    def handle_call(self, msg_type: str, payload: Any) -> Any:
        if msg_type == "which_children":
            return [self._describe(c) for c in self._children]
        if msg_type == "count_children":
            kinds = [isinstance(c.spec, SupervisorSpec) for c in self._children]
            return {"specs": len(kinds), "active": sum(c.state == "running" for c in self._children),
                    "supervisors": sum(kinds), "workers": len(kinds) - sum(kinds)}
        if msg_type == "$info":
            return {**self.identity(), "strategy": self.spec.strategy, "phase": self._phase}
        if msg_type == "restart_child":
            return self._restart_child(payload)
        if msg_type == "$state":
            return {"strategy": self.spec.strategy, "intensity": self.spec.intensity, "period": self.spec.period,
                    "phase": self._phase, "restarts_in_period": self._intensity.recent,
                    "idle": self._current is None and not self._plan and not self._deaths,
                    "children": [c.spec.name for c in self._children]}
        if msg_type == "$log_level":
            return self.set_log_level(payload)
        if msg_type == "$stats":
            return self.stats()
        raise UnknownMessage(f"supervisor {self.name} has no call {msg_type!r}")

    def _restart_child(self, name: Any) -> Any:
        child = self._by_name(name) if isinstance(name, str) else None
        if child is None:
            raise NoSuchActor(f"supervisor {self.name} has no child {name!r}")
        if self._phase != "running":
            raise SupervisorBusy(f"supervisor {self.name} is {self._phase}")
        self._plan.append(_Step("stop", child, "restart"))
        self._plan.append(_Step("start", child))
        self._advance()
        return {"restarting": name}

    def _describe(self, child: _Child) -> dict[str, Any]:
        return {"name": child.spec.name,
                "type": "supervisor" if isinstance(child.spec, SupervisorSpec) else "worker",
                "restart": child.spec.restart, "state": child.state, "incarnation": child.incarnation,
                "pid": child.pid, "restarts": child.restarts, "last_crash": child.last_crash}

    def _by_name(self, name: str) -> _Child | None:
        return next((c for c in self._children if c.spec.name == name), None)
