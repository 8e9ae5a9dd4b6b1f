"""Supervision semantics modelled on OTP's supervisor tests, on both thespian bases."""

from __future__ import annotations

import os
import time

import pytest

from tai_autonomics.errors import TaiError
from tai_autonomics.runtime import ActorCrashed, Node, NoSuchActor, StartError, UnknownMessage
from tests.helpers import wait_until
from tests.runtime.actors import events

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


def child_state(node: Node, supervisor: str, name: str) -> str | None:
    for child in node.call(supervisor, "which_children"):
        if child["name"] == name:
            return child["state"]
    return None


def workers(*names: str, **overrides) -> dict:
    return {n: {"actor": ECHO, **overrides.get(n, {})} for n in names}


def test_start_in_order_and_stop_in_reverse(node: Node, tree) -> None:
    log = tree({"root": {"children": ["a", "sub", "b"]}, "sub": {"children": ["c", "d"]}},
               workers("a", "b", "c", "d"))
    assert events(log) == ["start a", "start c", "start d", "start b"]
    assert node.stop_tree()
    assert events(log)[4:] == ["stop b shutdown", "stop d shutdown", "stop c shutdown", "stop a shutdown"]


def test_one_for_one_restarts_only_the_crashed_child(node: Node, tree) -> None:
    tree({"root": {"strategy": "one_for_one", "intensity": 5, "children": ["a", "b", "c"]}}, workers("a", "b", "c"))
    before = {n: incarnation(node, n) for n in "abc"}
    crash_and_await_restart(node, "b")
    assert incarnation(node, "a") == before["a"]
    assert incarnation(node, "c") == before["c"]


def test_one_for_all_restarts_every_child(node: Node, tree) -> None:
    log = tree({"root": {"strategy": "one_for_all", "intensity": 5, "children": ["a", "b", "c"]}},
               workers("a", "b", "c"))
    before = {n: incarnation(node, n) for n in "abc"}
    crash_and_await_restart(node, "b")
    for n in "ac":
        assert node.whereis(n, wait=10, after=before[n]).incarnation != before[n]
    wait_until(lambda: events(log).count("start c") == 2, what="c restarted")
    # the survivors are stopped in reverse order, then everything starts again in order
    assert events(log)[3:] == ["stop b ValueError: boom: on purpose", "stop c shutdown", "stop a shutdown",
                               "start a", "start b", "start c"]


def test_rest_for_one_restarts_the_child_and_those_after_it(node: Node, tree) -> None:
    tree({"root": {"strategy": "rest_for_one", "intensity": 5, "children": ["a", "b", "c"]}}, workers("a", "b", "c"))
    before = {n: incarnation(node, n) for n in "abc"}
    crash_and_await_restart(node, "b")
    assert node.whereis("c", wait=10, after=before["c"]).incarnation != before["c"]
    assert incarnation(node, "a") == before["a"]


def test_transient_restarted_after_crash_not_after_normal_stop(node: Node, tree) -> None:
    tree({"root": {"intensity": 5, "children": ["t"]}}, workers("t", t={"restart": "transient"}))
    crash_and_await_restart(node, "t")
    assert node.call("t", "stop") == "bye"
    wait_until(lambda: child_state(node, "root", "t") == "stopped", what="t stopped")
    assert node.whereis("t").address is None
    assert node.call("root", "which_children")[0]["restarts"] == 1


def test_temporary_never_restarted(node: Node, tree) -> None:
    tree({"root": {"intensity": 5, "children": ["tmp", "a"]}}, workers("tmp", "a", tmp={"restart": "temporary"}))
    with pytest.raises(ActorCrashed):
        node.call("tmp", "crash")
    wait_until(lambda: child_state(node, "root", "tmp") is None, what="tmp removed")
    assert node.whereis("tmp").address is None


def test_intensity_plus_one_crashes_escalate_to_the_parent(node: Node, tree) -> None:
    tree({"root": {"intensity": 5, "children": ["sub"]}, "sub": {"intensity": 2, "period": 30, "children": ["x"]}},
         workers("x"))
    sub_before = incarnation(node, "sub")
    crash_and_await_restart(node, "x")
    crash_and_await_restart(node, "x")
    assert incarnation(node, "sub") == sub_before  # two restarts are within intensity 2
    crash_and_await_restart(node, "x")  # the third gives up: root restarts sub, which starts x
    assert node.whereis("sub", wait=10, after=sub_before).incarnation != sub_before
    # registered as it starts, running once it confirmed its start to root: a moment later
    wait_until(lambda: child_state(node, "root", "sub") == "running", what="sub running again")


def test_crashes_spread_out_over_time_do_not_escalate(node: Node, tree) -> None:
    tree({"root": {"intensity": 5, "children": ["sub"]}, "sub": {"intensity": 1, "period": 0.3, "children": ["x"]}},
         workers("x"))
    sub_before = incarnation(node, "sub")
    for _ in range(3):
        crash_and_await_restart(node, "x")
        time.sleep(0.35)  # the passage of time is what is under test: leave the 0.3 s window
    assert incarnation(node, "sub") == sub_before


def test_root_giving_up_is_reported_to_the_node(node: Node, tree) -> None:
    tree({"root": {"intensity": 1, "period": 30, "children": ["x"]}}, workers("x"))
    crash_and_await_restart(node, "x")
    with pytest.raises(ActorCrashed):
        node.call("x", "crash")
    exit_ = node.wait_for_exit(10)
    assert exit_ is not None and (exit_.normal, exit_.reason) == (True, "shutdown")  # as OTP's supervisor
    assert "reached_max_restart_intensity" in exit_.report


def test_child_ignoring_shutdown_is_killed_after_its_timeout(node: Node, tree) -> None:
    log = tree({"root": {"children": ["a", "deaf"]}},
               {**workers("a"), "deaf": {"actor": "tests.runtime.actors:Deaf", "shutdown": 200}})
    deaf_pid = node.call("deaf", "$info")["pid"]
    started = time.monotonic()
    assert node.stop_tree()
    assert time.monotonic() - started >= 0.2
    assert "stop deaf shutdown" not in events(log)
    assert events(log)[-1] == "stop a shutdown"
    if node.multiprocess:
        wait_until(lambda: not os.path.exists(f"/proc/{deaf_pid}"), what="deaf process gone")


def test_brutal_kill_does_not_wait(node: Node, tree) -> None:
    log = tree({"root": {"children": ["deaf"]}},
               {"deaf": {"actor": "tests.runtime.actors:Deaf", "shutdown": "brutal_kill"}})
    assert node.stop_tree()
    assert "stop deaf shutdown" not in events(log)


def test_crashing_call_returns_an_error_not_a_hang(node: Node, tree) -> None:
    tree({"root": {"intensity": 5, "children": ["a"]}}, workers("a"))
    with pytest.raises(ActorCrashed) as err:
        node.call("a", "crash", "x", timeout=5)
    assert err.value.code == "actor_crashed"
    assert "boom: x" in err.value.message
    assert "Traceback" not in str(err.value.detail)


def test_restart_gives_fresh_state(node: Node, tree) -> None:
    tree({"root": {"intensity": 5, "children": ["a"]}}, workers("a"))
    node.call("a", "echo", 1)
    node.call("a", "echo", 2)
    assert node.call("a", "$state") == {"seen": 2}
    crash_and_await_restart(node, "a")
    assert node.call("a", "seen") == 0
    assert node.call("root", "$state") == {"strategy": "one_for_one", "intensity": 5, "period": 5, "phase": "running",
                                           "restarts_in_period": 1, "idle": True, "children": ["a"]}


def test_refusals_and_unknown_messages_do_not_crash(node: Node, tree) -> None:
    tree({"root": {"children": ["a"]}}, workers("a"))
    before = incarnation(node, "a")
    with pytest.raises(TaiError) as err:
        node.call("a", "refuse", "no")
    assert (err.value.code, err.value.detail["why"]) == ("refused", "no")
    with pytest.raises(UnknownMessage):
        node.call("a", "no_such_message")
    with pytest.raises(UnknownMessage):
        node.call("a", "__init__")
    assert incarnation(node, "a") == before


def test_crash_in_a_cast_restarts_the_actor(node: Node, tree) -> None:
    tree({"root": {"intensity": 5, "children": ["a"]}}, workers("a"))
    before = incarnation(node, "a")
    node.cast("a", "crash")
    assert node.whereis("a", wait=10, after=before).incarnation != before


def test_start_failure_fails_the_tree_with_the_reason(node: Node, tmp_path) -> None:
    from tai_autonomics.runtime import parse_tree

    log = tmp_path / "events.log"
    spec = parse_tree({"root": "root", "supervisors": {"root": {"children": ["a", "bad", "b"]}},
                       "workers": {n: {"actor": ECHO, "args": {"log": str(log), "fail_init": n == "bad"}}
                                   for n in ("a", "bad", "b")}})
    with pytest.raises(StartError) as err:
        node.start_tree(spec)
    assert "'bad'" in err.value.message and "init refused on purpose" in err.value.message
    assert events(log) == ["start a", "stop a shutdown"]
    assert node.whereis("a").address is None


def test_restart_child_on_request(node: Node, tree) -> None:
    tree({"root": {"children": ["a"]}}, workers("a"))
    before = incarnation(node, "a")
    assert node.call("root", "restart_child", "a") == {"restarting": "a"}
    assert node.whereis("a", wait=10, after=before).incarnation != before
    with pytest.raises(NoSuchActor) as err:
        node.call("root", "restart_child", "nobody")
    assert err.value.code == "no_such_actor"


def test_unknown_name_is_a_clear_error(node: Node, tree) -> None:
    tree({"root": {"children": ["a"]}}, workers("a"))
    with pytest.raises(NoSuchActor) as err:
        node.call("nobody", "echo", timeout=0.2)
    assert err.value.code == "no_such_actor"


def test_deferred_start_holds_the_next_sibling_until_confirmed(node: Node, tree) -> None:
    log = tree({"root": {"children": ["a", "slow", "b"]}},
               {**workers("a", "b"), "slow": {"actor": "tests.runtime.actors:SlowStarter", "args": {"ask": "a"}}})
    assert events(log) == ["start a", "start slow", "confirmed slow", "start b"]


def test_deferred_start_failure_fails_the_tree(node: Node, tmp_path) -> None:
    from tai_autonomics.runtime import parse_tree

    log = tmp_path / "events.log"
    spec = parse_tree({"root": "root", "supervisors": {"root": {"children": ["a", "slow"]}},
                       "workers": {"a": {"actor": ECHO, "args": {"log": str(log)}},
                                   "slow": {"actor": "tests.runtime.actors:SlowStarter",
                                            "args": {"log": str(log), "ask": "a", "answer": "no"}}}})
    with pytest.raises(StartError) as err:
        node.start_tree(spec)
    assert "dependency said 'no'" in err.value.message
    assert events(log)[-1] == "stop a shutdown"
