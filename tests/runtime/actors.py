"""Actors for the runtime tests (importable: multiprocess bases re-create them by module path)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tai_autonomics.errors import TaiError
from tai_autonomics.runtime import DEFERRED, NOREPLY, Server
from tai_autonomics.runtime.messages import Batch, Moved, Shutdown


def record(path: str | None, line: str) -> None:
    """Append one event line; O_APPEND writes of a short line are atomic across processes."""
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(line + "\n")


def events(path) -> list[str]:
    try:
        return path.read_text().splitlines()
    except FileNotFoundError:
        return []


class Echo(Server):
    """Answers calls; crashes on request; records its starts and stops in ``args['log']``."""

    def init(self, args: dict[str, Any]) -> None:
        self.seen = 0
        self.log = args.get("log")
        if args.get("fail_init"):
            raise RuntimeError("init refused on purpose")
        record(self.log, f"start {self.name}")

    def terminate(self, reason: str) -> None:
        record(self.log, f"stop {self.name} {reason}")

    def call_echo(self, payload: Any) -> Any:
        self.seen += 1
        return payload

    def call_seen(self, payload: Any) -> int:
        return self.seen

    def call_crash(self, payload: Any) -> None:
        raise ValueError(f"boom: {payload}")

    def cast_crash(self, payload: Any) -> None:
        raise ValueError("cast boom")

    def call_answer_after_notice(self, payload: Any) -> Any:
        """Send the caller the registry's exit notice for this incarnation, then the answer (one
        sender: they arrive in that order), as when the callee answers and exits at once."""
        self.send(self.caller.address, Moved(self.name, self.incarnation))
        return payload

    def call_refuse(self, payload: Any) -> None:
        raise TaiError("refused on purpose", code="refused", detail={"why": payload})

    def call_stop(self, payload: Any) -> str:
        self.stop("normal", reply="bye")

    def call_sleep(self, seconds: float) -> float:
        record(self.log, f"sleep {self.name}")
        time.sleep(seconds)
        return seconds

    def inspect_state(self) -> dict[str, Any]:
        return {"seen": self.seen}


class Deaf(Echo):
    """Ignores the supervisor's shutdown request."""

    def handle_message(self, msg: Any, sender: Any) -> None:
        if not isinstance(msg, Shutdown):
            super().handle_message(msg, sender)


class Stubborn(Echo):
    """Hangs in its cleanup far longer than its shutdown allows."""

    def terminate(self, reason: str) -> None:
        if reason == "shutdown":
            time.sleep(60)


class Crasher(Echo):
    """Crashes by itself shortly after every start (drives a tree to escalation)."""

    def init(self, args: dict[str, Any]) -> None:
        super().init(args)
        self.start_timer(0.05, "crash")

    def on_timer(self, payload: Any) -> None:
        raise RuntimeError("crashing on schedule")


class Relay(Echo):
    """Calls another actor on its caller's behalf and answers later (never blocking)."""

    def call_relay(self, request: dict[str, Any]) -> Any:
        caller = self.caller
        self.call_actor(request["to"], request["type"], request.get("payload"), timeout=request.get("timeout", 5.0),
                        then=lambda value, error: self.reply(caller, value, error))
        return NOREPLY

    def call_relay_then_crash(self, request: dict[str, Any]) -> Any:
        self.call_actor(request["to"], "echo", 1, then=self._explode)
        return "sent"

    def _explode(self, value: Any, error: TaiError | None) -> None:
        raise RuntimeError("crash in a reply callback")


class SlowStarter(Echo):
    """Confirms its start only after asking another actor (a deferred start)."""

    def init(self, args: dict[str, Any]) -> Any:
        super().init(args)
        self.call_actor(args["ask"], "echo", args.get("answer", "ok"), then=self._decided)
        return DEFERRED

    def _decided(self, value: Any, error: BaseException | None) -> None:
        if error is None and value == "ok":
            record(self.log, f"confirmed {self.name}")
            self.confirm_started()
        else:
            self.fail_start(f"dependency said {value!r}")


class Coalescing(Echo):
    """Counts the thespian messages that arrive as a :class:`Batch`; fans calls out and holds
    callers to show what one handler sends to one receiver travels together."""

    def init(self, args: dict[str, Any]) -> None:
        super().init(args)
        self.batches: list[int] = []
        self.held: list[Any] = []

    def receiveMessage(self, msg: Any, sender: Any) -> None:
        if isinstance(msg, Batch):
            self.batches.append(len(msg.messages))
        super().receiveMessage(msg, sender)

    def call_batches(self, _payload: Any) -> list[int]:
        return list(self.batches)

    def call_fan_out(self, request: dict[str, Any]) -> Any:
        """Call ``to`` with each of ``payloads`` from this one handler; answer all the results."""
        caller, results = self.caller, {}
        payloads = request["payloads"]

        def collect(index: int, value: Any, error: BaseException | None) -> None:
            results[index] = error.code if error is not None else value
            if len(results) == len(payloads):
                self.reply(caller, [results[i] for i in range(len(payloads))])

        for index, payload in enumerate(payloads):
            self.call_actor(request["to"], "echo", payload,
                            then=lambda value, error, index=index: collect(index, value, error))
        return NOREPLY

    def call_hold(self, _payload: Any) -> Any:
        self.held.append(self.caller)
        return NOREPLY

    def call_release_and_echo(self, payload: Any) -> Any:
        """Answer every held caller and this call in the same handling."""
        for caller in self.held:
            self.reply(caller, "late")
        self.held.clear()
        return payload


class Lingering(Coalescing):
    """Holds what it sends while casts stream in, so one thespian message carries many calls."""

    coalesce_s = 0.05

    def init(self, args: dict[str, Any]) -> None:
        super().init(args)
        self.answers: list[Any] = []

    def cast_forward(self, request: dict[str, Any]) -> None:
        self.call_actor(request["to"], "echo", request["payload"],
                        then=lambda value, error: self.answers.append(error.code if error else value))

    def call_answers(self, _payload: Any) -> list[Any]:
        return sorted(self.answers)


class Relaying(Coalescing):
    """Holds for 5 s while requests stream in (arrive less than that apart); relays a call."""

    coalesce_s = 5.0

    def call_relay(self, request: dict[str, Any]) -> Any:
        caller = self.caller
        self.call_actor(request["to"], "echo", request["payload"],
                        then=lambda value, error: self.reply(caller, error.code if error else value))
        return NOREPLY


class Offloading(Echo):
    """Waits on slow work off its thread (``run_blocking``) and keeps answering meanwhile."""

    def init(self, args: dict[str, Any]) -> None:
        super().init(args)
        self.slow_started = 0

    def call_slow(self, seconds: float) -> Any:
        self.slow_started += 1
        caller = self.caller
        self.run_blocking(lambda: time.sleep(seconds) or seconds, then=lambda value, error: self.reply(caller, value))
        return NOREPLY

    def call_fail_off_thread(self, _payload: Any) -> Any:
        def reraise(_value: Any, error: BaseException | None) -> None:
            raise RuntimeError(f"the work failed: {error}")

        self.run_blocking(lambda: 1 / 0, then=reraise)
        return NOREPLY

    def call_slow_started(self, _payload: Any) -> int:
        return self.slow_started


class Traced(Server):
    """The worker of the differential test against Erlang/OTP (test_otp_differential): records
    its starts and stops with OTP's exit reasons (``crash`` for an exception), crashes or stops
    with a given reason on request, takes ``slow_stop_ms`` to stop when shut down, and refuses
    as many starts as the file ``LOG.refuse.NAME`` says, as the Erlang side's gen_server does."""

    def init(self, args: dict[str, Any]) -> None:
        self.log = args["log"]
        self.slow_stop_s = args.get("slow_stop_ms", 0) / 1000
        refusals = Path(f"{self.log}.refuse.{self.name}")  # written by the test: starts left to refuse
        if refusals.exists() and int(refusals.read_text()) > 0:
            refusals.write_text(str(int(refusals.read_text()) - 1))
            record(self.log, f"refuse {self.name}")
            raise RuntimeError("refused to start on request")
        record(self.log, f"start {self.name}")

    def terminate(self, reason: str) -> None:
        record(self.log, f"stop {self.name} {'crash' if reason == CRASH_REASON else reason}")
        if reason == "shutdown":
            time.sleep(self.slow_stop_s)  # a slow cleanup is what such a worker plays

    def call_crash(self, _payload: Any) -> None:
        raise RuntimeError("on request")

    def call_stop(self, reason: str) -> None:
        self.stop(reason, reply="ok")


CRASH_REASON = "RuntimeError: on request"
