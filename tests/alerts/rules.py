"""What the alert tests share: rel/alerts.yaml, its unit tests, promtool, and the metric names an
expression selects."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "rel" / "alerts.yaml"
RULE_TESTS = REPO / "tests" / "alerts" / "alerts_test.yaml"
INSTALL = ("promtool is not installed: it ships in the Debian package `prometheus` "
           "(apt-get install -y prometheus; .ci/run installs it)")

# PromQL words that look like identifiers but select nothing (binary operators, modifiers, literals)
_KEYWORDS = frozenset({"and", "or", "unless", "bool", "offset", "inf", "nan", "atan2"})
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_TOKEN = re.compile(r"(?P<number>\d+(?:\.\d*)?(?:[eE][+-]?\d+)?)|(?P<name>[A-Za-z_:][A-Za-z0-9_:]*)")


def alert_rules() -> list[dict[str, Any]]:
    """Every alerting rule of rel/alerts.yaml, in order."""
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    """Run promtool from the repository root; a missing promtool fails the test saying how to install it."""
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(INSTALL, pytrace=False)
    return subprocess.run([path, *args], cwd=REPO, capture_output=True, text=True, timeout=120, check=False)


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects.

    A small tokenizer, enough for alert rules: strings, label matchers ``{...}``, ranges ``[...]``,
    ``offset`` durations and grouping lists (``by (...)``) are dropped; of the identifiers left,
    those followed by ``(`` are functions or aggregations, and keywords select nothing.
    """
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)
    text = re.sub(r"\{[^}]*\}|\[[^\]]*\]|\boffset\s+\S+", " ", text)
    text = _GROUPING.sub(" ", text)
    names = set()
    for token in _TOKEN.finditer(text):
        name = token.group("name")
        if name and name.lower() not in _KEYWORDS and not text[token.end():].lstrip().startswith("("):
            names.add(name)
    return names
