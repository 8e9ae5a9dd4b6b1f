"""Server.run_blocking: blocking work on a worker thread, its continuation back in the actor."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from tai_autonomics.runtime import ActorCrashed, Node, NodeConfig, parse_tree
from tests.helpers import BASES, MULTIPROCESS, free_port, wait_until
from tests.runtime.test_supervision import incarnation

TREE = {"root": "root", "supervisors": {"root": {"children": ["w"]}},
        "workers": {"w": {"actor": "tests.runtime.actors:Offloading"}}}


@pytest.mark.parametrize("base", MULTIPROCESS)
def test_an_actor_answers_others_while_its_blocking_work_runs(base: str) -> None:
    with Node(NodeConfig(base=base, admin_port=free_port())) as node:
        node.start_tree(parse_tree(TREE))
        with ThreadPoolExecutor(1) as pool:
            slow = pool.submit(lambda: node.client().call("w", "slow", 2.0, timeout=10))
            wait_until(lambda: node.call("w", "slow_started") == 1, what="the slow call to arrive")
            for n in range(5):
                assert node.call("w", "echo", n, timeout=1.5) == n
            assert not slow.done()
            assert slow.result() == 2.0


@pytest.mark.parametrize("base", BASES)
def test_a_failure_in_the_continuation_crashes_the_actor_and_it_restarts(base: str) -> None:
    with Node(NodeConfig(base=base, admin_port=free_port())) as node:
        node.start_tree(parse_tree(TREE))
        before = incarnation(node, "w")
        with pytest.raises(ActorCrashed):
            node.call("w", "fail_off_thread", None, timeout=10)
        wait_until(lambda: incarnation(node, "w") not in ("", before), what="restart")
        assert node.call("w", "slow", 0.01, timeout=5) == 0.01
