"""Fixtures shared by every test area."""

from __future__ import annotations

import pytest

from tai_autonomics import logs

# Fixtures shared across areas, loaded as plugins (pytest reads pytest_plugins only in the root conftest);
# plain helpers are in tests/helpers.py. No test module imports a conftest.
pytest_plugins = [
    "tests.fixtures.runtime", "tests.fixtures.firestore", "tests.fixtures.sandbox", "tests.fixtures.trust",
]


@pytest.fixture(scope="session", autouse=True)
def _json_logs() -> None:
    logs.configure("INFO")
