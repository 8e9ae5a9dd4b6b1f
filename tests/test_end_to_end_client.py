"""The typed client (tai_autonomics.client) against the dev daemon, as an internal service uses it.

It holds the served ``/openapi.json`` to its methods, deploys, publishes and quotes (blocking and
asyncio), and a deploy refused with 503 while the daemon is ``read_only`` (the sandbox's insurer
down) is retried, honouring ``Retry-After``, until insurance is back and it completes. The same
daemon's Notifier tells the sandbox's customer, in signed webhooks, of read_only and back and of a
deploy that failed (docs/notifications.md).
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tai_autonomics.client import AsyncClient, ClientError, RetryPolicy
from tai_autonomics.sandbox.customer import WEBHOOK_PATH
from tests.client.test_client import client_methods, operation_ids
from tests.e2e import DEPLOY, client, dev_daemon, until

QUICK_INSURER = """
[workers.InsuranceClient.args]
cache_ttl_s = 1
attempts = 1
timeout_s = 2
breaker_reset_s = 1

[workers.ProdMode.args]
check_interval_s = 0.3
"""
PUBLISH = {"work_id": "work-client", "sku_id": "sku-001",
           "artifacts": {"code": "print(1)", "tests": "assert 1", "docs": "# doc", "metadata": "{}"}}


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    with dev_daemon(tmp_path_factory.mktemp("client"), workers=QUICK_INSURER) as d:
        yield d


def test_the_served_document_and_the_client_agree_and_the_client_runs_the_operations(daemon) -> None:
    with client(daemon, "admin") as admin, client(daemon, "service") as service:
        assert operation_ids(admin.openapi()) == client_methods(type(admin))
        assert admin.healthz() == {"status": "alive"} and admin.get_supervision()["name"] == "root"
        deployed = service.create_deployment(DEPLOY)
        assert deployed["status"] == "completed", deployed
        assert service.get_deployment(deployed["operation_id"]) == deployed
        published = service.create_publication(PUBLISH)
        assert published["status"] == "completed" and service.create_publication(PUBLISH) == published
        with pytest.raises(ClientError) as refused:
            service.get_supervision()
        assert (refused.value.status, refused.value.code) == (403, "forbidden") and refused.value.request_id

    async def quote() -> tuple[dict, dict]:
        async with AsyncClient(daemon.url, token=daemon.tokens["service"]) as tai:
            return await asyncio.gather(tai.create_quote({"customer_id": "c-1", "metrics": {"users": 120}}),
                                        tai.get_mode())

    quoted, mode = asyncio.run(quote())
    assert quoted["receipt"]["kind"] == "pricing.quoted" and mode["mode"] == "prod"
    with client(daemon, "auditor") as auditor:
        assert auditor.get_receipt(quoted["receipt"]["id"]) == quoted["receipt"]
        proof = auditor.get_receipt_proof(quoted["receipt"]["id"])
        assert proof["tree_size"] == auditor.get_checkpoint()["size"] >= 1
        size = int(auditor.tlog_checkpoint().splitlines()[1])  # a signed note: origin, size, root
        assert len(auditor.tlog_tile(f"0/000.p/{size}")) == 32 * size  # the partial level-0 tile


class _Recording(httpx.HTTPTransport):
    """A real transport that notes each status, so the test knows the client has met a 503."""

    def __init__(self) -> None:
        super().__init__()
        self.statuses: list[int] = []
        self.refused = threading.Event()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        self.statuses.append(response.status_code)
        if response.status_code == 503:
            self.refused.set()
        return response


def test_a_deploy_refused_503_while_read_only_is_retried_until_insurance_is_back(daemon) -> None:
    fault = httpx.post(f"{daemon.sandbox}/admin/faults", json={"kind": "outage", "endpoint": "insurer.*"}).json()
    with client(daemon, "service") as service:
        until(lambda: service.get_mode()["mode"] == "read_only", timeout=30, what="read_only")
    recording = _Recording()
    with client(daemon, "service", transport=recording, retry=RetryPolicy(attempts=60)) as service, \
            ThreadPoolExecutor(1) as pool:
        deploy = pool.submit(service.create_deployment, {**DEPLOY, "customer_ref": "retried"})
        assert recording.refused.wait(30), "the deploy was never refused"
        assert httpx.delete(f"{daemon.sandbox}/admin/faults/{fault['id']}").status_code == 204
        result = deploy.result(timeout=60)
    assert result["status"] == "completed"
    assert recording.statuses[0] == 503 and recording.statuses[-1] == 200 and set(recording.statuses) == {503, 200}


def test_read_only_and_back_and_a_failed_deploy_are_signed_webhooks(daemon) -> None:
    """After the test above: read_only and back; then a deploy the customer's endpoint rejects."""
    fault = {"kind": "reject", "endpoint": "customer.deploy", "classification": "insufficient_permissions"}
    assert httpx.post(f"{daemon.sandbox}/admin/faults", json=fault).status_code == 201
    with client(daemon, "service") as service:
        failed = service.create_deployment({**DEPLOY, "customer_account": "acct-notified", "customer_ref": "x"})
    assert failed["status"] == "failed"

    def received() -> dict[str, dict]:
        hooks = httpx.get(f"{daemon.sandbox}{WEBHOOK_PATH}").json()["webhooks"]
        assert all(w["verified"] for w in hooks), hooks
        return {w["kind"]: w["notice"] for w in hooks}

    until(lambda: {"mode.read_only", "mode.restored", "deploy.failed"} <= set(received()), timeout=30,
          what="the three notices")
    notices = received()
    assert notices["deploy.failed"]["customer"] == "acct-notified"
    assert notices["deploy.failed"]["detail"]["operation_id"] == failed["operation_id"]
    assert notices["deploy.failed"]["detail"]["rca"]["classification"] == "insufficient_permissions"
    restored = notices["mode.restored"]["detail"]
    assert (restored["from"], restored["to"]) == ("read_only", "prod")
