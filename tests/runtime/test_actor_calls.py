"""Actors calling actors without blocking, with deferred replies, on both bases."""

from __future__ import annotations

import logging
import os
import threading
import time

import pytest

from tai_autonomics.errors import InvalidRequest, TaiError
from tai_autonomics.runtime import ActorCrashed, CallTimeout, Node, NodeConfig, NoSuchActor, parse_tree
from tai_autonomics.runtime.messages import Call, Location, Moved, Register, Reply, Unregister, Whereis
from tests.helpers import MULTIPROCESS, free_port, listen_for, wait_until
from tests.runtime.test_supervision import crash_and_await_restart, incarnation, workers

RELAY = {"actor": "tests.runtime.actors:Relay"}


def relay(node: Node, to: str, msg_type: str, payload=None, **extra):
    return node.call("relay", "relay", {"to": to, "type": msg_type, "payload": payload, **extra}, timeout=10)


def test_a_call_through_another_actor(node: Node, tree) -> None:
    tree({"root": {"children": ["a", "relay"]}}, {**workers("a"), "relay": dict(RELAY)})
    assert relay(node, "a", "echo", {"k": [1, 2]}) == {"k": [1, 2]}
    assert node.call("a", "seen") == 1


def test_the_callees_errors_reach_the_original_caller(node: Node, tree) -> None:
    tree({"root": {"intensity": 5, "children": ["a", "relay"]}}, {**workers("a"), "relay": dict(RELAY)})
    with pytest.raises(TaiError) as refused:
        relay(node, "a", "refuse", "why")
    assert (refused.value.code, refused.value.detail["why"]) == ("refused", "why")
    assert type(refused.value) is TaiError  # a code no class claims is rebuilt as the base, keeping the code
    relay_before = incarnation(node, "relay")
    with pytest.raises(ActorCrashed):
        relay(node, "a", "crash", "x")
    assert incarnation(node, "relay") == relay_before  # the callee crashed, not the caller
    with pytest.raises(NoSuchActor) as missing:
        relay(node, "nobody", "echo", timeout=0.3)
    assert missing.value.code == "no_such_actor"


def test_calls_follow_the_callee_across_a_restart(node: Node, tree) -> None:
    tree({"root": {"intensity": 5, "children": ["a", "relay"]}}, {**workers("a"), "relay": dict(RELAY)})
    assert relay(node, "a", "echo", 1) == 1
    crash_and_await_restart(node, "a")
    assert relay(node, "a", "echo", 2) == 2
    assert node.call("a", "seen") == 1


def test_a_subscription_made_while_the_name_is_unregistered_hears_of_the_next_exit(node: Node) -> None:
    """A caller resolving a name between two incarnations subscribes; registering the next
    incarnation must not drop that subscription, or the caller never hears that it died (the
    ReceiptLedger's callers stalled until their timeouts after a second SIGKILL)."""
    system, registry = node._system, node._registry
    about_between = lambda m: getattr(m, "name", None) == "between"  # noqa: E731 (notices of earlier tests' actors)
    system.tell(registry, Whereis("between", wait=5.0, subscribe=True))  # not registered: it waits
    system.tell(registry, Register("between", registry, "between.1", os.getpid()))
    assert listen_for(node, 5, about_between) == Location("between", registry, "between.1", os.getpid())
    system.tell(registry, Unregister("between", "between.1"))
    assert listen_for(node, 5, about_between) == Moved("between", "between.1")


def test_a_caller_waiting_for_the_next_incarnation_hears_of_that_ones_exit(node: Node) -> None:
    """A caller told "restarting" by the old incarnation asks for the next one while the old is
    still registered; the old one's departure is not news to it and must not use up its
    subscription, or it never hears that the next one died (its calls then wait on a dead
    address for their whole timeout)."""
    system, registry = node._system, node._registry
    about_next = lambda m: getattr(m, "name", None) == "next"  # noqa: E731 (notices of earlier tests' actors)
    system.tell(registry, Register("next", registry, "next.1", os.getpid()))
    system.tell(registry, Whereis("next", wait=5.0, after="next.1", subscribe=True))  # next.1 is current: it waits
    system.tell(registry, Register("next", registry, "next.2", os.getpid()))
    assert listen_for(node, 5, about_next) == Location("next", registry, "next.2", os.getpid())  # no notice of next.1
    system.tell(registry, Unregister("next", "next.2"))
    assert listen_for(node, 5, about_next) == Moved("next", "next.2")


@pytest.mark.parametrize("base", MULTIPROCESS)
def test_a_move_notice_read_while_listening_for_something_else_is_acted_on(base: str) -> None:
    """The registry tells a caller once that a cached actor moved; a listen that drops the notice
    left the next call waiting on a dead address for its whole timeout (seen in CI)."""
    with Node(NodeConfig(base=base, admin_port=free_port())) as node:
        node.start_tree(parse_tree({"root": "root", "supervisors": {"root": {"intensity": 5, "children": ["a"]}},
                                    "workers": workers("a")}))
        before = node.call("a", "$info")  # cached, and subscribed to its exit
        os.kill(before["pid"], 9)
        node._system.tell(node._registry, Whereis("a", 10, before["incarnation"], False))
        # the registry sends the notice before it answers that lookup: same sender, so it arrives first
        after = listen_for(node, 10, lambda m: isinstance(m, Location) and m.name == "a")
        assert after.incarnation not in ("", before["incarnation"])
        assert node.call("a", "$info", timeout=2)["incarnation"] == after.incarnation


@pytest.mark.parametrize("base", MULTIPROCESS)
def test_an_answer_read_after_the_callees_exit_notice_still_drops_its_address(base: str) -> None:
    """The notice can overtake the answer (two senders); the answer is returned, and the cached
    address must go all the same, or the next call waits on a dead address for its timeout."""
    with Node(NodeConfig(base=base, admin_port=free_port())) as node:
        node.start_tree(parse_tree({"root": "root", "supervisors": {"root": {"children": ["a"]}},
                                    "workers": workers("a")}))
        assert node.call("a", "answer_after_notice", 7) == 7
        assert "a" not in node._own_client._cache


def test_a_crash_in_a_reply_callback_restarts_the_caller(node: Node, tree) -> None:
    tree({"root": {"intensity": 5, "children": ["a", "relay"]}}, {**workers("a"), "relay": dict(RELAY)})
    before = incarnation(node, "relay")
    assert node.call("relay", "relay_then_crash", {"to": "a"}) == "sent"
    assert node.whereis("relay", wait=10, after=before).incarnation != before


@pytest.mark.parametrize("base", MULTIPROCESS)
def test_a_slow_callee_times_out_for_the_caller(base: str) -> None:
    with Node(NodeConfig(base=base, admin_port=free_port())) as node:
        node.start_tree(parse_tree({"root": "root", "supervisors": {"root": {"children": ["a", "relay"]}},
                                    "workers": {**workers("a"), "relay": dict(RELAY)}}))
        with pytest.raises(CallTimeout):
            relay(node, "a", "sleep", 2.0, timeout=0.3)


@pytest.mark.parametrize("base", MULTIPROCESS)
def test_a_callee_killed_mid_call_fails_the_call_at_once(base: str) -> None:
    """Like an OTP monitor: the caller hears of the death at once, not after its timeout, and the
    call is not run again (it may have been half done)."""
    with Node(NodeConfig(base=base, admin_port=free_port())) as node:
        node.start_tree(parse_tree({"root": "root", "supervisors": {"root": {"intensity": 5, "children": ["a", "relay"]}},
                                    "workers": {**workers("a"), "relay": dict(RELAY)}}))
        assert relay(node, "a", "echo", 0) == 0  # the relay has resolved (and subscribed to) a
        pid = node.call("a", "$info")["pid"]
        started = time.monotonic()
        request = {"to": "a", "type": "sleep", "payload": 30, "timeout": 20}
        node._system.tell(node.whereis("relay").address, Call("r1", "relay", request))
        os.kill(pid, 9)
        reply = listen_for(node, 15, lambda m: isinstance(m, Reply))
        assert reply.ref == "r1" and reply.error.code == "actor_crashed", reply
        assert time.monotonic() - started < 10


@pytest.mark.parametrize("base", MULTIPROCESS)
def test_a_later_call_with_a_shorter_timeout_times_out_first(base: str) -> None:
    """Call deadlines share one armed wakeup: a new call whose deadline is earlier than every
    outstanding one must re-arm it, and the long call must still get its answer afterwards."""
    with Node(NodeConfig(base=base, admin_port=free_port())) as node:
        node.start_tree(parse_tree({"root": "root", "supervisors": {"root": {"children": ["a", "b", "relay"]}},
                                    "workers": {**workers("a", "b"), "relay": dict(RELAY)}}))
        outcome: dict[str, object] = {}

        def long_call() -> None:
            outcome["long"] = node.client().call("relay", "relay", {"to": "b", "type": "sleep", "payload": 1.5,
                                                                    "timeout": 20}, 10)

        worker = threading.Thread(target=long_call)
        worker.start()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # until b is asleep in the long call (it stops answering)
            try:
                node.call("b", "$info", timeout=0.1)
            except CallTimeout:
                break
        started = time.monotonic()
        with pytest.raises(CallTimeout):
            relay(node, "a", "sleep", 1.0, timeout=0.3)
        assert time.monotonic() - started < 0.9  # its own 0.3 s, not the long call's 20 s
        worker.join(10)
        assert outcome["long"] == 1.5


COALESCING = {"actor": "tests.runtime.actors:Coalescing"}


@pytest.mark.parametrize("base", MULTIPROCESS)
def test_calls_sent_by_one_handler_travel_as_one_batch_and_are_answered_as_one(base: str) -> None:
    with Node(NodeConfig(base=base, admin_port=free_port())) as node:
        node.start_tree(parse_tree({"root": "root", "supervisors": {"root": {"children": ["src", "dst"]}},
                                    "workers": {"src": dict(COALESCING), "dst": dict(COALESCING)}}))
        assert node.call("src", "fan_out", {"to": "dst", "payloads": [1, "two", [3]]}) == [1, "two", [3]]
        assert node.call("dst", "batches") == [3]  # three calls, one thespian message
        assert node.call("src", "batches") == [3]  # and their three replies
        assert node.call("dst", "seen") == 3


@pytest.mark.parametrize("base", MULTIPROCESS)
def test_a_client_picks_its_reply_out_of_a_batch(base: str) -> None:
    """A late reply to an abandoned call and the reply to the current one arrive together."""
    with Node(NodeConfig(base=base, admin_port=free_port())) as node:
        node.start_tree(parse_tree({"root": "root", "supervisors": {"root": {"children": ["a"]}},
                                    "workers": {"a": dict(COALESCING)}}))
        with pytest.raises(CallTimeout):
            node.call("a", "hold", None, timeout=0.3)
        assert node.call("a", "release_and_echo", "now") == "now"
        assert node.call("a", "echo", "next") == "next"


@pytest.mark.parametrize("base", MULTIPROCESS)
def test_a_lingering_actor_never_holds_the_steps_of_a_lone_request(base: str) -> None:
    """A request's call and its answer follow each other quickly, but with no other request
    under way there is nothing to gather: a 5 s hold would time this call out."""
    with Node(NodeConfig(base=base, admin_port=free_port())) as node:
        node.start_tree(parse_tree({"root": "root", "supervisors": {"root": {"children": ["src", "dst"]}},
                                    "workers": {"src": {"actor": "tests.runtime.actors:Relaying"},
                                                "dst": dict(COALESCING)}}))
        assert node.call("src", "relay", {"to": "dst", "payload": 7}, timeout=2.5) == 7


@pytest.mark.parametrize("base", MULTIPROCESS)
def test_a_lingering_actor_sends_the_calls_of_a_stream_of_requests_together(base: str) -> None:
    with Node(NodeConfig(base=base, admin_port=free_port())) as node:
        node.start_tree(parse_tree({"root": "root", "supervisors": {"root": {"children": ["src", "dst"]}},
                                    "workers": {"src": {"actor": "tests.runtime.actors:Lingering"},
                                                "dst": dict(COALESCING)}}))
        for n in range(20):
            node.cast("src", "forward", {"to": "dst", "payload": n})
        wait_until(lambda: node.call("src", "answers") == list(range(20)), what="every answer relayed")
        assert node.call("src", "answers") == list(range(20))
        assert node.call("dst", "seen") == 20
        batches = node.call("dst", "batches")
        assert sum(batches) >= 10, batches  # most of the 20 calls came in a few messages


def test_every_actor_and_supervisor_sets_its_log_level_and_refuses_a_bad_one(node: Node, tree) -> None:
    tree({"root": {"intensity": 5, "children": ["a"]}}, workers("a"))
    root = logging.getLogger()
    saved = (root.level, [(handler, handler.level) for handler in root.handlers])  # in-process: this process's
    try:
        assert node.call("a", "$log_level", "warning") == {"name": "a", "level": "WARNING"}
        assert node.call("a", "$info")["log_level"] == "WARNING"
        assert node.call("root", "$log_level", "ERROR") == {"name": "root", "level": "ERROR"}
        crash_and_await_restart(node, "a")  # the supervisor starts the next incarnation at its own level
        assert node.call("a", "$info")["log_level"] == "ERROR"
        before = incarnation(node, "a")
        for bad in ("LOUD", None, 10):
            with pytest.raises(InvalidRequest) as refused:
                node.call("a", "$log_level", bad)
            assert refused.value.code == "invalid_request"
    finally:
        root.setLevel(saved[0])
        for handler, level in saved[1]:
            handler.setLevel(level)
    assert incarnation(node, "a") == before
