"""Fixtures shared by every test area."""

from __future__ import annotations

from pathlib import Path

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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On xdist's workers (``-n``, pyproject's addopts), the modules directly under tests/ first.

    Those are the end-to-end modules that start daemons and emulators (5-60 s a test); with
    ``--dist loadfile`` each worker takes the next module in collection order, so the long ones
    go out while the other worker still has the short unit modules to balance, instead of one
    worker finishing them alone at the end. A run without workers keeps pytest's own order.
    """
    if not hasattr(config, "workerinput"):
        return
    here = Path(__file__).parent
    items.sort(key=lambda item: item.path.parent != here)  # stable: each module's own order is kept
