"""Bare thespian actors: the baselines our runtime is measured against (importable by forks)."""

from __future__ import annotations

import os

from thespian.actors import Actor, ChildActorExited

from tai_autonomics.runtime import Server


class BareEcho(Actor):
    """What a raw thespian ``ask`` costs: reply with the message, nothing else."""

    def receiveMessage(self, msg, sender):
        if isinstance(msg, (int, str, tuple)):
            self.send(sender, msg if msg != "pid" else os.getpid())


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
