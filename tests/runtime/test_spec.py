"""supervision.toml validation: every error names the file, the key path and the reason."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tai_autonomics.errors import ConfigError
from tai_autonomics.runtime import SupervisorSpec, WorkerSpec, load_tree, parse_tree, render_tree
from tai_autonomics.runtime.spec import BRUTAL_KILL, Shutdown

REPO = Path(__file__).resolve().parents[2]
ECHO = "tests.runtime.actors:Echo"
GOOD = {
    "root": "root",
    "supervisors": {"root": {"strategy": "one_for_one", "intensity": 3, "period": 10, "children": ["a", "ops"]},
                    "ops": {"strategy": "rest_for_one", "children": ["b"]}},
    "workers": {"a": {"actor": ECHO, "restart": "transient", "shutdown": 100},
                "b": {"actor": ECHO, "shutdown": "brutal_kill", "args": {"k": 1}}},
}


def broken(change) -> dict:
    data = copy.deepcopy(GOOD)
    change(data)
    return data


def test_the_repository_tree_loads_and_renders() -> None:
    spec = load_tree(REPO / "supervision.toml")
    names = [s.name for s in spec.walk()]
    assert names == ["root", "ReceiptLedger", "CertManager", "InsuranceClient", "ProdMode", "Notifier",
                     "operations", "Pricing", "Publisher", "Acquisition"]
    text = render_tree(spec)
    assert text.splitlines()[0] == "root (one_for_one, intensity 10 per 60 s)"
    assert "└── operations (one_for_one, intensity 5 per 30 s)" in text


def test_good_tree_parses() -> None:
    spec = parse_tree(GOOD, "s.toml")
    assert isinstance(spec, SupervisorSpec) and spec.intensity == 3
    a, ops = spec.children
    assert a == WorkerSpec("a", ECHO, "transient", Shutdown.from_ms(100), {})
    assert ops.strategy == "rest_for_one" and ops.children[0].shutdown == BRUTAL_KILL
    assert a.shutdown.seconds == 0.1 and BRUTAL_KILL.seconds is None


@pytest.mark.parametrize("ms", [1, 100, 1234, 5000, 3_600_000])
def test_a_shutdown_timeout_is_held_in_seconds_and_written_in_ms(ms: int) -> None:
    shutdown = Shutdown.from_ms(ms)
    assert shutdown.seconds == ms / 1000 and str(shutdown) == str(ms)


@pytest.mark.parametrize(("kind", "seconds"), [("timeout", None), ("timeout", 0.0), ("brutal_kill", 1.0),
                                               ("infinity", 5.0)])
def test_only_a_timeout_has_seconds_and_they_are_positive(kind, seconds) -> None:
    with pytest.raises(ValueError):
        Shutdown(kind, seconds)


@pytest.mark.parametrize(("change", "key", "reason"), [
    (lambda d: d["supervisors"]["root"].update(strategy="one_for_some"), "supervisors.root.strategy", "unknown strategy"),
    (lambda d: d["workers"]["a"].update(restart="sometimes"), "workers.a.restart", "unknown restart type"),
    (lambda d: d["supervisors"]["root"]["children"].append("a"), "supervisors.root.children[2]", "duplicate name"),
    (lambda d: d["workers"].update(ops={"actor": ECHO}), "workers.ops", "duplicate name"),
    (lambda d: d["supervisors"]["root"]["children"].append("ghost"), "supervisors.root.children[2]", "no worker or supervisor named 'ghost'"),
    (lambda d: d["workers"]["a"].update(actor="tests.runtime.actors:Nope"), "workers.a.actor", "unknown actor class"),
    (lambda d: d["workers"]["a"].update(actor="no.such.module:X"), "workers.a.actor", "unknown actor class"),
    (lambda d: d["workers"]["a"].update(actor="json:JSONDecoder"), "workers.a.actor", "not a Server subclass"),
    (lambda d: d["workers"]["a"].update(actor="nocolon"), "workers.a.actor", "unknown actor class"),
    (lambda d: d["supervisors"]["root"].update(intensity=-1), "supervisors.root.intensity", "must be at least 0"),
    (lambda d: d["supervisors"]["root"].update(intensity="3"), "supervisors.root.intensity", "must be an integer"),
    (lambda d: d["supervisors"]["root"].update(intensity=True), "supervisors.root.intensity", "must be an integer"),
    (lambda d: d["supervisors"]["root"].update(period=0), "supervisors.root.period", "positive finite"),
    (lambda d: d["supervisors"]["root"].update(period=float("nan")), "supervisors.root.period", "positive finite"),
    (lambda d: d["workers"]["a"].update(shutdown=-5), "workers.a.shutdown", "must be positive"),
    (lambda d: d["workers"]["a"].update(shutdown="soon"), "workers.a.shutdown", "unknown shutdown"),
    (lambda d: d["workers"]["a"].update(shutdown=1.5), "workers.a.shutdown", "must be an integer"),
    (lambda d: d["workers"]["a"].update(args=[1]), "workers.a.args", "must be a table"),
    (lambda d: d["workers"]["a"].update(restrat="permanent"), "workers.a.restrat", "unknown key"),
    (lambda d: d.update(root="nobody"), "root", "no supervisor named 'nobody'"),
    (lambda d: d.pop("root"), "root", "missing"),
    (lambda d: d["supervisors"]["ops"]["children"].append("root"), "supervisors.ops.children[1]", "cycle: root -> ops -> root"),
    (lambda d: d["supervisors"]["ops"]["children"].append("ops"), "supervisors.ops.children[1]", "cycle"),
    (lambda d: d["workers"].update(spare={"actor": ECHO}), "workers.spare", "not part of the tree"),
    (lambda d: d["workers"].update({"bad name": {"actor": ECHO}}), "workers.bad name", "invalid name"),
    (lambda d: d["supervisors"]["root"].update(children="a"), "supervisors.root.children", "list of child names"),
    (lambda d: d.update(extra=1), "extra", "unknown key"),
])
def test_each_error_names_file_key_and_reason(change, key: str, reason: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_tree(broken(change), "supervision.toml")
    assert err.value.file == "supervision.toml"
    assert err.value.key == key
    assert reason in err.value.reason
    assert str(err.value).startswith(f"supervision.toml: {key}: ")


def test_unreadable_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read file"):
        load_tree(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("root = [unclosed\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_tree(bad)
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_tree(binary)


_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.floats(allow_nan=True) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(section=st.sampled_from(["supervisors.root", "supervisors.ops", "workers.a", "workers.b"]),
       key=st.sampled_from(["strategy", "intensity", "period", "children", "restart", "shutdown", "actor", "args", "x"]),
       value=_values)
def test_arbitrary_values_give_a_config_error_or_a_valid_tree(section: str, key: str, value) -> None:
    table, name = section.split(".")
    data = broken(lambda d: d[table][name].__setitem__(key, value))
    try:
        spec = parse_tree(data, "s.toml")
    except ConfigError as err:
        assert err.key.startswith(section) or err.key.startswith(("workers.", "supervisors."))
    else:
        assert [s.name for s in spec.walk()][0] == "root"


def test_with_worker_args_reaches_every_worker_and_file_args_win() -> None:
    from tai_autonomics.runtime import with_worker_args

    spec = with_worker_args(parse_tree(GOOD, "s.toml"), {"context": {"data_dir": "/x"}, "k": 0})
    a, ops = spec.children
    assert a.args == {"context": {"data_dir": "/x"}, "k": 0}
    assert ops.children[0].args == {"context": {"data_dir": "/x"}, "k": 1}
