"""A real daemon for the tests that need one: ``tai-autonomics foreground`` in a subprocess on a
release file of the dev profile, with its output in a file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx

from tai_autonomics.runtime import _process
from tests.helpers import free_port, wait_until

REPO = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "tai_autonomics"]


def run_cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def release(tmp_path: Path, supervision: Path = REPO / "supervision.toml") -> Path:
    rel = tmp_path / "test.toml"
    rel.write_text(f'profile = "dev"\nsupervision = "{supervision}"\ndata_dir = "{tmp_path / "var"}"\n'
                   f'[system]\nadmin_port = {free_port()}\n')
    return rel


class Daemon:
    """A ``foreground`` subprocess whose output goes to a file (thespian's admin keeps it open).

    ``rel``: its release file; None runs the dev profile's defaults with ``options`` (e.g. ``--data-dir``);
    ``env``: variables set for it on top of this process's (tokens, host and Cloud Run's left out).
    """

    def __init__(self, tmp_path: Path, rel: Path | None, name: str = "daemon", options: tuple[str, ...] = (),
                 env: dict[str, str] | None = None) -> None:
        self.out = tmp_path / f"{name}.out"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        inherited = {k: v for k, v in os.environ.items() if not k.startswith(("TAI_TOKEN_", "TAI_HOST", "K_SERVICE"))}
        env = inherited | (env or {})
        config = ("--config", str(rel)) if rel is not None else ()
        with open(self.out, "w") as out:
            self.proc = subprocess.Popen([*CLI, "foreground", *config, *options, "--port", str(self.port)], cwd=REPO,
                                         stdout=out, stderr=subprocess.STDOUT, env=env)

    def lines(self) -> list[dict]:
        text = self.out.read_text()
        complete = text[:text.rfind("\n") + 1]  # the daemon may be half-way through writing its last line
        return [json.loads(line) for line in complete.splitlines() if line.startswith("{")]

    def wait_for_event(self, event: str, timeout: float = 30) -> None:
        wait_until(lambda: any(e.get("event") == event for e in self.lines()) or self.proc.poll() is not None,
                   timeout, what=event)
        assert any(e.get("event") == event for e in self.lines()), self.out.read_text()[-3000:]

    def wait_ready(self, timeout: float = 60) -> None:
        """Poll ``/readyz`` over HTTP until it answers 200 (fail early if the daemon exits)."""
        def ready() -> bool:
            try:
                return httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200
            except httpx.TransportError:
                return self.proc.poll() is not None
        wait_until(ready, timeout, what="/readyz")
        assert self.proc.poll() is None, self.out.read_text()[-3000:]

    def processes(self) -> list[int]:
        return [self.proc.pid, *_process.descendants(self.proc.pid)]

    def kill(self) -> None:
        for pid in self.processes()[::-1]:
            _process.kill(pid)
        self.proc.wait(10)
