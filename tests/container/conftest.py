"""The image, built and run with podman as CI runs it (``.ci/run``; not part of the default suite).

These machines reach Debian's and Python's package registries but no image registry, so the
base images are made here the first time and kept in podman's storage: a Debian minbase from
debootstrap, and from it a stand-in for ``python:3.11-slim`` (Debian's Python 3.11.2, see
``python-slim.Containerfile``). Later runs reuse both and only build the project's image.

Tools missing from the machine are installed with apt-get; if that fails the session fails
and says so: a container test that cannot run is a failure, never a skip.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.container.support import MEASURED, REPO, Podman, run

HERE = Path(__file__).resolve().parent
IMAGE = "localhost/tai-autonomics:ci"
DEBIAN_BASE = "localhost/debian:bookworm-minbase"
PYTHON_BASE = "docker.io/library/python:3.11-slim"
APT_PACKAGES = ("podman", "buildah", "debootstrap", "runc", "slirp4netns", "uidmap", "containernetworking-plugins",
                "fuse-overlayfs")
LOCAL_CA_DIR = Path("/usr/local/share/ca-certificates")
# crun fails on these machines (hybrid cgroups); without the ulimits `podman run` fails on rlimits
CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
[engine]
runtime = "runc"
"""


def pytest_terminal_summary(terminalreporter) -> None:
    if MEASURED:
        terminalreporter.write_line("container measurements: " + json.dumps(MEASURED, sort_keys=True))


def _install_tools() -> None:
    if all(shutil.which(tool) for tool in ("podman", "debootstrap")):
        return
    apt = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    run("apt-get", "update", "-qq", env=apt)
    run("apt-get", "install", "-y", "-qq", *APT_PACKAGES, env=apt)


def _debian_mirror() -> str:
    """The Debian URI this machine's own apt sources use for bookworm (the only mirror reachable)."""
    targets = run("apt-get", "indextargets", "--format", "$(RELEASE) $(REPO_URI)").stdout.decode().splitlines()
    for line in targets:
        release, _, uri = line.partition(" ")
        if release == "bookworm":
            return uri
    pytest.fail(f"no bookworm source in this machine's apt configuration: {targets}", pytrace=False)


def _make_debian_base(podman: Podman, work: Path) -> None:
    rootfs, tarball = work / "rootfs", work / "rootfs.tar"
    run("debootstrap", "--variant=minbase", "bookworm", str(rootfs), _debian_mirror())
    run("tar", "-C", str(rootfs), "--numeric-owner", "-cf", str(tarball), ".")
    shutil.rmtree(rootfs)
    podman("import", str(tarball), DEBIAN_BASE)
    tarball.unlink()


def _make_python_base(podman: Podman, work: Path) -> None:
    context = work / "python-slim"
    context.mkdir()
    for cert in LOCAL_CA_DIR.glob("*.crt"):
        shutil.copy(cert, context)
    if not any(context.glob("*.crt")):  # COPY *.crt needs one; an empty file adds no trust
        (context / "none.crt").write_text("")
    podman("build", "--pull=never", "-f", str(HERE / "python-slim.Containerfile"), "-t", PYTHON_BASE, str(context))


@pytest.fixture(scope="session")
def podman(tmp_path_factory: pytest.TempPathFactory) -> Podman:
    """podman installed and configured, with both base images in its storage."""
    _install_tools()
    work = tmp_path_factory.mktemp("podman")
    conf = work / "containers.conf"
    conf.write_text(CONTAINERS_CONF)
    tool = Podman({**os.environ, "CONTAINERS_CONF": str(conf)})
    started = time.monotonic()
    if not tool.exists(DEBIAN_BASE):
        _make_debian_base(tool, work)
    if not tool.exists(PYTHON_BASE):
        _make_python_base(tool, work)
    MEASURED["base_images_s"] = round(time.monotonic() - started, 1)
    return tool


@pytest.fixture(scope="session")
def image(podman: Podman) -> str:
    """The project's image, built from the repository as it is (docker format keeps HEALTHCHECK)."""
    started = time.monotonic()
    podman("build", "--pull=never", "--format", "docker", "-f", str(REPO / "Containerfile"), "-t", IMAGE, str(REPO))
    MEASURED["build_s"] = round(time.monotonic() - started, 1)
    size = int(podman("image", "inspect", "--format", "{{.Size}}", IMAGE).stdout)
    MEASURED["image_mb"] = round(size / 1e6, 1)
    return IMAGE


@pytest.fixture
def containers(podman: Podman) -> Iterator[list[str]]:
    """Names of the containers a test started: removed afterwards, whatever happened."""
    names: list[str] = []
    yield names
    for name in names:
        podman("rm", "--force", "--time", "0", name, check=False)
