"""What only separate OS processes can show: SIGKILL, hung cleanups, real call timeouts."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest

from tai_autonomics.runtime import CallTimeout, Node, NodeConfig
from tests.helpers import MULTIPROCESS, free_port, wait_until, zombie
from tests.runtime.support import workers


@pytest.fixture(scope="module", params=MULTIPROCESS)
def node(request: pytest.FixtureRequest) -> Iterator[Node]:
    with Node(NodeConfig(base=request.param, admin_port=free_port())) as n:
        yield n


def test_sigkill_of_an_actor_is_detected_and_restarted(node: Node, tree) -> None:
    tree({"root": {"intensity": 5, "children": ["a", "b"]}}, workers("a", "b"))
    info = node.call("a", "$info")
    os.kill(info["pid"], 9)
    new = node.whereis("a", wait=10, after=info["incarnation"])
    assert new.incarnation != info["incarnation"] and new.pid != info["pid"]
    assert node.call("a", "echo", "back") == "back"
    # registered by the supervisor as it forked the replacement: the pid is the replacement's own
    assert node.call("a", "$info")["pid"] == new.pid

def test_sigkill_of_a_supervisor_takes_its_children_and_is_restarted(node: Node, tree) -> None:
    tree({"root": {"intensity": 5, "children": ["sub"]}, "sub": {"children": ["c"]}}, workers("c"))
    sub, c = node.call("sub", "$info"), node.call("c", "$info")
    os.kill(sub["pid"], 9)
    wait_until(lambda: not os.path.exists(f"/proc/{c['pid']}") or zombie(c["pid"]), what="orphan gone")
    assert node.whereis("sub", wait=10, after=sub["incarnation"]).incarnation != sub["incarnation"]
    assert node.whereis("c", wait=10, after=c["incarnation"]).pid != c["pid"]

def test_hung_cleanup_is_killed_after_shutdown_timeout(node: Node, tree) -> None:
    tree({"root": {"children": ["s"]}}, {"s": {"actor": "tests.runtime.actors:Stubborn", "shutdown": 300}})
    pid = node.call("s", "$info")["pid"]
    started = time.monotonic()
    assert node.stop_tree()
    assert time.monotonic() - started < 10
    wait_until(lambda: not os.path.exists(f"/proc/{pid}") or zombie(pid), what="stubborn process gone")

def test_call_timeout(node: Node, tree) -> None:
    tree({"root": {"children": ["a"]}}, workers("a"))
    with pytest.raises(CallTimeout):
        node.call("a", "sleep", 1.0, timeout=0.2)




_LISTENERS_PROBE = """
import json, os, sys
from tai_autonomics.runtime import Node, NodeConfig, _process, parse_tree
from tests.helpers import free_port
from tests.helpers import listening_inodes, socket_inodes
from tests.runtime.support import workers

with Node(NodeConfig(base=sys.argv[1], admin_port=free_port())) as node:
    node.start_tree(parse_tree({"root": "root", "supervisors": {"root": {"children": ["a", "sub"]},
                                                                "sub": {"children": ["b"]}},
                                "workers": workers("a", "b")}))
    pids = [node._admin_pid, *_process.descendants(node._admin_pid)]
    listening = listening_inodes()
    print("probe:", json.dumps({"pids": len(pids), "all_have_sockets": all(socket_inodes(pid) for pid in pids),
                      "actors": sorted({listening[i] for pid in pids for i in socket_inodes(pid) if i in listening}),
                      "caller": sorted({listening[i] for i in socket_inodes(os.getpid()) if i in listening})}))
"""


@pytest.mark.parametrize("base", MULTIPROCESS)
def test_no_actor_socket_listens_beyond_loopback(base: str) -> None:
    """In a fresh interpreter: forks inherit every descriptor open at fork time, and a test
    process holds listeners of its own (the TCP base's, earlier tests' left to the collector)."""
    import json
    import subprocess
    import sys

    probe = subprocess.run([sys.executable, "-c", _LISTENERS_PROBE, base], capture_output=True, text=True,
                           timeout=60, cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    assert probe.returncode == 0, probe.stderr
    seen = json.loads(next(line for line in probe.stdout.splitlines() if line.startswith("probe: "))[7:])
    assert seen["pids"] >= 5 and seen["all_have_sockets"], seen
    actors, caller = set(seen["actors"]), set(seen["caller"])
    if base == "multiprocTCPBase":
        assert len(actors - caller) >= 4  # admin, logger, root, a, sub, b (each listens)
        loopback_v4 = "0100007F"  # 127.0.0.1, little-endian hex in /proc/net/tcp
        assert all(a.split(":")[0] == loopback_v4 for a in actors), actors
    else:  # Unix sockets in a private directory (tests/runtime/test_unix_transport.py): no TCP at all
        assert actors == caller == set(), seen


@pytest.mark.parametrize("base", MULTIPROCESS)
def test_shutdown_leaves_no_process_behind(base: str) -> None:
    from tai_autonomics.runtime import _process, parse_tree

    node = Node(NodeConfig(base=base, admin_port=free_port())).start()
    node.start_tree(parse_tree({"root": "root", "supervisors": {"root": {"children": ["a", "sub"]},
                                                                "sub": {"children": ["b"]}},
                                "workers": workers("a", "b")}))
    pids = [node._admin_pid, *_process.descendants(node._admin_pid)]
    assert len(pids) >= 5
    node.shutdown()
    alive = [p for p in pids if os.path.exists(f"/proc/{p}") and not zombie(p)]
    assert alive == []


def test_threads_call_concurrently_through_their_own_clients(node: Node, tree) -> None:
    from concurrent.futures import ThreadPoolExecutor

    tree({"root": {"children": ["a", "b"]}}, workers("a", "b"))

    def work(i: int) -> int:
        client = node.client()
        assert client is node.client()  # one per thread, reused
        return client.call("a" if i % 2 else "b", "echo", i)

    with ThreadPoolExecutor(max_workers=4) as pool:
        assert sorted(pool.map(work, range(200))) == list(range(200))
    assert node.call("a", "seen") + node.call("b", "seen") == 200


def test_an_outside_call_to_an_actor_killed_mid_call_fails_at_once(node: Node, tree) -> None:
    """A caller hears of the callee's death (like an OTP monitor), not only at its timeout."""
    import threading

    from tai_autonomics.runtime import ActorCrashed
    from tests.runtime.actors import events

    log = tree({"root": {"intensity": 5, "children": ["a"]}}, workers("a"))
    pid = node.call("a", "$info")["pid"]

    def kill_once_asleep() -> None:
        wait_until(lambda: "sleep a" in events(log), what="a asleep in the call")
        os.kill(pid, 9)

    killer = threading.Thread(target=kill_once_asleep)
    killer.start()
    started = time.monotonic()
    with pytest.raises(ActorCrashed):
        node.call("a", "sleep", 20, timeout=30)
    killer.join()
    assert time.monotonic() - started < 10


def test_the_tcp_transport_polls_and_everything_else_keeps_the_default_selector() -> None:
    import selectors

    from thespian.system.transport import TCPTransport

    from tai_autonomics.runtime import _transport

    _transport.tune_tcp_transport("127.0.0.1")
    assert TCPTransport.selectors.DefaultSelector is selectors.PollSelector
    assert selectors.DefaultSelector is not selectors.PollSelector  # asyncio's loop keeps epoll
