"""The image as Cloud Run runs it: non-root, on ``$PORT`` of every interface, health-checked over
HTTP, JSON log lines, SIGTERM within 10 s; and the dev profile in it serving an insured deploy to
the host. Run by ``.ci/run`` (``pytest tests/container``); measurements print at the end."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import httpx
import pytest
from packaging.utils import canonicalize_name

from tests.container.support import MEASURED, REPO, Podman, container_name
from tests.helpers import free_port
from tests.test_release import locked_pins

READY_WITHIN_S = 60  # the dev profile makes a CA, keys and starts the sandbox on its first start
CLOUD_RUN_GRACE_S = 10  # SIGTERM, then SIGKILL: Cloud Run's, and `podman stop -t 10`'s
DATA_DIR = "/var/lib/tai-autonomics"
# The first test of a machine builds the base images (about 2 minutes); later ones take seconds.
pytestmark = pytest.mark.timeout(900)
DEPLOY = {"sku_id": "sku-001", "target_cloud": "gcp", "customer_ref": "acme", "customer_account": "dev-account-0001",
          "region": "europe-west1", "artifacts": {"image": "registry.example/app:1.0"}, "cost": 250}


@dataclass
class Running:
    """A container of the image, published on 127.0.0.1 only, with its gateway's URL from the host."""

    name: str
    url: str


def start_dev(podman: Podman, image: str, containers: list[str], *env: str, inside: int = 8080,
              measured_as: str = "start_to_ready_s") -> Running:
    """The dev profile as a user runs it (``podman run -p ... IMAGE tai-autonomics foreground``),
    ready; ``inside`` is the port Cloud Run would set ($PORT), ``env`` more ``-e NAME=VALUE``."""
    name, port = container_name("dev"), free_port()
    started = time.monotonic()
    options = [option for pair in (f"PORT={inside}", *env) for option in ("-e", pair)]
    podman("run", "--detach", "--name", name, *options, "-p", f"127.0.0.1:{port}:{inside}",
           image, "tai-autonomics", "foreground")
    containers.append(name)
    running = Running(name, f"http://127.0.0.1:{port}")
    deadline = started + READY_WITHIN_S
    while not _ready(running.url):
        state = podman("inspect", "--format", "{{.State.Status}}", name).stdout.decode().strip()
        if state != "running" or time.monotonic() > deadline:
            logs = podman("logs", name, check=False)
            pytest.fail(f"{name} not ready within {READY_WITHIN_S} s from the host (state {state}):\n"
                        f"{(logs.stdout + logs.stderr).decode(errors='replace')[-3000:]}", pytrace=False)
        time.sleep(0.2)  # polling interval, bounded by the deadline above
    MEASURED[measured_as] = round(time.monotonic() - started, 2)
    return running


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def stop(podman: Podman, name: str) -> tuple[int, float]:
    """``podman stop -t 10``, as Cloud Run stops an instance (SIGTERM to PID 1, SIGKILL after 10 s):
    the container's exit code and the seconds it took."""
    started = time.monotonic()
    podman("stop", "--time", str(CLOUD_RUN_GRACE_S), name, timeout=CLOUD_RUN_GRACE_S + 20)
    took = time.monotonic() - started
    return int(podman("inspect", "--format", "{{.State.ExitCode}}", name).stdout), took


def test_containerfile_passes_hadolint() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    assert hadolint.exists(), "hadolint is missing: pip install -e '.[container]'"
    result = subprocess.run([str(hadolint), "--no-color", str(REPO / "Containerfile")], capture_output=True,
                            text=True, timeout=60)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_the_image_holds_exactly_the_locked_packages(podman: Podman, image: str) -> None:
    listed = json.loads(podman("run", "--rm", image, "pip", "list", "--format", "json").stdout)
    installed = {canonicalize_name(package["name"]): package["version"] for package in listed}
    assert installed.pop("tai-autonomics") == version("tai-autonomics")
    installed.pop("pip")  # the venv's own installer, from the base image
    assert installed == {name: pinned for name, (pinned, _) in locked_pins().items()}


def test_dev_profile_serves_the_host_as_a_non_root_user_and_stops_within_cloud_runs_grace(
        podman: Podman, image: str, containers: list[str]) -> None:
    running = start_dev(podman, image, containers)

    # Runs as the image's own user, every process of it, with its data in the writable data dir.
    users = podman("top", running.name, "user").stdout.decode().split()
    assert users[0] == "USER" and set(users[1:]) == {"tai"}, users
    assert podman("exec", running.name, "id", "-u").stdout.decode().strip() == "10001"
    tokens_file = podman("exec", running.name, "cat", f"{DATA_DIR}/tokens.env").stdout.decode()

    # The HEALTHCHECK is HTTP: `podman healthcheck run` runs it once in the container.
    assert podman("healthcheck", "run", running.name, check=False).returncode == 0

    # An insured deploy from the host, with the dev profile's tokens from the data dir.
    tokens = dict(line.split("=", 1) for line in tokens_file.splitlines() if "=" in line)
    answer = httpx.post(f"{running.url}/v1/deployments", json=DEPLOY, timeout=60,
                        headers={"Authorization": f"Bearer {tokens['TAI_TOKEN_SERVICE']}",
                                 "Idempotency-Key": container_name("deploy")})
    assert answer.status_code in (200, 201), answer.text
    deployed = answer.json()
    assert deployed["status"] == "completed", deployed
    completed = deployed["receipts"][-1]
    assert completed["kind"] == "deploy.completed", deployed
    receipt = httpx.get(f"{running.url}/v1/receipts/{completed['id']}", timeout=10,
                        headers={"Authorization": f"Bearer {tokens['TAI_TOKEN_AUDITOR']}"})
    assert receipt.status_code == 200 and receipt.json() == completed, receipt.text

    code, took = stop(podman, running.name)
    MEASURED["stop_idle_s"] = round(took, 2)
    assert code == 0 and took < CLOUD_RUN_GRACE_S

    # Logs are JSON lines as Cloud Logging reads them, the tokens in none of them.
    logs = podman("logs", running.name)
    lines = [line for line in logs.stdout.decode().splitlines() if line.strip()]
    assert lines and logs.stderr.decode().strip() == ""
    for line in lines:
        entry = json.loads(line)
        assert {"severity", "message"} <= set(entry), line
    assert not any(token in logs.stdout.decode() for token in tokens.values())
    events = [json.loads(line).get("event") for line in lines]
    assert events.index("gateway_listening") < events.index("stopping") < events.index("stopped"), events


def test_as_cloud_run_starts_it_the_gateway_listens_on_every_interface_at_port(
        podman: Podman, image: str, containers: list[str]) -> None:
    # Cloud Run sets K_SERVICE and PORT, and knows nothing of the image's TAI_HOST (emptied here).
    running = start_dev(podman, image, containers, "K_SERVICE=tai-autonomics", "TAI_HOST=", inside=8081,
                        measured_as="start_to_ready_as_cloud_run_s")
    listening = [json.loads(line) for line in podman("logs", running.name).stdout.decode().splitlines()
                 if '"gateway_listening"' in line]
    assert [entry["url"] for entry in listening] == ["http://0.0.0.0:8081"]
    assert stop(podman, running.name)[0] == 0


def test_production_start_with_nothing_set_fails_with_a_one_line_error(podman: Podman, image: str,
                                                                       containers: list[str]) -> None:
    name = container_name("prod")
    containers.append(name)
    started = time.monotonic()
    result = podman("run", "--name", name, image, check=False, timeout=60)
    MEASURED["prod_unset_exit_s"] = round(time.monotonic() - started, 2)
    assert result.returncode != 0
    stderr = podman("logs", name).stderr.decode(errors="replace")  # the container's, without podman's own
    assert "Traceback" not in stderr and stderr.strip(), stderr
    lines = stderr.strip().splitlines()
    assert all(line.startswith("tai-autonomics: error: [") for line in lines), stderr
    assert len(lines) > 2 and "[start_checks_failed]" in lines[-1], stderr  # every problem in one start


def test_a_deploy_in_flight_when_stopped_is_answered_503_and_the_container_exits_0_within_10_s(
        podman: Podman, image: str, containers: list[str]) -> None:
    running = start_dev(podman, image, containers, measured_as="start_to_ready_drain_s")
    tokens_file = podman("exec", running.name, "cat", f"{DATA_DIR}/tokens.env").stdout.decode()
    tokens = dict(line.split("=", 1) for line in tokens_file.splitlines() if "=" in line)
    sandbox = next(json.loads(line)["url"] for line in podman("logs", running.name).stdout.decode().splitlines()
                   if '"sandbox_started"' in line)

    def in_container(script: str) -> str:  # the sandbox listens on the container's loopback only
        return podman("exec", running.name, "python", "-c", script).stdout.decode()

    in_container(f"import httpx; httpx.post('{sandbox}/admin/faults', json={{'kind': 'timeout', "
                 f"'endpoint': 'customer.deploy', 'delay_s': 60}}).raise_for_status()")
    with ThreadPoolExecutor(1) as pool:
        in_flight = pool.submit(httpx.post, f"{running.url}/v1/deployments", json=DEPLOY, timeout=60,
                                headers={"Authorization": f"Bearer {tokens['TAI_TOKEN_SERVICE']}",
                                         "Idempotency-Key": container_name("rollout")})
        deadline = time.monotonic() + 30
        while '"customer.deploy"' not in in_container(
                f"import httpx; print(httpx.get('{sandbox}/admin/requests').text)"):
            assert time.monotonic() < deadline, "the deploy did not reach the customer endpoint"
            time.sleep(0.2)  # polling interval, bounded by the deadline above
        code, took = stop(podman, running.name)
        answer = in_flight.result(timeout=CLOUD_RUN_GRACE_S)
    MEASURED["stop_with_deploy_in_flight_s"] = round(took, 2)
    assert code == 0 and took < CLOUD_RUN_GRACE_S, took
    assert answer.status_code == 503 and answer.headers["content-type"] == "application/json", answer.text
    assert answer.json()["error"]["code"] == "operation_interrupted"
    drained = [json.loads(line) for line in podman("logs", running.name).stdout.decode().splitlines()
               if '"drained"' in line]
    assert drained and drained[0]["interrupted"]["Acquisition"] == 1, drained
