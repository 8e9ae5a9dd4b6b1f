"""The container tests' helpers: podman with the session's containers.conf, setup commands that fail
the test with their stderr, unique container names, and what the session measured."""

from __future__ import annotations

import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

#: what the session measured, printed at its end as one JSON line
MEASURED: dict[str, float] = {}


def run(*command: str, env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run a setup or build command; if it fails, fail the test with the end of its stderr."""
    result = subprocess.run(command, env=env, capture_output=True, timeout=timeout)
    if result.returncode != 0:
        pytest.fail(f"{' '.join(command[:4])} ... exited {result.returncode}: "
                    f"{result.stderr.decode(errors='replace').strip()[-2000:]}", pytrace=False)
    return result


@dataclass
class Podman:
    """Runs podman with this session's containers.conf."""

    env: dict[str, str] = field(default_factory=dict)

    def __call__(self, *args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
        if check:
            return run("podman", *args, env=self.env, timeout=timeout)
        return subprocess.run(["podman", *args], env=self.env, capture_output=True, timeout=timeout)

    def exists(self, image: str) -> bool:
        return self("image", "exists", image, check=False).returncode == 0


def container_name(prefix: str) -> str:
    """A name no other run on this machine uses."""
    return f"tai-{prefix}-{uuid.uuid4().hex[:10]}"
