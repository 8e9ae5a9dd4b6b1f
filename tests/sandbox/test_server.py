"""Running the sandbox: in a thread, as a child process, from the CLI; keys and CA on disk."""

from __future__ import annotations

import json
import signal
import socket
import threading
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tai_autonomics.cli import main
from tai_autonomics.notifications.signing import HEADER, sign
from tai_autonomics.sandbox import Fault, SandboxConfig, SandboxProcess, SandboxServer, SandboxStartError
from tai_autonomics.trust import generate_key_and_csr, sample_policy, write_dev_ca
from tai_autonomics.trust.insurer_signature import load_public_keys
from tests.helpers import wait_until


def sandbox_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("sandbox-")]


def port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def test_thread_server_stops_cleanly_and_restarts_on_the_same_port(tmp_path: Path) -> None:
    server = SandboxServer(SandboxConfig(data_dir=tmp_path))
    url = server.start()
    try:
        assert url.startswith("http://127.0.0.1:")
        with pytest.raises(SandboxStartError):
            server.start()
        port = server.port
        server.stop()
        assert port_is_free(port) and not sandbox_threads()
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{url}/healthz")
        assert server.start() == url
        assert httpx.get(f"{url}/healthz").json()["status"] == "ok"
    finally:
        server.stop()
    assert not sandbox_threads()


def test_a_port_in_use_is_a_clear_start_error(tmp_path: Path) -> None:
    with SandboxServer(SandboxConfig(data_dir=tmp_path)) as running:
        with pytest.raises(SandboxStartError) as caught:
            SandboxServer(SandboxConfig(data_dir=tmp_path), port=running.port).start()
    assert caught.value.code == "sandbox_start_failed"


def test_keys_and_ca_persist_in_the_data_dir(tmp_path: Path) -> None:
    with SandboxServer(SandboxConfig(data_dir=tmp_path)) as first:
        served = httpx.get(f"{first.url}/insurer/v1/keys").json()["keys"][0]
        ca_pem = httpx.get(f"{first.url}/insurer/v1/ca").json()["certificate_pem"]
    key_file = tmp_path / "insurer" / "signing_key.pub.pem"
    assert list(load_public_keys(key_file.read_bytes())) == [served["key_id"]]
    assert (tmp_path / "insurer" / "signing_key.pem").stat().st_mode & 0o077 == 0
    with SandboxServer(SandboxConfig(data_dir=tmp_path)) as second:
        assert httpx.get(f"{second.url}/insurer/v1/keys").json()["keys"][0] == served
        assert httpx.get(f"{second.url}/insurer/v1/ca").json()["certificate_pem"] == ca_pem


def test_an_existing_development_ca_is_used_for_issuance(tmp_path: Path) -> None:
    files = write_dev_ca(tmp_path / "dev-ca")
    _, csr = generate_key_and_csr("daemon")
    with SandboxServer(SandboxConfig(data_dir=tmp_path / "sandbox", ca_dir=files.directory)) as server:
        issued = httpx.post(f"{server.url}/insurer/v1/policies/{sample_policy().policy_id}/certificates",
                            json={"csr_pem": csr.public_bytes(serialization.Encoding.PEM).decode()})
    certificate = x509.load_pem_x509_certificate(issued.json()["certificate_pem"].encode())
    certificate.verify_directly_issued_by(x509.load_pem_x509_certificate(files.ca_certificate.read_bytes()))


def test_idempotency_key_replays_the_first_issuance(tmp_path: Path) -> None:
    _, csr = generate_key_and_csr("daemon")
    body = {"csr_pem": csr.public_bytes(serialization.Encoding.PEM).decode()}
    path = f"/insurer/v1/policies/{sample_policy().policy_id}/certificates"
    with SandboxServer(SandboxConfig(data_dir=tmp_path)) as server, httpx.Client(base_url=server.url) as http:
        first = http.post(path, json=body, headers={"Idempotency-Key": "k1"})
        again = http.post(path, json=body, headers={"Idempotency-Key": "k1"})
        other = http.post(path, json=body, headers={"Idempotency-Key": "k2"})
        reused = http.post(path, json={"csr_pem": "other"}, headers={"Idempotency-Key": "k1"})
    assert (reused.status_code, reused.json()["error"]["code"]) == (422, "idempotency_key_reused")
    assert first.content == again.content and first.headers["x-insurer-signature"] == again.headers[
        "x-insurer-signature"]
    assert other.json()["serial"] != first.json()["serial"]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_cli_child_process_serves_with_flag_faults_and_exits_cleanly_on_signals(tmp_path: Path, sig: int) -> None:
    lines: list[str] = []
    child = SandboxProcess(tmp_path, faults=[Fault(kind="rate_limit", endpoint="customer.*", retry_after_s=3)],
                           on_line=lines.append)
    url = child.start()
    try:
        assert httpx.get(f"{url}/healthz").json()["status"] == "ok"
        limited = httpx.get(f"{url}/customer/v1/deployments/dep-0000000000000000")
        assert (limited.status_code, limited.headers["retry-after"]) == (429, "3")
    finally:
        code = child.stop(sig)
    assert code == 0
    records = [json.loads(line) for line in lines]
    assert {"sandbox listening", "sandbox request", "sandbox stopped"} <= {r["message"] for r in records}
    assert all("severity" in r for r in records)
    assert not any("PRIVATE KEY" in line for line in lines)


def test_cli_help_and_bad_flags(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as help_exit:
        main(["sandbox", "serve", "--help"])
    assert help_exit.value.code == 0 and "--fault" in capsys.readouterr().out
    assert main(["sandbox", "serve", "--data-dir", str(tmp_path), "--fault", "meteor"]) == 2
    assert "[sandbox_fault_invalid]" in capsys.readouterr().err


def test_stop_does_not_wait_for_a_hanging_request(tmp_path: Path) -> None:
    server = SandboxServer(SandboxConfig(data_dir=tmp_path, faults=(Fault(kind="timeout", delay_s=60),)))
    url = server.start()
    outcome: list[BaseException | httpx.Response] = []

    def hang() -> None:
        try:
            outcome.append(httpx.get(f"{url}/insurer/v1/keys", timeout=30))
        except httpx.HTTPError as exc:
            outcome.append(exc)

    caller = threading.Thread(target=hang)
    caller.start()
    try:
        with httpx.Client(base_url=url) as admin:
            wait_until(lambda: admin.get("/admin/requests").json()["requests"], what="the sandbox holds the request")
    finally:
        server.stop()
    caller.join(10)
    assert not caller.is_alive() and len(outcome) == 1
    assert isinstance(outcome[0], httpx.HTTPError) or outcome[0].status_code >= 500


def test_the_parties_keep_a_bounded_history(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Deployments, idempotent answers and webhooks past ``kept_records`` forget the oldest; the rest answer."""
    monkeypatch.setenv("TAI_WEBHOOK_SECRET", "s3cret")
    with SandboxServer(SandboxConfig(data_dir=tmp_path, kept_records=3)) as running, \
            httpx.Client(base_url=running.url) as http:
        def deploy(key: str) -> str:
            answer = http.post("/customer/v1/deployments", headers={"Idempotency-Key": key}, json={
                "sku_id": "sku-001", "target_cloud": "gcp", "region": "r1", "customer_account": "acct-1",
                "artifacts": {"image": "registry/app:1"}})
            assert answer.status_code == 201
            return str(answer.json()["deployment_id"])

        ids = [deploy(f"key-{n}") for n in range(5)]
        statuses = [http.get(f"/customer/v1/deployments/{i}").status_code for i in ids]
        assert statuses == [404, 404, 200, 200, 200]
        assert deploy("key-4") == ids[4]
        assert deploy("key-0") not in ids
        for n in range(5):
            body = json.dumps({"kind": "k", "customer": "c", "n": n}).encode()
            assert http.post("/customer/v1/webhooks", content=body,
                             headers={HEADER: sign("s3cret", body)}).json() == {"received": n + 1}
        kept = http.get("/customer/v1/webhooks").json()["webhooks"]
        assert [entry["notice"]["n"] for entry in kept] == [2, 3, 4]
