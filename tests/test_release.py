"""What ships for Cloud Run, checked against the code it runs: ``rel/cloudrun.yaml`` against the
gateway's routes, ``rel/prod.toml``'s variables and files and the Containerfile; and the image's
lock file ``rel/requirements.txt`` against the package's declared dependencies."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tai_autonomics.actors.operation_api import CALL_TIMEOUT_S
from tai_autonomics.cli import build_parser
from tai_autonomics.config import load_release
from tai_autonomics.gateway import ROUTES, TOKEN_ENV, GatewayConfig
from tai_autonomics.gateway.config import DEFAULT_PORT

REPO = Path(__file__).resolve().parents[1]
PROD = REPO / "rel" / "prod.toml"
#: set by Cloud Run itself; a service that sets them is refused
RESERVED_ENV = {"PORT", "K_SERVICE", "K_REVISION", "K_CONFIGURATION"}


@pytest.fixture(scope="module")
def service() -> dict[str, Any]:
    return yaml.safe_load((REPO / "rel" / "cloudrun.yaml").read_text())


@pytest.fixture(scope="module")
def container(service: dict[str, Any]) -> dict[str, Any]:
    containers = service["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def _containerfile(instruction: str) -> list[str]:
    """The arguments of each ``instruction`` line of the final stage of the Containerfile."""
    final = (REPO / "Containerfile").read_text().rsplit("\nFROM ", 1)[1]
    return [line.split(None, 1)[1] for line in final.splitlines() if line.startswith(f"{instruction} ")]


def _env_names_of_release() -> set[str]:
    """Every environment variable rel/prod.toml names (``*_env`` keys), the local tokens, and the
    trace project's variable (GOOGLE_CLOUD_PROJECT unless ``[gateway] trace_project_env`` says)."""
    sections = load_release(PROD).sections
    named = {value for table in sections.values() for key, value in table.items() if key.endswith("_env")}
    return named | set(TOKEN_ENV.values()) | {sections["gateway"].get("trace_project_env", "GOOGLE_CLOUD_PROJECT")}


def test_it_is_a_knative_service_of_cloud_run(service: dict[str, Any]) -> None:
    assert (service["apiVersion"], service["kind"]) == ("serving.knative.dev/v1", "Service")
    annotations = service["spec"]["template"]["metadata"]["annotations"]
    assert int(annotations["autoscaling.knative.dev/minScale"]) >= 1  # timers need an instance
    assert annotations["run.googleapis.com/cpu-throttling"] == "false"  # and CPU between requests
    spec = service["spec"]["template"]["spec"]
    assert 1 <= spec["containerConcurrency"] <= GatewayConfig.max_in_flight
    assert spec["timeoutSeconds"] > CALL_TIMEOUT_S


def test_probes_are_public_routes_of_the_gateway_on_the_served_port(container: dict[str, Any]) -> None:
    public_gets = {ep.path for ep in ROUTES if ep.method == "GET" and ep.roles is None}  # probes carry no token
    port = container["ports"][0]["containerPort"]
    assert container["startupProbe"]["httpGet"] == {"path": "/readyz", "port": port}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": port}
    assert {"/readyz", "/healthz"} <= public_gets


def test_the_port_is_the_images_and_cloud_run_sets_it(container: dict[str, Any]) -> None:
    assert container["ports"] == [{"name": "http1", "containerPort": DEFAULT_PORT}]
    image_env = dict(pair.split("=", 1) for line in _containerfile("ENV") for pair in shlex.split(line))
    assert image_env["PORT"] == str(DEFAULT_PORT) and _containerfile("EXPOSE") == [str(DEFAULT_PORT)]
    assert not RESERVED_ENV & {env["name"] for env in container["env"]}


def test_every_variable_the_release_names_is_set_and_secrets_come_from_secret_manager(
        container: dict[str, Any]) -> None:
    env = {entry["name"]: entry for entry in container["env"]}
    assert len(env) == len(container["env"])
    assert set(env) == _env_names_of_release()
    secrets = set(TOKEN_ENV.values()) | {load_release(PROD).sections["ledger"]["key_env"]}
    for name in secrets:
        assert "value" not in env[name], f"{name}: a secret's value inline"
        ref = env[name]["valueFrom"]["secretKeyRef"]
        assert re.fullmatch(r"[A-Za-z0-9_-]+", ref["name"]) and (ref["key"] == "latest" or ref["key"].isdigit())
    for name in set(env) - secrets:
        assert isinstance(env[name]["value"], str) and "BEGIN" not in env[name]["value"]


def test_files_the_release_names_are_mounted_from_secrets(service: dict[str, Any], container: dict[str, Any]) -> None:
    sections = load_release(PROD).sections
    wanted = {value for table in sections.values() for key, value in table.items()
              if isinstance(value, str) and value.startswith("/etc/")}
    volumes = {v["name"]: v["secret"] for v in service["spec"]["template"]["spec"]["volumes"]}
    mounted = {f"{m['mountPath']}/{item['path']}" for m in container["volumeMounts"]
               for item in volumes[m["name"]]["items"]}
    assert wanted and wanted <= mounted
    mount_paths = [m["mountPath"] for m in container["volumeMounts"]]
    assert len(set(mount_paths)) == len(mount_paths)  # Cloud Run: one secret per directory


def test_the_image_runs_the_production_release_with_an_http_healthcheck() -> None:
    command = yaml.safe_load(_containerfile("CMD")[0])  # exec form is a JSON (so YAML) list
    assert command[0] == "tai-autonomics"
    args = build_parser().parse_args(command[1:])
    assert args.command == "foreground"
    assert Path(_containerfile("WORKDIR")[0]) / args.config == Path("/app/rel/prod.toml")
    healthcheck = _containerfile("HEALTHCHECK")[0]
    probe = yaml.safe_load(healthcheck.split(" CMD ", 1)[1])
    assert probe[0] == "tai-autonomics" and build_parser().parse_args(probe[1:]).command == "health"


def locked_pins() -> dict[str, tuple[str, list[str]]]:
    """rel/requirements.txt: name → (version, hashes)."""
    pins: dict[str, tuple[str, list[str]]] = {}
    text = (REPO / "rel" / "requirements.txt").read_text().replace("\\\n", " ")
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            requirement, *options = line.split()
            name, _, version = requirement.partition("==")
            pins[canonicalize_name(name)] = (version, [o.removeprefix("--hash=") for o in options])
    return pins


def test_the_lock_pins_every_dependency_with_hashes() -> None:
    pins = locked_pins()
    assert pins and all(version and hashes and all(h.startswith("sha256:") for h in hashes)
                        for version, hashes in pins.values()), pins
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    build = [line for line in (REPO / "rel" / "requirements.in").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    for text in [*declared, *build]:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{name} is not in rel/requirements.txt: refresh it (docs/cloud-run.md)"
        assert requirement.specifier.contains(pins[name][0], prereleases=True), \
            f"{name}=={pins[name][0]} does not satisfy {requirement}: refresh rel/requirements.txt (docs/cloud-run.md)"


def test_the_image_installs_only_from_the_lock() -> None:
    build = (REPO / "Containerfile").read_text().split("\nFROM ", 2)[1]
    installs = [line for line in build.splitlines() if "pip install" in line]
    assert installs == ["RUN pip install --no-cache-dir --require-hashes -r rel/requirements.txt",
                        "RUN pip install --no-cache-dir --no-deps --no-build-isolation ."]
