"""The name registry: callers address actors by name, across restarts.

A restarted actor has a new thespian address, so names cannot be thespian ``globalName``s
(those keep pointing at the dead incarnation on some bases). Supervisors register each child
as they create it (as OTP registers a name before ``init``: calls that reach it early wait in it
until its start is confirmed) and unregister it when it exits; a lookup for a name that is
between incarnations waits (without polling) until it is registered again or the caller's
timeout runs out.
"""

from __future__ import annotations

import itertools
import os
from datetime import timedelta
from typing import Any

from thespian.actors import Actor, WakeupMessage

from tai_autonomics.runtime import _process
from tai_autonomics.runtime.messages import (
    ListNames,
    Location,
    Moved,
    Register,
    Registered,
    Unregister,
    Whereis,
)


class Registry(Actor):
    def __init__(self) -> None:
        super().__init__()
        self._entries: dict[str, Location] = {}
        self._waiters: dict[str, dict[int, Any]] = {}
        # name -> [subscriber, the incarnation it was given ("" while it waits or got none)]
        # (thespian addresses compare but do not hash): a subscription is to the incarnation
        # handed out, so the departure of the one that was current while a caller waited for its
        # successor does not use up the notice the caller needs when that successor goes
        self._subscribers: dict[str, list[list[Any]]] = {}
        self._ids = itertools.count()
        _process.die_with_parent()

    def receiveMessage(self, msg: Any, sender: Any) -> None:
        if isinstance(msg, Register):
            location = Location(msg.name, msg.address, msg.incarnation, msg.pid)
            self._gone(msg.name)
            self._entries[msg.name] = location
            for waiter in self._waiters.pop(msg.name, {}).values():
                self._give(waiter, location)
        elif isinstance(msg, Unregister):
            current = self._entries.get(msg.name)
            if current is not None and current.incarnation == msg.incarnation:
                self._gone(msg.name)
        elif isinstance(msg, Whereis):
            self._whereis(msg, sender)
        elif isinstance(msg, ListNames):
            entries = {n: (e.incarnation, e.pid) for n, e in self._entries.items()}
            self.send(sender, Registered(entries, os.getpid(), os.getppid()))
        elif isinstance(msg, WakeupMessage):
            name, waiter_id = msg.payload
            waiter = self._waiters.get(name, {}).pop(waiter_id, None)
            if waiter is not None:
                self.send(waiter, Location(name))

    def _gone(self, name: str) -> None:
        """The current incarnation of ``name`` is no more: tell whoever was given it."""
        location = self._entries.pop(name, None)
        if location is None:
            return
        told = [entry for entry in self._subscribers.get(name, []) if entry[1] == location.incarnation]
        for entry in told:
            self._subscribers[name].remove(entry)
            self.send(entry[0], Moved(name, location.incarnation))

    def _give(self, to: Any, location: Location) -> None:
        for entry in self._subscribers.get(location.name, []):
            if entry[0] == to:
                entry[1] = location.incarnation
        self.send(to, location)

    def _whereis(self, msg: Whereis, sender: Any) -> None:
        if msg.subscribe:
            subscribers = self._subscribers.setdefault(msg.name, [])
            subscribers[:] = [entry for entry in subscribers if entry[0] != sender]
            subscribers.append([sender, ""])
        location = self._entries.get(msg.name)
        if location is not None and msg.after and location.incarnation == msg.after:
            location = None
        if location is not None or msg.wait <= 0:
            self._give(sender, location or Location(msg.name))
            return
        waiter_id = next(self._ids)
        self._waiters.setdefault(msg.name, {})[waiter_id] = sender
        self.wakeupAfter(timedelta(seconds=msg.wait), payload=(msg.name, waiter_id))
