"""Bare thespian actors: the baselines our runtime is measured against (importable by forks)."""

from __future__ import annotations

import os
import time

from thespian.actors import Actor, ChildActorExited

from tai_autonomics.runtime import NOREPLY, Server


class BareEcho(Actor):
    """What a raw thespian ``ask`` costs: reply with the message, nothing else."""

    def receiveMessage(self, msg, sender):
        if isinstance(msg, (int, str, tuple)):
            self.send(sender, msg if msg != "pid" else os.getpid())


class Pinger(Actor):
    """Actor↔actor round trips: on ``("ping", echo, n)`` it sends ``echo`` n numbers one after
    the other, each after the previous answer, and answers the asker with the seconds taken."""

    def receiveMessage(self, msg, sender):
        if isinstance(msg, tuple) and msg[0] == "ping":
            _, self.echo, self.left = msg
            self.asker, self.started = sender, time.perf_counter()
            self.send(self.echo, self.left)
        elif isinstance(msg, int) and sender == getattr(self, "echo", None):
            self.left -= 1
            if self.left:
                self.send(self.echo, self.left)
            else:
                self.send(self.asker, time.perf_counter() - self.started)


class BareParent(Actor):
    """Re-creates its child the moment thespian reports it dead, and hands the new address to
    whoever asked for "the child after X": a bare-thespian restart plus name lookup."""

    def receiveMessage(self, msg, sender):
        if msg == "start":
            self.child = self.createActor(BareEcho)
            self.waiting = []
            self.send(sender, self.child)
        elif isinstance(msg, ChildActorExited):
            self.child = self.createActor(BareEcho)
            for waiter in self.waiting:
                self.send(waiter, self.child)
            self.waiting = []
        elif isinstance(msg, tuple) and msg[0] == "child_after":
            if self.child == msg[1]:
                self.waiting.append(sender)
            else:
                self.send(sender, self.child)


class Echo(Server):
    def call_echo(self, payload):
        return payload


class AppendLoad(Server):
    """Concurrent appends to the ReceiptLedger from one actor process (the load of the ledger
    bench and of the ledger actor tests).

    ``start`` sends ``drafts`` in calls of ``per_call`` drafts (1: ``append``, more:
    ``append_many``), with at most ``window`` calls awaiting their reply at any moment;
    ``progress`` counts the drafts answered so far; ``results`` answers once all are: per draft,
    in order, ``{"receipt": ...}`` or ``{"error": code}``, each draft's call latency (s), and
    the run's start and end (monotonic s, comparable across processes).

    ``start`` is a call, answered as the run begins: a cast followed by a call could arrive in the
    other order on multiprocTCPBase (one connection per message).
    """

    def init(self, args):
        self.run = None

    def call_start(self, request):
        drafts = request["drafts"]
        self.run = {"to": request.get("to", "ReceiptLedger"), "drafts": drafts, "per_call": request.get("per_call", 1),
                    "next": 0, "answered": 0, "results": [None] * len(drafts), "latencies": [0.0] * len(drafts),
                    "start": time.monotonic(), "end": None if drafts else time.monotonic(), "waiting": []}
        for _ in range(request.get("window", 1)):
            self._send_next()
        return len(drafts)

    def _send_next(self):
        run = self.run
        first = run["next"]
        last = min(first + run["per_call"], len(run["drafts"]))
        if first == last:
            return
        run["next"] = last
        sent = time.monotonic()

        def then(value, error):
            outcomes = _outcomes(value, error, last - first, many=run["per_call"] > 1)
            for index, outcome in enumerate(outcomes, first):
                run["latencies"][index] = time.monotonic() - sent
                run["results"][index] = outcome
            run["answered"] += last - first
            self._send_next()
            if run["answered"] == len(run["drafts"]):
                run["end"] = time.monotonic()
                for caller in run["waiting"]:
                    self.reply(caller, self._summary())

        if run["per_call"] > 1:
            self.call_actor(run["to"], "append_many", {"drafts": run["drafts"][first:last]}, then=then, timeout=30.0)
        else:
            self.call_actor(run["to"], "append", run["drafts"][first], then=then, timeout=30.0)

    def call_progress(self, payload):
        return self.run["answered"]

    def call_results(self, payload):
        if self.run["end"] is None:
            self.run["waiting"].append(self.caller)
            return NOREPLY
        return self._summary()

    def _summary(self):
        run = self.run
        return {"results": run["results"], "latencies": run["latencies"], "start": run["start"], "end": run["end"]}


def _outcomes(value, error, count, *, many):
    if error is not None:
        return [{"error": error.code}] * count
    if not many:
        return [{"receipt": value}]
    return [outcome if "receipt" in outcome else {"error": outcome["error"]["code"]} for outcome in value]


class AppendSink(Server):
    """Answers ``append`` and ``append_many`` at once without storing anything: what the same load
    costs in messages alone (the transport's ceiling for the ReceiptLedger)."""

    def call_append(self, draft):
        return draft

    def call_append_many(self, request):
        return [{"receipt": draft} for draft in request["drafts"]]
