"""The package as a user installs it: the built wheel (not the editable install), in a fresh venv,
run from an empty directory, where no repository file can stand in for what the wheel lacks."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
from pathlib import Path

import httpx
import pytest

from tai_autonomics.config import packaged_supervision
from tai_autonomics.runtime import _process
from tests.helpers import free_port, wait_until, zombie

REPO = Path(__file__).resolve().parents[1]


def test_the_repository_tree_file_is_the_packaged_one() -> None:
    """The top-level supervision.toml (copied into the image by the Containerfile) must not drift
    from the canonical tree shipped in the package."""
    assert packaged_supervision() == REPO / "tai_autonomics" / "supervision.toml"
    assert (REPO / "supervision.toml").read_bytes() == packaged_supervision().read_bytes()


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with only the wheel of this checkout installed (``--no-deps``); its bin dir.

    The dependencies are not installed again (minutes, and the index may be offline): the venv
    sees them through a .pth file naming a directory of links to this environment's
    site-packages entries, leaving out tai_autonomics itself and its editable-install hooks, so
    the only tai_autonomics the venv can import is the wheel's.
    """
    tmp = tmp_path_factory.mktemp("wheel")
    source = _mkdir(tmp / "src")  # a copy, so building writes nothing into the repository
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    shutil.copytree(REPO / "tai_autonomics", source / "tai_autonomics",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp / "dist"), str(source)])
    wheel = next((tmp / "dist").glob("tai_autonomics-*.whl"))

    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    deps = _mkdir(tmp / "deps")
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if not entry.name.startswith(("tai_autonomics", "__editable__", "_distutils_hack")) and entry.suffix != ".pth":
            (deps / entry.name).symlink_to(entry)
    python = venv / "bin" / "python"
    site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).strip())
    (site / "dependencies.pth").write_text(f"{deps}\n")
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q", str(wheel)])
    return venv / "bin"


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _clean_env() -> dict[str, str]:
    """No PYTHONPATH (the repository must not leak in) and no tokens of the calling shell."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("TAI_TOKEN_")}


def _run(command: list[str], cwd: Path | None = None) -> str:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300, env=_clean_env(),
                            check=False)
    assert result.returncode == 0, f"{command}: {result.stdout[-2000:]}{result.stderr[-2000:]}"
    return result.stdout


def test_the_installed_wheel_runs_tree_and_foreground_in_an_empty_directory(installed: Path, tmp_path: Path) -> None:
    empty = _mkdir(tmp_path / "empty")
    where = _run([str(installed / "python"), "-c", "import tai_autonomics; print(tai_autonomics.__file__)"], empty)
    assert Path(where.strip()).is_relative_to(installed.parent), where  # the wheel, not the checkout

    tree = _run([str(installed / "tai-autonomics"), "tree"], empty)
    assert tree.splitlines()[0] == "root (one_for_one, intensity 10 per 60 s)" and "Acquisition" in tree

    port = free_port()
    out = tmp_path / "foreground.out"
    with open(out, "w") as sink:  # a file, not a pipe: thespian's admin keeps the daemon's stdout open
        proc = subprocess.Popen([str(installed / "tai-autonomics"), "foreground", "--port", str(port)], cwd=empty,
                                stdout=sink, stderr=subprocess.STDOUT, env=_clean_env())
    pids: list[int] = []
    try:
        def ready() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200
            except httpx.TransportError:
                return proc.poll() is not None
        wait_until(ready, 60, what="/readyz of the installed daemon")
        assert proc.poll() is None, out.read_text()[-3000:]
        pids = [proc.pid, *_process.descendants(proc.pid)]
        assert len(pids) >= 10  # the daemon, the sandbox, the admin, the logger, the registry, the tree
        ran = [e["supervision"] for e in _events(out) if e.get("event") == "tree_started"]
        assert ran == [str(packaged_supervision_of(installed, empty))]  # the tree it ran: the wheel's
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0, out.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            for pid in [proc.pid, *_process.descendants(proc.pid)][::-1]:
                _process.kill(pid)
            proc.wait(10)
    assert [p for p in pids if os.path.exists(f"/proc/{p}") and not zombie(p)] == []
    assert (empty / "var" / "daemon.pid").exists()  # the dev profile's data dir: ./var of where it ran


def packaged_supervision_of(bin_dir: Path, cwd: Path) -> Path:
    """The tree file the wheel installed into the venv of ``bin_dir``."""
    found = _run([str(bin_dir / "python"), "-c",
                  "from tai_autonomics.config import packaged_supervision; print(packaged_supervision())"], cwd)
    assert Path(found.strip()).is_relative_to(bin_dir.parent)
    return Path(found.strip())


def _events(out: Path) -> list[dict]:
    return [json.loads(line) for line in out.read_text().splitlines() if line.startswith("{")]
