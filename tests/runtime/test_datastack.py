"""The data-stack chunk fix: an actor loop based in a fresh chunk does not map and unmap chunks.

CPython 3.11 maps a 16 KiB chunk when a call does not fit in the current one and unmaps it on
the way back, so a loop whose calls cross a chunk's end pays page faults on every crossing.
Where that boundary falls depends on how deep the loop's base is (for a forked actor, on the
stack of the actor that forked it), so this scans every base depth.
"""

from __future__ import annotations

import resource

import thespian.system.multiprocCommon as multiproc

from tai_autonomics.runtime import _datastack

HANDLING_DEPTH = 40  # frames one message's handling goes above the loop, roughly
ROUNDS = 200


def _nest(depth: int, then):
    return then() if depth == 0 else _nest(depth - 1, then)


def _faults_per_round() -> float:
    """Page faults of this thread only (other threads of the test process allocate too), the
    fewest of three runs: a crossing faults on every round, noise does not come back each time."""
    return min(_faults_once() for _ in range(3))


def _faults_once() -> float:
    before = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
    for _ in range(ROUNDS):
        _nest(HANDLING_DEPTH, lambda: None)
    return (resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before) / ROUNDS


def _worst_over_base_depths(loop) -> float:
    return max(_nest(base, loop) for base in range(0, 200, 3))


def test_some_base_depth_thrashes_without_a_fresh_chunk() -> None:
    """The problem is real on this interpreter (else the fix below proves nothing)."""
    assert _worst_over_base_depths(_faults_per_round) >= 1


def test_a_loop_started_on_a_fresh_chunk_never_thrashes() -> None:
    worst = _worst_over_base_depths(lambda: _datastack._fresh_chunk(_faults_per_round))
    assert worst < 0.1


def test_actor_processes_start_through_the_fresh_chunk() -> None:
    _datastack.start_actors_on_fresh_chunk()
    _datastack.start_actors_on_fresh_chunk()  # idempotent: not wrapped twice
    assert multiproc.startChild.__qualname__.endswith("start_child")
    assert multiproc.startChild.__closure__[0].cell_contents.__module__ == "thespian.system.multiprocCommon"
