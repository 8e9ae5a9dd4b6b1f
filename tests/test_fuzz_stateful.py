"""Schemathesis stateful runs against the dev-profile daemon's served ``/openapi.json`` (issue 14):
sequences that follow the document's links, deploy → get → receipt → proof, with generated and
broken inputs at each step, each request sent with a token of a role its operation takes. Every
answer must keep the document's contract (no 500, no traceback), and nothing may be written for a
refused request: the ``deploy.intent`` receipts in the ledger are exactly those of the deploys
answered 2xx.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from tests.e2e import as_, dev_daemon, receipts

# positive requests may be refused for their meaning (an unknown SKU, a used key) or the daemon's
# state; negative ones for their size or form: the same as the gateway's own schemathesis test
CONFIG = schemathesis.Config.from_dict({"checks": {
    "positive_data_acceptance": {"expected-statuses": ["2xx", "401", "403", "404", "409", "422", "426", "429", "503"]},
    "negative_data_rejection": {"expected-statuses": ["400", "401", "403", "404", "405", "406", "409", "413", "415",
                                                      "422", "428", "429", "5xx"]}}})
INSURED = {"sku_id": "sku-001", "customer_account": "dev-account-0001", "cost": 1}
LINKED = ("/v1/deployments", "/v1/deployments/{operation_id}", "/v1/receipts/{id}", "/v1/receipts/{id}/proof")


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    with dev_daemon(tmp_path_factory.mktemp("stateful")) as d:
        yield d


def test_linked_routes_keep_the_contract_and_refusals_write_nothing(daemon) -> None:
    schema = schemathesis.openapi.from_url(f"{daemon.url}/openapi.json", headers=as_(daemon, "auditor"),
                                           config=CONFIG).include(path=list(LINKED))
    answered: list[tuple[str, int, Any]] = []

    class Deployments(schema.as_state_machine()):  # type: ignore[misc]
        def get_call_kwargs(self, case) -> dict[str, Any]:
            role = "service" if case.method.upper() == "POST" else "auditor"
            return {"base_url": daemon.url, "headers": as_(daemon, role), "timeout": 60}

        def before_call(self, case) -> None:
            """An insured SKU, the sandbox's account and a cost within the coverage where the generated
            body has them (the rest stays generated): else no deploy is ever accepted and no link followed.
            Positive cases only: repairing a negative case's broken field makes it valid, and its 2xx
            then reads as broken input accepted."""
            positive = case.meta is None or case.meta.generation.mode.is_positive
            if positive and case.method.upper() == "POST" and isinstance(case.body, dict):
                case.body.update({k: v for k, v in INSURED.items() if k in case.body})

        def after_call(self, response, case) -> None:
            if case.method.upper() == "POST":
                answered.append((case.path, response.status_code, response.text))
            assert response.status_code != 500 and "Traceback" not in response.text, response.text

    run = Deployments.TestCase
    run.settings = settings(max_examples=25, stateful_step_count=6, deadline=None,
                            suppress_health_check=list(HealthCheck))
    run().runTest()

    accepted = {json.loads(text)["operation_id"] for _, status, text in answered if 200 <= status < 300}
    assert accepted, "no generated deploy was accepted: the run never followed a link"
    intents = {r["operation_id"] for r in receipts(daemon) if r["kind"] == "deploy.intent"}
    assert intents == accepted
