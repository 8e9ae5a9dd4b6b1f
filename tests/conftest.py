"""Fixtures shared by every test area."""

from __future__ import annotations

import pytest
from hypothesis import settings

from tai_autonomics import logs

# No per-example deadline: hypothesis's default 200 ms is a timing assertion, and on a 2-core machine
# running two xdist workers (and actor processes) an example is sometimes slower than that through no
# fault of the code (tests/sandbox/test_faults.py failed so once). Speed is the benchmarks' business.
settings.register_profile("tai", deadline=None)
settings.load_profile("tai")

# Fixtures shared across areas, loaded as plugins (pytest reads pytest_plugins only in the root conftest);
# plain helpers are in tests/helpers.py. No test module imports a conftest.
pytest_plugins = [
    "tests.fixtures.runtime", "tests.fixtures.firestore", "tests.fixtures.sandbox", "tests.fixtures.trust",
]


@pytest.fixture(scope="session", autouse=True)
def _json_logs() -> None:
    logs.configure("INFO")
