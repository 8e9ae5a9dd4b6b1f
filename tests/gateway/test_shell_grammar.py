"""The remote shell's grammar: every line is a command or an ``invalid_command`` refusal, never
anything else, and what parses means what was typed."""

from __future__ import annotations

import json
import math

from hypothesis import given
from hypothesis import strategies as st

from tai_autonomics.gateway.shell_commands import COMMANDS, MAX_LINE, Command, ShellInputError, parse
from tai_autonomics.logs import LOG_LEVELS

NAMES = st.from_regex(r"[A-Za-z_][A-Za-z0-9_.-]{0,20}", fullmatch=True)
TYPES = st.from_regex(r"\$?[A-Za-z_][A-Za-z0-9_]{0,20}", fullmatch=True)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12)
SPACES = st.sampled_from([" ", "  ", "\t", " \t "])


@given(st.one_of(st.text(), st.sampled_from(list(COMMANDS)).flatmap(lambda c: st.text().map(lambda t: f"{c} {t}")),
                 st.binary().map(lambda b: b.decode("latin-1")), st.integers(), st.none()))
def test_any_input_is_a_command_or_an_invalid_command_refusal(line) -> None:
    try:
        command = parse(line)
    except ShellInputError as refused:
        assert refused.code == "invalid_command" and refused.message
        return
    assert isinstance(command, Command) and command.name in COMMANDS
    assert command.line == line.strip()


@given(st.sampled_from(["call", "cast"]), NAMES, TYPES, JSON, SPACES)
def test_a_call_payload_is_exactly_the_json_typed(kind, actor, msg_type, value, gap) -> None:
    command = parse(f"{kind}{gap}{actor}{gap}{msg_type}{gap}{json.dumps(value)}")
    assert (command.name, command.args) == (kind, (actor, msg_type))
    assert command.payload == value


@given(NAMES, st.sampled_from(["which_children", "state", "restart"]), SPACES)
def test_commands_on_one_actor_take_its_name(name, kind, gap) -> None:
    assert parse(f"{gap}{kind}{gap}{name}{gap}").args == (name,)


@given(st.integers(min_value=-5, max_value=2000))
def test_receipts_takes_a_count_from_1_to_1000(n) -> None:
    if 1 <= n <= 1000:
        assert parse(f"receipts {n}").args == (str(n),)
    else:
        try:
            parse(f"receipts {n}")
        except ShellInputError:
            return
        raise AssertionError(f"receipts {n} was accepted")


def test_fixed_forms() -> None:
    assert parse("mode").args == () and parse("mode resume").args == ("resume",)
    assert parse("call a b").payload is None
    assert all(parse(f"log_level {level.lower()}").args == (level.lower(),) for level in LOG_LEVELS)
    assert parse("help restart").args == ("restart",)
    for bad in ("call a b NaN", "call a b Infinity", "call a b [1, -Infinity]", "call a b 1e400"):
        try:
            parse(bad)
        except ShellInputError as refused:
            assert "not JSON" in refused.message or "too large" in refused.message
        else:
            raise AssertionError(f"{bad!r} was accepted")
    assert math.isfinite(parse("call a b 1e308").payload)
    try:
        parse("tree" + " " * MAX_LINE)
    except ShellInputError as refused:
        assert refused.detail == {"length": MAX_LINE + 4}
    else:
        raise AssertionError("an over-long line was accepted")
