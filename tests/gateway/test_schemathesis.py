"""Schemathesis against our own OpenAPI document: generated requests, every response checked against it.

Positive and negative cases (schemathesis breaks the documented constraints on purpose): whatever
it sends, the gateway answers with a documented status and body, never a 5xx but the documented 503.
"""

from __future__ import annotations

import json

import schemathesis
from hypothesis import HealthCheck, settings

from tai_autonomics.gateway import openapi_document
from tests.gateway.support import auth

# A request the schema admits may still be refused for its meaning (from > to; an actor's refusal): 422;
# and /v1/shell, a WebSocket, answers a plain GET 426 (tests/gateway/test_shell.py opens it for real).
# A request the schema refuses may also be refused for its size first: 413 (schemathesis generates
# bodies past the test gateway's 8 KiB limit now and then).
CONFIG = schemathesis.Config.from_dict({"checks": {
    "positive_data_acceptance": {"expected-statuses": ["2xx", "401", "403", "404", "409", "422", "426", "429", "503"]},
    "negative_data_rejection": {"expected-statuses": ["400", "401", "403", "404", "405", "406", "409", "413", "415",
                                                      "422", "428", "429", "5xx"]}}})
schema = schemathesis.openapi.from_dict(json.loads(openapi_document()), config=CONFIG)


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_the_gateway_keeps_its_contract(case, gateway) -> None:
    case.call_and_validate(base_url=gateway.url, headers=auth("admin"))
