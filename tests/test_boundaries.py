"""The package's boundaries (issue 12 item 5): what a module may import.

The Google client library for Firestore is imported only where a Firestore ledger is configured
(:mod:`tai_autonomics.ledger.configured` chooses the store): a SQLite daemon, the CLI and the
ledger's public API load without it.
"""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize("module", [
    "tai_autonomics.ledger",
    "tai_autonomics.ledger.configured",
    "tai_autonomics.actors.receipt_ledger",
    "tai_autonomics.actors.cert_manager",
    "tai_autonomics.cli",
    "tai_autonomics.cli.ledger",
    "tai_autonomics.cli.daemon",
])
def test_importing_the_ledger_its_actor_and_the_cli_does_not_import_firestore(module: str) -> None:
    code = f"import sys, {module}; print(sorted(m for m in sys.modules if 'firestore' in m))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.strip() == "[]", f"{module} imports {result.stdout.strip()}"
