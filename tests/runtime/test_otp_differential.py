"""Our supervisors against Erlang/OTP's: the same trees and fault scripts, the same traces.

Each scenario is a supervision tree and a fault script (crash a worker, stop it with a reason,
SIGKILL it, make its next starts fail, let time pass, wait for a line of the trace). It runs on real Erlang/OTP
``supervisor``s (``tests/runtime/otp/otp_diff.erl``, compiled with ``erlc`` at test time;
Debian's ``erlang-nox``, installed by ``.ci/run``) and on our runtime on both multiprocess bases
(``multiprocUnixBase``, the default, and ``multiprocTCPBase``); both write a trace of worker starts and
stops with OTP's exit reasons, who is alive after the script, how the root ended (if it gave up)
and the ordered shutdown, and the traces must be equal. After every step each side waits until
its tree has settled, on events it can observe (no fixed sleeps): OTP's supervisors by
synchronous requests, ours by its supervisors' ``$state`` and the registry agreeing.

Where we choose to differ from OTP (README.md, "Supervision: where we differ from OTP") the
difference lies outside these traces and is named in :data:`CHOSEN_DIFFERENCES`.
The scenarios are listed in docs/supervision.md.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tai_autonomics.runtime import ActorCrashed, CallError, Node, NodeConfig, SupervisorSpec, parse_tree
from tests.helpers import MULTIPROCESS, free_port
from tests.runtime.actors import events, record

TRACED = "tests.runtime.actors:Traced"

CHOSEN_DIFFERENCES = {
    "root_exit_code": "when the root supervisor gives up, the daemon exits with EXIT_GAVE_UP (1) at once; "
                      "OTP's root exits with reason shutdown and what follows depends on the application type",
    "fractional_period": "period may be a fraction of a second and restarts are timed exactly; OTP counts "
                         "whole seconds of monotonic time (so its window is between period and period + 1 s)",
    "killed_supervisor_subtree": "a SIGKILLed supervisor's children die with it (parent-death signal) without "
                                 "terminate; OTP's children trap the exit signal `killed` and run terminate",
    "no_simple_one_for_one": "no dynamic children: the tree is the static supervision.toml",
}


@dataclass(frozen=True)
class Scenario:
    id: str
    supervisors: dict[str, dict[str, Any]]
    workers: dict[str, dict[str, Any]]
    steps: tuple[tuple[Any, ...], ...] = ()
    root: str = "root"
    concurrent: bool = False
    """Faults at the same instant: the order of the reactions is that in which the deaths reach
    the supervisor (on both sides), so until ``alive`` the traces are compared as multisets."""

    def spec(self, log: Path) -> SupervisorSpec:
        workers = {name: {"actor": TRACED, **{k: v for k, v in entry.items() if k != "slow_stop_ms"},
                          "args": {"log": str(log), "slow_stop_ms": entry.get("slow_stop_ms", 0)}}
                   for name, entry in self.workers.items()}
        return parse_tree({"root": self.root, "supervisors": self.supervisors, "workers": workers})


def _sup(*children: str, **flags: Any) -> dict[str, Any]:
    return {**flags, "children": list(children)}


def _w(restart: str = "permanent", **more: Any) -> dict[str, Any]:
    return {"restart": restart, **more}


SCENARIOS = [
    Scenario("ordered_start_and_stop", {"root": _sup("a", "sub", "b"), "sub": _sup("c", "d")},
             {n: _w() for n in "abcd"}),
    Scenario("shutdown_timeout_then_kill", {"root": _sup("a", "c")},
             {"a": _w(), "c": _w(shutdown=200, slow_stop_ms=5000)}),
    Scenario("one_for_one_crash", {"root": _sup("a", "b", "c", intensity=5)}, {n: _w() for n in "abc"},
             (("crash", "b"),)),
    Scenario("one_for_all_crash_with_nested_supervisor",
             {"root": _sup("a", "sub", "b", strategy="one_for_all", intensity=5), "sub": _sup("c", "d")},
             {n: _w() for n in "abcd"}, (("crash", "b"),)),
    Scenario("one_for_all_terminates_and_drops_a_temporary_sibling",
             {"root": _sup("a", "t", "b", "c", strategy="one_for_all", intensity=5)},
             {"a": _w(), "t": _w("temporary"), "b": _w(), "c": _w()}, (("crash", "b"),)),
    Scenario("rest_for_one_terminates_and_drops_a_temporary_sibling",
             {"root": _sup("a", "b", "t", "c", strategy="rest_for_one", intensity=5)},
             {"a": _w(), "b": _w(), "t": _w("temporary"), "c": _w()}, (("crash", "b"),)),
    Scenario("one_for_all_temporary_child_crashing_alone",
             {"root": _sup("a", "t", "b", strategy="one_for_all", intensity=5)},
             {"a": _w(), "t": _w("temporary"), "b": _w()}, (("crash", "t"),)),
    Scenario("rest_for_one_sigkill_of_the_first",
             {"root": _sup("a", "b", "c", strategy="rest_for_one", intensity=5)}, {n: _w() for n in "abc"},
             (("kill", "a"),)),
    Scenario("children_sigkilled_together_are_all_restarted",
             {"root": _sup("a", "b", "c", intensity=5)}, {n: _w() for n in "abc"}, (("kill", "a", "b", "c"),),
             concurrent=True),
    Scenario("transient_restarted_only_after_an_abnormal_exit", {"root": _sup("t", "u", "v", "k", intensity=5)},
             {n: _w("transient") for n in "tuvk"},
             (("crash", "t"), ("stop", "u", "normal"), ("stop", "v", "shutdown"), ("kill", "k"))),
    Scenario("permanent_restarted_after_any_exit", {"root": _sup("a", intensity=5)}, {"a": _w()},
             (("stop", "a", "normal"), ("stop", "a", "shutdown"), ("crash", "a"))),
    Scenario("intensity_reached_escalates_to_a_permanent_parent",
             {"root": _sup("a", "sub", intensity=5), "sub": _sup("x", "y", intensity=2, period=30)},
             {n: _w() for n in "axy"}, (("crash", "x"),) * 3),
    Scenario("supervisor_giving_up_exits_shutdown_so_a_transient_parent_leaves_it",
             {"root": _sup("a", "sub", intensity=5), "sub": _sup("x", "y", intensity=1, period=30,
                                                               restart="transient")},
             {n: _w() for n in "axy"}, (("crash", "x"),) * 2),
    Scenario("intensity_zero_gives_up_at_the_first_restart",
             {"root": _sup("sub", intensity=5), "sub": _sup("x", intensity=0)}, {"x": _w()}, (("crash", "x"),)),
    Scenario("root_giving_up_stops_everything_in_reverse_order",
             {"root": _sup("x", "y", "z", intensity=1, period=60)},
             {"x": _w(), "y": _w(shutdown="brutal_kill"), "z": _w()}, (("crash", "x"), ("kill", "x"))),
    Scenario("a_death_during_a_restart_is_not_decided_again",
             {"root": _sup("a", "b", "c", strategy="one_for_all", intensity=5)},
             {"a": _w(), "b": _w(), "c": _w(slow_stop_ms=300)},
             (("crash", "a"), ("await", "stop c shutdown"), ("crash", "b"))),
    Scenario("failed_restarts_are_retried_and_counted",
             {"root": _sup("a", "x", intensity=3)}, {"a": _w(), "x": _w()}, (("refuse_starts", "x", 2),)),
    Scenario("failed_restarts_reach_the_intensity",
             {"root": _sup("sub", intensity=5), "sub": _sup("a", "x", intensity=2)}, {"a": _w(), "x": _w()},
             (("refuse_starts", "x", 2),)),
    Scenario("restarts_further_apart_than_the_period_do_not_add_up",
             {"root": _sup("x", intensity=1, period=1)}, {"x": _w()},
             (("crash", "x"), ("sleep", 2100), ("crash", "x"))),
]


# -- the Erlang side --------------------------------------------------------------------------

def _atom(name: str) -> str:
    return "'" + name.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _erlang_value(kind: str, value: Any) -> str:
    """A step's part: numbers as they are, an awaited trace line as a string, the rest atoms."""
    if not isinstance(value, str):
        return str(value)
    return f'"{value}"' if kind == "await" and value != kind else _atom(value)


def _erlang_term(scenario: Scenario) -> str:
    spec = scenario.spec(Path("unused"))
    sups, workers = [], []
    for node in spec.walk():
        if isinstance(node, SupervisorSpec):
            sups.append(f"{{{_atom(node.name)}, {node.strategy}, {node.intensity}, {node.period:g}, {node.restart}, "
                        f"{node.shutdown}, [{', '.join(_atom(c.name) for c in node.children)}]}}")
        else:
            slow_stop_ms = node.args.get("slow_stop_ms", 0)
            workers.append(f"{{{_atom(node.name)}, {node.restart}, {node.shutdown}, {slow_stop_ms}}}")
    steps = ", ".join("{" + ", ".join(_erlang_value(step[0], p) for p in step) + "}" for step in scenario.steps)
    return (f'{{scenario, "{scenario.id}", {_atom(scenario.root)}, [{", ".join(sups)}], '
            f'[{", ".join(workers)}], [{steps}]}}.\n')


class _OtpRun:
    """Every scenario on Erlang/OTP in one VM, run in the background while ours run."""

    def __init__(self, scenarios: list[Scenario], workdir: Path) -> None:
        missing = [tool for tool in ("erlc", "erl") if shutil.which(tool) is None]
        if missing:
            pytest.fail(f"{' and '.join(missing)} not found: install Debian's erlang-nox (.ci/run does)")
        source = Path(__file__).with_name("otp") / "otp_diff.erl"
        subprocess.run(["erlc", "-o", str(workdir), str(source)], check=True, capture_output=True, timeout=60)
        terms, self._out = workdir / "scenarios.terms", workdir / "otp.trace"
        terms.write_text("".join(_erlang_term(s) for s in scenarios))
        self._errors = (workdir / "erl.err").open("w")
        self._erl = subprocess.Popen(["erl", "-noshell", "-pa", str(workdir), "-run", "otp_diff", "main",
                                      str(terms), str(self._out)],
                                     stdin=subprocess.DEVNULL, stdout=self._errors, stderr=subprocess.STDOUT)
        self._traces: dict[str, list[str]] | None = None

    def trace(self, scenario_id: str) -> list[str]:
        if self._traces is None:
            status = self._erl.wait(timeout=120)
            assert status == 0, f"erl exited {status}: {Path(self._errors.name).read_text()}"
            self._traces = {}
            current: list[str] = []
            for line in self._out.read_text().splitlines():
                if line.startswith("scenario "):
                    current = self._traces.setdefault(line.removeprefix("scenario "), [])
                elif line != "end":
                    current.append(line)
        return self._traces[scenario_id]

    def close(self) -> None:
        if self._erl.poll() is None:
            self._erl.kill()
            self._erl.wait()
        self._errors.close()


@pytest.fixture(scope="module")
def otp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_OtpRun]:
    run = _OtpRun(SCENARIOS, tmp_path_factory.mktemp("otp"))
    yield run
    run.close()


# -- our side ---------------------------------------------------------------------------------

@pytest.fixture(scope="module", params=MULTIPROCESS)
def node(request: pytest.FixtureRequest) -> Iterator[Node]:
    with Node(NodeConfig(base=request.param, admin_port=free_port())) as n:
        yield n


def _wait(predicate, what: str, timeout: float = 20.0) -> None:
    """Poll an observable condition (never a fixed sleep); fail if it does not hold in time."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def _settled(node: Node, spec: SupervisorSpec) -> bool:
    """Every live supervisor idle, and its view of its children agreeing with the registry (a
    child that has exited unregisters itself before its supervisor hears of it). A registry or a
    supervisor slow to answer (a loaded machine) is not settled yet: ask again, within _wait's time."""
    try:
        registered = node.registered()
    except CallError:
        return False
    if spec.name not in registered:
        return True  # the root gave up: it unregisters once all its children are stopped
    for sup in (s for s in spec.walk() if isinstance(s, SupervisorSpec) and s.name in registered):
        try:
            state = node.call(sup.name, "$state", timeout=2)
            children = node.call(sup.name, "which_children", timeout=2)
        except CallError:
            return False
        if not state["idle"] or state["phase"] != "running":
            return False
        for child in children:
            if child["state"] in ("starting", "stopping"):
                return False
            if child["state"] == "running" and registered.get(child["name"], ("",))[0] != child["incarnation"]:
                return False
    return True


def _step(node: Node, step: tuple[Any, ...], log: Path) -> None:
    kind, *args = step
    if kind == "await":
        _wait(lambda: args[0] in events(log), repr(args[0]))
        return
    if kind == "sleep":
        time.sleep(args[0] / 1000)  # the passage of time is what such a step tests
        return
    if kind == "kill":  # every one named, at once
        before = {name: node.registered()[name] for name in args}
        for _, pid in before.values():
            os.kill(pid, signal.SIGKILL)
        for name, (incarnation, _) in before.items():
            _wait(lambda: node.registered().get(name, ("",))[0] != incarnation, f"{name} {incarnation} gone")
        return
    name = args[0]
    incarnation, pid = node.registered()[name]
    if kind == "refuse_starts":  # its next starts fail, beginning with the restart after this crash
        Path(f"{log}.refuse.{name}").write_text(str(args[1]))
        kind = "crash"
    if kind == "crash":
        with pytest.raises(ActorCrashed):
            node.call(name, "crash")
    elif kind == "stop":
        assert node.call(name, "stop", args[1]) == "ok"
    _wait(lambda: node.registered().get(name, ("",))[0] != incarnation, f"{name} {incarnation} gone")


def _run_ours(node: Node, scenario: Scenario, log: Path) -> list[str]:
    spec = scenario.spec(log)
    node.start_tree(spec)
    try:
        return _script(node, scenario, spec, log)
    finally:
        node.stop_tree(timeout=10)  # a failed scenario must not leave its tree to the next (no-op once stopped)


def _script(node: Node, scenario: Scenario, spec: SupervisorSpec, log: Path) -> list[str]:
    names = {s.name for s in spec.walk()}
    # each registers itself as it confirms its start: a lookup may overtake that, and a root not
    # registered yet would look like one that gave up
    _wait(lambda: names <= set(node.registered()), "every name registered")
    settled = lambda: _settled(node, spec)  # noqa: E731
    _wait(settled, "the tree to settle")
    for step, after in zip(scenario.steps, (*scenario.steps[1:], ("",))):
        _step(node, step, log)
        if "await" not in (step[0], after[0]):  # an await waits for its line, amid the tree's reaction
            _wait(settled, f"the tree to settle after {step}")
    record(str(log), f"alive {' '.join(sorted(n for n in node.registered() if n in names))}")
    if spec.name in node.registered():
        assert node.stop_tree()
    else:
        exit_ = node.wait_for_exit(10)
        record(str(log), f"exit {spec.name} {exit_.reason if exit_ else 'none'}")
    return events(log)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.id for s in SCENARIOS])
def test_same_trace_as_otp(scenario: Scenario, node: Node, otp: _OtpRun, tmp_path: Path) -> None:
    ours = _run_ours(node, scenario, tmp_path / "trace.log")
    expected = otp.trace(scenario.id)
    assert expected, f"no OTP trace for {scenario.id}"
    if scenario.concurrent:
        cut, otp_cut = _index_of_alive(ours), _index_of_alive(expected)
        assert (sorted(ours[:cut]), ours[cut:]) == (sorted(expected[:otp_cut]), expected[otp_cut:])
    else:
        assert ours == expected


def _index_of_alive(trace: list[str]) -> int:
    return next(i for i, line in enumerate(trace) if line.startswith("alive"))


def test_the_chosen_differences_are_documented() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    assert "Supervision: where we differ from OTP" in readme
    for key in CHOSEN_DIFFERENCES:
        assert f"`{key}`" in readme, key


def test_scenarios_are_listed_in_the_docs() -> None:
    doc = (Path(__file__).parents[2] / "docs" / "supervision.md").read_text()
    for scenario in SCENARIOS:
        assert f"`{scenario.id}`" in doc, scenario.id
