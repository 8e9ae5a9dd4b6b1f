"""Run thespian's own test suite (shipped in the installed package) against one system base.

thespian's ``asys`` fixture is parametrised over thespian's own bases; this plugin replaces it
(before the test modules import it with ``from thespian.test import *``) by one whose only
parameter is the base under test, keeps only the items of that base, and excludes by name the
tests of features the base does not offer (``EXCLUDED``, reasons in docs/thespian-base.md).
Excluded tests are reported as deselected with their reason, never skipped silently.

    .venv/bin/python -m pytest -p tests.thespian_suite.plugin --pyargs thespian.test \
        [--thespian-base multiprocUnixBase]
"""

from __future__ import annotations

from typing import Any

import pytest
import thespian.test
from thespian.actors import ActorSystem

from tai_autonomics.runtime import unixbase

BASES = ("simpleSystemBase", "multiprocQueueBase", "multiprocUDPBase", "multiprocTCPBase", unixbase.NAME)

_CONVENTIONS = "conventions of several actor systems (Convention Address.IPv4): a node is one system"
_TWO_SYSTEMS = ("actors of two actor systems messaging each other: each node has its own socket directory "
                "and secret, and refuses connections without it")
EXCLUDED: dict[str, dict[str, str]] = {
    unixbase.NAME: {
        "test_actorSystemRestart.py::TestFuncSystemRestart::testConnectToExistingActorSystem": _TWO_SYSTEMS,
        "test_preRegistration.py": "pre-registering a remote actor system by address: " + _CONVENTIONS,
        "test_sourceLoading.py::TestFuncMultipleSystemsLoadSource": _CONVENTIONS,
        "test_updateSystemCapabilities.py::TestFuncCapabilityUpdates": "capability updates across a trio of "
                                                                       "systems in a convention: " + _CONVENTIONS,
        "test_HAConvention.py": _CONVENTIONS,
        "test_multipleActorSystems.py": _CONVENTIONS,
        "test_manyActorSystems.py": _CONVENTIONS,
        "test_msg_ConventionUpdate.py": _CONVENTIONS,
        "test_requireCapability.py": _CONVENTIONS,
    },
}
"""Per base: test file (or file::test) → why the base does not offer what it tests."""


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--thespian-base", default=unixbase.NAME, choices=BASES,
                     help="the system base thespian's suite runs against")


def pytest_configure(config: pytest.Config) -> None:
    base = config.getoption("--thespian-base")

    @pytest.fixture(params=[base])
    def asys(request: pytest.FixtureRequest) -> Any:
        caps: dict[str, Any] = {"Foo Allowed": True, "Cows Allowed": True, "Dogs Allowed": True, "dog": "food"}
        if base.startswith(("multiprocTCP", "multiprocUDP")):
            caps["Admin Port"] = thespian.test.get_free_admin_port()
            caps["Convention Address.IPv4"] = "", caps["Admin Port"]
        elif base == unixbase.NAME:
            caps["Admin Port"] = thespian.test.get_free_admin_port()
        system = ActorSystem(systemBase=base, capabilities=caps,
                             logDefs=thespian.test.simpleActorTestLogging() if base.startswith("multiproc") else False,
                             transientUnique=True)
        system.base_name = base
        system.port_num = caps.get("Admin Port")
        system.txonly = False
        request.addfinalizer(system.shutdown)
        return system

    original_similar_asys = thespian.test.similar_asys

    def similar_asys(asys: Any, in_convention: bool = True, start_wait: bool = True,
                     capabilities: dict[str, Any] | None = None) -> Any:
        """thespian's, except that a second system of this base gets an admin of its own (thespian
        gives one only to the TCP and UDP bases; without it both would share one admin)."""
        if asys.base_name != unixbase.NAME:
            return original_similar_asys(asys, in_convention, start_wait, capabilities)
        caps = {**(capabilities or {}), "Admin Port": thespian.test.get_free_admin_port()}
        other = ActorSystem(systemBase=asys.base_name, capabilities=caps,
                            logDefs=thespian.test.simpleActorTestLogging(), transientUnique=True)
        other.base_name, other.port_num = asys.base_name, caps["Admin Port"]
        return other

    thespian.test.asys = asys
    thespian.test.similar_asys = similar_asys


def _excluded(base: str, item: pytest.Item) -> str | None:
    """The reason ``item`` is excluded for ``base``: its file, class or test is named in EXCLUDED."""
    path, *names = item.nodeid.split("[")[0].split("::")
    key = "::".join([path.rsplit("/", 1)[-1], *names])
    return next((reason for name, reason in EXCLUDED.get(base, {}).items()
                 if key == name or key.startswith(name + "::")), None)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Keep the items parametrised with the base (the others run on thespian's in-process base or
    on another one), less the excluded ones."""
    base = config.getoption("--thespian-base")
    keep, drop, excluded = [], [], []
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        reason = _excluded(base, item)
        if base not in params.values():
            drop.append(item)
        elif reason:
            drop.append(item)
            excluded.append((item.nodeid, reason))
        else:
            keep.append(item)
    items[:] = keep
    config.hook.pytest_deselected(items=drop)
    config._thespian_excluded = excluded  # type: ignore[attr-defined]


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    excluded = getattr(config, "_thespian_excluded", [])
    if excluded:
        terminalreporter.section(f"excluded for {config.getoption('--thespian-base')} (not offered)")
        for nodeid, reason in excluded:
            terminalreporter.write_line(f"{nodeid}: {reason}")
