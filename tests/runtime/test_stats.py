"""``$stats`` (what an observer's ``top`` shows of each actor) and the supervisor's record of the
last crash, on real processes: RSS and CPU are a process's, so only the multiprocess bases show them."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator

import pytest

from tai_autonomics.runtime import ActorCrashed, CallTimeout, Node, NodeConfig, parse_tree
from tai_autonomics.runtime._process import usage
from tai_autonomics.runtime.stats import RATE_WINDOW_S, MessageRate
from tests.helpers import MULTIPROCESS, free_port, wait_until
from tests.runtime.test_supervision import workers


@pytest.fixture(scope="module", params=MULTIPROCESS)
def node(request: pytest.FixtureRequest) -> Iterator[Node]:
    with Node(NodeConfig(base=request.param, admin_port=free_port())) as n:
        yield n


def child(node: Node, supervisor: str, name: str) -> dict:
    return next(c for c in node.call(supervisor, "which_children") if c["name"] == name)


def test_an_actor_reports_its_own_process_memory_cpu_and_messages(node: Node, tree) -> None:
    tree({"root": {"children": ["a"]}}, workers("a"))
    pid = node.call("a", "$info")["pid"]
    first = node.call("a", "$stats")
    assert first["pid"] == pid != os.getpid()
    assert 1_000_000 < first["rss_bytes"] < 2_000_000_000  # a Python process: megabytes, not bytes or terabytes
    assert 0 <= first["cpu_seconds"] < 600
    assert first["pending_outbound"] == 0  # idle: everything it sent was acknowledged
    for n in range(20):
        node.call("a", "echo", n)
    second = node.call("a", "$stats")
    assert second["messages"] >= first["messages"] + 21  # 20 echoes and this $stats
    assert second["messages_per_s"] > 0
    assert second["cpu_seconds"] >= first["cpu_seconds"]


def test_a_supervisor_answers_stats_too(node: Node, tree) -> None:
    tree({"root": {"children": ["sub"]}, "sub": {"children": ["c"]}}, workers("c"))
    stats = node.call("sub", "$stats")
    assert stats["pid"] == node.call("sub", "$info")["pid"] and stats["rss_bytes"] > 1_000_000
    assert stats["messages"] >= 2  # its Init and its child's Started, at least


def test_a_crash_is_kept_by_the_supervisor_with_its_reason_and_a_kill_as_killed(node: Node, tree) -> None:
    tree({"root": {"intensity": 5, "children": ["a", "b"]}}, workers("a", "b"))
    assert child(node, "root", "a")["last_crash"] is None and child(node, "root", "a")["restarts"] == 0
    old = node.call("a", "$info")["incarnation"]
    with pytest.raises(ActorCrashed):
        node.call("a", "crash", "on purpose")
    node.whereis("a", wait=10, after=old)
    crashed = child(node, "root", "a")
    assert crashed["restarts"] == 1
    assert crashed["last_crash"]["reason"] == "ValueError: boom: on purpose"
    assert crashed["last_crash"]["exception"] == "ValueError" and crashed["last_crash"]["message_type"] == "crash"
    info = node.call("b", "$info")
    os.kill(info["pid"], 9)
    node.whereis("b", wait=10, after=info["incarnation"])
    killed = child(node, "root", "b")
    assert killed["restarts"] == 1 and killed["last_crash"]["reason"] == "killed"
    assert killed["last_crash"]["exception"] is None
    assert node.call("b", "$stats")["messages"] < 5  # a new process counts from zero


def test_on_the_in_process_base_there_is_no_transport_to_show_pending_messages_of() -> None:
    with Node(NodeConfig(base="simpleSystemBase")) as simple:
        simple.start_tree(parse_tree({"root": "root", "supervisors": {"root": {"children": ["a"]}},
                                      "workers": workers("a")}))
        try:
            stats = simple.call("a", "$stats")
        finally:
            simple.stop_tree()
    assert stats["pid"] == os.getpid() and stats["rss_bytes"] > 1_000_000 and stats["pending_outbound"] is None
    assert stats["messages"] >= 2  # its Init and this call


def test_usage_reads_this_process_from_proc() -> None:
    rss, cpu = usage(os.getpid())
    assert rss > 1_000_000 and cpu > 0


def test_usage_of_a_process_that_is_gone_is_none() -> None:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    assert usage(pid) is None


def test_the_rate_is_over_the_last_whole_seconds_whoever_reads_it() -> None:
    rate = MessageRate(now=100.0)
    for tick in range(10):
        rate.count(100.0 + tick * 0.1)  # 10 in the first second
    assert rate.per_second(100.95) == 10  # younger than a second: what it did in its first second
    assert rate.per_second(101.5) == 10  # one whole second
    rate.count(101.6, n=30)
    assert rate.per_second(102.0) == 20  # two whole seconds, 40 messages
    assert rate.per_second(102.0) == 20  # reading it changes nothing
    assert rate.per_second(100.0 + RATE_WINDOW_S + 1.5) == 30 / RATE_WINDOW_S  # the first second left the window
    assert rate.per_second(200.0) == 0 and rate.total == 40


def test_a_long_silence_clears_the_whole_window() -> None:
    rate = MessageRate(now=0.0)
    rate.count(3.2, n=7)
    rate.count(3.3 + 10 * RATE_WINDOW_S, n=2)
    assert rate.per_second(4.0 + 10 * RATE_WINDOW_S) == 2 / RATE_WINDOW_S


def test_a_message_to_a_receiver_that_is_not_reading_is_pending_until_it_reads(node: Node, tree) -> None:
    """A busy actor (one message at a time) does not read its socket: what is sent to it waits,
    and the sender shows it as pending outbound: on TCP until the receiver acknowledges it, on
    the Unix transport (no acknowledgement) until the kernel has taken it all, so the message is
    larger than a socket's buffer."""
    tree({"root": {"children": ["a", "b"]}}, {"a": {"actor": "tests.runtime.actors:Relay"}, **workers("b")})
    busy = threading.Thread(target=lambda: node.client().call("b", "sleep", 2.0, timeout=10))
    relayed: list = []
    large = "x" * (8 * 2**20)
    relay = threading.Thread(target=lambda: relayed.append(
        node.client().call("a", "relay", {"to": "b", "type": "echo", "payload": large, "timeout": 10}, timeout=15)))
    busy.start()
    wait_until(lambda: _busy(node, "b"), what="b busy sleeping")
    relay.start()
    try:
        wait_until(lambda: node.call("a", "$stats")["pending_outbound"] >= 1, what="a's call to b pending")
        relay.join()
        assert relayed == [large]
        wait_until(lambda: node.call("a", "$stats")["pending_outbound"] == 0, what="nothing pending once b read")
    finally:
        busy.join()
        relay.join()


def _busy(node: Node, name: str) -> bool:
    try:
        node.call(name, "$stats", timeout=0.2)
    except CallTimeout:
        return True
    return False
