"""Shared fixtures of the ledger tests: the conformance data, keys, stores and ledgers."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tai_autonomics.ledger import Ledger, LedgerKey, LedgerStore, SQLiteStore
from tai_autonomics.ledger.firestore_store import FirestoreStore

# Other implementations' test vectors, vendored byte for byte with their licences (tests/conformance/README.md).
CONFORMANCE = Path(__file__).resolve().parents[1] / "conformance"


def conformance_dir(*parts: str) -> Path:
    """A folder of the vendored conformance data; fails (never skips) when it is missing."""
    path = CONFORMANCE.joinpath(*parts)
    if not path.is_dir():
        pytest.fail(f"conformance data missing: {path} (vendored under tests/conformance/)")
    return path


def conformance_files(*parts: str, pattern: str = "*.json") -> list[Path]:
    """Every file under a conformance folder, for parametrising (a missing folder fails at collection)."""
    path = CONFORMANCE.joinpath(*parts)
    files = sorted(path.rglob(pattern))
    if not files:
        raise RuntimeError(f"conformance data missing: no {pattern} under {path}")
    return files


@pytest.fixture(scope="session")
def key() -> LedgerKey:
    return LedgerKey.generate()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "ledger.sqlite3"


@pytest.fixture
def ledger(db_path: Path, key: LedgerKey):
    opened = Ledger.open(SQLiteStore(db_path), key)
    yield opened
    opened.close()


_EMULATOR_PACKAGE = "google-cloud-cli-firestore-emulator"
_EMULATOR_MAIN = "com.google.cloud.datastore.emulator.firestore.CloudFirestore"
_EMULATOR_READY = "Dev App Server is now running"


def _emulator_jar() -> str:
    """The emulator jar as the Debian package lays it out; fails (never skips) when absent."""
    try:
        listing = subprocess.run(["dpkg", "-L", _EMULATOR_PACKAGE], capture_output=True, text=True, check=False).stdout
    except FileNotFoundError:
        listing = ""
    jars = [line for line in listing.splitlines() if line.endswith("cloud-firestore-emulator.jar")]
    if not jars or not Path(jars[0]).is_file():
        pytest.fail(f"Firestore emulator jar not found: install the Debian package {_EMULATOR_PACKAGE} (see .ci/run)")
    return jars[0]


@pytest.fixture(scope="session")
def firestore_emulator() -> Iterator[str]:
    """Google's Firestore emulator on a free loopback port for the whole session; its host:port."""
    jar = _emulator_jar()
    java = shutil.which("java")
    if java is None:
        pytest.fail("java not found: the Firestore emulator needs Java 17 (openjdk-17-jre-headless, see .ci/run)")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [java, "-cp", jar, _EMULATOR_MAIN, "--host=127.0.0.1", f"--port={port}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    ready = threading.Event()
    output: list[str] = []

    def drain() -> None:  # reads the emulator's output for as long as it runs, so its pipe never fills
        for line in process.stdout:
            output.append(line)
            if _EMULATOR_READY in line:
                ready.set()
        ready.set()

    threading.Thread(target=drain, daemon=True).start()
    try:
        if not ready.wait(timeout=90) or process.poll() is not None:
            pytest.fail("Firestore emulator did not start:\n" + "".join(output[-20:]))
        host = f"127.0.0.1:{port}"
        previous = os.environ.get("FIRESTORE_EMULATOR_HOST")
        os.environ["FIRESTORE_EMULATOR_HOST"] = host
        yield host
        if previous is None:
            os.environ.pop("FIRESTORE_EMULATOR_HOST", None)
        else:
            os.environ["FIRESTORE_EMULATOR_HOST"] = previous
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@pytest.fixture(params=["sqlite", "firestore"])
def open_store(request, tmp_path: Path) -> Iterator[Callable[[], LedgerStore]]:
    """Opens connections to one fresh ledger store (call it again for a second instance)."""
    opened: list[LedgerStore] = []
    if request.param == "sqlite":
        def make() -> LedgerStore:
            opened.append(SQLiteStore(tmp_path / "ledger.sqlite3"))
            return opened[-1]
    else:
        request.getfixturevalue("firestore_emulator")
        name = f"test-{uuid.uuid4().hex}"

        def make() -> LedgerStore:
            opened.append(FirestoreStore(name, project=EMULATOR_PROJECT))
            return opened[-1]
    yield make
    for store in opened:
        store.close()


EMULATOR_PROJECT = "tai-autonomics-test"
