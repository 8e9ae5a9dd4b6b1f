"""The validation helpers (tai_autonomics/validation.py), property-tested: a bool is never a number,
numbers are finite and in range, JSON from outside has no duplicate keys and no NaN/Infinity."""

from __future__ import annotations

import ast
import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tai_autonomics import validation
from tai_autonomics.errors import ConfigError, InvalidRequest
from tai_autonomics.validation import (
    is_int,
    is_number,
    loads_json,
    valid_int,
    valid_number,
    valid_seconds,
    valid_string,
    why_not_json,
)

FINITE = st.integers(-(2**1000), 2**1000) | st.floats(allow_nan=False, allow_infinity=False)
NOT_NUMBERS = (st.booleans() | st.none() | st.text(max_size=5) | st.just(math.nan) | st.just(math.inf)
               | st.just(-math.inf) | st.lists(st.integers(), max_size=2) | st.dictionaries(st.text(max_size=2),
                                                                                          st.integers(), max_size=2))
JSON = st.recursive(st.none() | st.booleans() | FINITE | st.text(max_size=10),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                    max_leaves=10)


@given(FINITE, FINITE, FINITE)
def test_a_finite_number_in_range_is_taken_as_a_float_and_one_out_of_range_is_refused(value, a, b) -> None:
    low, high = min(a, b), max(a, b)
    if low <= value <= high:
        assert valid_number(value, "x", minimum=low, maximum=high) == float(value)
    else:
        with pytest.raises(InvalidRequest) as err:
            valid_number(value, "x", minimum=low, maximum=high)
        assert err.value.detail == {"field": "x"}


def test_an_int_beyond_a_floats_range_is_not_a_finite_number() -> None:
    assert is_number(2**1000) and not is_number(2**1024) and not is_number(-(2**1024))
    with pytest.raises(InvalidRequest):
        valid_number(10**400, "x")


@given(NOT_NUMBERS)
def test_bools_nan_infinity_and_non_numbers_are_never_numbers(value: Any) -> None:
    assert not is_number(value)
    with pytest.raises(InvalidRequest) as err:
        valid_number(value, "timeout_s")
    assert err.value.detail == {"field": "timeout_s"} and "'timeout_s' must be a number" in err.value.message
    with pytest.raises(InvalidRequest):
        valid_seconds(value, "timeout_s")


@given(st.integers() | st.floats() | st.booleans())
def test_an_int_is_an_int_and_not_a_bool_or_float(value: Any) -> None:
    assert is_int(value) == (type(value) is int)
    if type(value) is int:
        assert valid_int(value, "n") == value
    else:
        with pytest.raises(InvalidRequest):
            valid_int(value, "n")


@given(st.floats(allow_nan=False, allow_infinity=False, min_value=-1e6, max_value=1e6))
def test_durations_are_zero_or_more_and_positive_ones_above_zero(value: float) -> None:
    for positive, takes in ((False, value >= 0), (True, value > 0)):
        if takes:
            assert valid_seconds(value, "s", positive=positive) == value
        else:
            with pytest.raises(InvalidRequest):
                valid_seconds(value, "s", positive=positive)


def test_a_caller_chooses_its_own_refusal() -> None:
    with pytest.raises(ConfigError) as err:
        valid_int(True, "system.admin_port", error=lambda name, expected: ConfigError("tai.toml", name, expected))
    assert (err.value.key, err.value.reason) == ("system.admin_port", "an integer")


@given(st.text(max_size=12), st.integers(0, 12))
def test_strings_are_bounded_and_match_their_pattern(value: str, max_len: int) -> None:
    takes = len(value) <= max_len and value.isascii() and value.isalnum()
    if takes:
        assert valid_string(value, "s", pattern=r"[A-Za-z0-9]+", max_len=max_len) == value
    else:
        with pytest.raises(InvalidRequest):
            valid_string(value, "s", pattern=r"[A-Za-z0-9]+", max_len=max_len)


@given(JSON)
def test_strict_json_reads_what_json_reads_when_it_is_clean(value: Any) -> None:
    text = json.dumps(value)
    assert loads_json(text) == json.loads(text)
    assert loads_json(text.encode()) == json.loads(text)


@given(st.dictionaries(st.text(max_size=5), JSON, min_size=1, max_size=3), st.data())
def test_a_key_given_twice_is_refused_at_any_depth(value: dict[str, Any], data: st.DataObject) -> None:
    key = data.draw(st.sampled_from(sorted(value)))
    twice = json.dumps(value)[:-1] + f", {json.dumps(key)}: 0}}"
    for text in (twice, f"[{twice}]", f'{{"outer": {twice}}}'):
        with pytest.raises(ValueError) as err:
            loads_json(text)
        assert why_not_json(err.value) == "duplicate keys in an object"


@pytest.mark.parametrize("word", ["NaN", "Infinity", "-Infinity", "1e999", "-1e999"])
def test_nan_and_infinity_are_refused_wherever_they_stand(word: str) -> None:
    for text in (word, f"[1, {word}]", f'{{"a": {{"b": {word}}}}}'):
        with pytest.raises(ValueError):
            loads_json(text)


def test_why_not_json_says_where_it_broke() -> None:
    with pytest.raises(ValueError) as err:
        loads_json('{"a": }')
    assert why_not_json(err.value).endswith("at line 1 column 7")
    with pytest.raises(ValueError) as err:
        loads_json(b"\xff")
    assert why_not_json(err.value) == "not UTF-8"
    with pytest.raises(RecursionError) as deep:
        loads_json("[" * 100_000 + "]" * 100_000)
    assert why_not_json(deep.value) == "nested too deeply"


def test_the_module_is_a_leaf_importing_nothing_of_ours_but_the_errors() -> None:
    tree = ast.parse(Path(validation.__file__).read_text())
    ours = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
            and (node.module or "").startswith("tai_autonomics")}
    ours |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
             if alias.name.startswith("tai_autonomics")}
    assert ours == {"tai_autonomics.errors"}
