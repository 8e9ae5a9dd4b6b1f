"""Helpers the runtime's tests share: a tree of echo workers, an actor's incarnation, a crash
awaited until the supervisor has restarted the actor."""

from __future__ import annotations

import pytest

from tai_autonomics.runtime import ActorCrashed, Node

ECHO = "tests.runtime.actors:Echo"


def incarnation(node: Node, name: str) -> str:
    return node.call(name, "$info")["incarnation"]


def crash_and_await_restart(node: Node, name: str) -> str:
    """Crash ``name`` through a call and return its next incarnation."""
    old = incarnation(node, name)
    with pytest.raises(ActorCrashed) as err:
        node.call(name, "crash", "on purpose")
    assert err.value.detail["exception"] == "ValueError"
    new = node.whereis(name, wait=10, after=old).incarnation
    assert new and new != old
    return new


def workers(*names: str, **overrides) -> dict:
    return {n: {"actor": ECHO, **overrides.get(n, {})} for n in names}
