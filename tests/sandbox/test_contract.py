"""The sandbox against its OpenAPI documents: routes, request and response schemas, malformed input."""

from __future__ import annotations

import base64
import hashlib
import json
from importlib import resources
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from openapi_spec_validator import validate as validate_openapi

from tai_autonomics.trust import generate_key_and_csr, sample_policy
from tai_autonomics.trust.insurer_signature import load_public_keys, verify_body

POLICY_ID = sample_policy().policy_id
HYPOTHESIS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def csr_pem() -> str:
    _, csr = generate_key_and_csr("sandbox-test")
    return csr.public_bytes(serialization.Encoding.PEM).decode()


class Caller:
    """Calls the sandbox and checks request and response against the contract."""

    def __init__(self, http: httpx.Client, contract: Any) -> None:
        self.http, self.contract = http, contract

    def __call__(self, method: str, template: str, path: str | None = None, body: Any = None,
                 **kwargs: Any) -> httpx.Response:
        if body is not None:
            assert self.contract.request_errors(method, template, body) == [], "the test's request breaks the contract"
            kwargs["json"] = body
        response = self.http.request(method, path or template, **kwargs)
        self.contract.check_response(method, template, response)
        return response


@pytest.fixture
def call(http: httpx.Client, contract: Any) -> Caller:
    return Caller(http, contract)


def test_documents_are_valid_openapi() -> None:
    folder = resources.files("tai_autonomics.sandbox") / "openapi"
    for name in ("insurer", "marketplace", "customer", "admin"):
        path = folder / f"{name}.json"
        validate_openapi(json.loads(path.read_text()), base_uri=f"file://{path}")


def test_every_route_is_documented_and_every_documented_route_exists(sandbox: Any, contract: Any) -> None:
    served = {(route.path, method.lower()) for route in sandbox.sandbox.app.routes for method in route.methods
              if method != "HEAD"}
    documented = {(path, method) for doc in contract.docs.values() for path, item in doc["paths"].items()
                  for method in item}
    assert served == documented


def test_insurer_operations_match_the_contract_and_are_signed(call: Caller, sandbox: Any) -> None:
    keys = load_public_keys(sandbox.sandbox.config.insurer_public_key_file.read_bytes())
    policy = f"/insurer/v1/policies/{POLICY_ID}"
    responses = [
        call("GET", "/insurer/v1/policies/{policy_id}", policy),
        call("GET", "/insurer/v1/policies/{policy_id}", "/insurer/v1/policies/no-such-policy"),
        call("GET", "/insurer/v1/policies/{policy_id}", "/insurer/v1/policies/%20bad"),
    ]
    issued = call("POST", "/insurer/v1/policies/{policy_id}/certificates", f"{policy}/certificates",
                  {"csr_pem": csr_pem()})
    assert issued.status_code == 201
    serial = issued.json()["serial"]
    responses += [
        issued,
        call("POST", "/insurer/v1/policies/{policy_id}/certificates", f"{policy}/certificates", {"csr_pem": "junk"}),
        call("POST", "/insurer/v1/policies/{policy_id}/certificates/renew", f"{policy}/certificates/renew",
             {"csr_pem": csr_pem(), "current_serial": serial}),
        call("GET", "/insurer/v1/certificates/{serial}", f"/insurer/v1/certificates/{serial}"),
        call("POST", "/insurer/v1/certificates/{serial}/revoke", f"/insurer/v1/certificates/{serial}/revoke",
             {"reason": "key compromise"}),
        call("POST", "/insurer/v1/policies/{policy_id}/certificates/renew", f"{policy}/certificates/renew",
             {"csr_pem": csr_pem(), "current_serial": serial}),
        call("GET", "/insurer/v1/certificates/{serial}", "/insurer/v1/certificates/abc"),
        call("GET", "/insurer/v1/keys"),
        call("GET", "/insurer/v1/ca"),
    ]
    assert [r.status_code for r in responses] == [200, 404, 400, 201, 400, 201, 200, 200, 409, 404, 200, 200]
    assert responses[8].json()["error"]["code"] == "certificate_revoked"
    assert responses[7].json()["status"] == "revoked"
    for response in responses:
        verify_body(keys, response.content, response.headers)
    served_key = responses[-2].json()["keys"][0]
    assert load_public_keys(served_key["public_key_pem"].encode()) == keys
    assert served_key["key_id"] in keys


def test_marketplace_operations_match_the_contract(call: Caller) -> None:
    hashes = {}
    for role in ("code", "tests", "docs", "metadata"):
        content = f"{role} of work 1".encode()
        uploaded = call("POST", "/marketplace/v1/artifacts",
                        body={"name": role, "content_base64": base64.b64encode(content).decode()})
        assert uploaded.status_code == 201 and uploaded.json()["sha256"] == hashlib.sha256(content).hexdigest()
        hashes[role] = uploaded.json()["sha256"]
    work = {"work_id": "work-1", "artifacts": hashes, "title": "Work one"}
    first = call("POST", "/marketplace/v1/works", body=work)
    again = call("POST", "/marketplace/v1/works", body=work)
    assert (first.status_code, again.status_code) == (201, 200) and first.json() == again.json()
    conflict = call("POST", "/marketplace/v1/works", body={**work, "artifacts": {**hashes, "docs": hashes["code"]}})
    missing = call("POST", "/marketplace/v1/works",
                   body={"work_id": "work-2", "artifacts": {**hashes, "code": "0" * 64}})
    assert (conflict.status_code, missing.status_code) == (409, 422)
    assert call("GET", "/marketplace/v1/works/{work_id}", "/marketplace/v1/works/work-1").json() == first.json()
    assert call("GET", "/marketplace/v1/works/{work_id}", "/marketplace/v1/works/nope").status_code == 404
    bad64 = call("POST", "/marketplace/v1/artifacts", body={"name": "x", "content_base64": "***"})
    assert bad64.status_code == 400


def deployment(**overrides: Any) -> dict[str, Any]:
    return {"sku_id": "sku-001", "target_cloud": "gcp", "region": "europe-west1", "customer_account": "acct-1",
            "artifacts": {"image": "registry/app:1"}, "operation_id": "op-1", **overrides}


def test_customer_deploy_succeeds_and_reports_its_result(call: Caller) -> None:
    deployed = call("POST", "/customer/v1/deployments", body=deployment())
    assert deployed.status_code == 201 and deployed.json()["status"] == "succeeded"
    deployment_id = deployed.json()["deployment_id"]
    got = call("GET", "/customer/v1/deployments/{deployment_id}", f"/customer/v1/deployments/{deployment_id}")
    assert got.json() == deployed.json()
    assert call("GET", "/customer/v1/deployments/{deployment_id}", "/customer/v1/deployments/dep-0000000000000000"
                ).status_code == 404


@pytest.mark.parametrize(("classification", "status"), [
    ("authentication_error", 401), ("insufficient_permissions", 403), ("resource_quota_exceeded", 409),
    ("sku_not_supported", 422), ("other", 500),
])
def test_customer_deploy_failures_map_to_rca_classes(call: Caller, http: httpx.Client, classification: str,
                                                     status: int) -> None:
    http.post("/admin/faults", json={"kind": "reject", "endpoint": "customer.deploy",
                                     "classification": classification}).raise_for_status()
    failed = call("POST", "/customer/v1/deployments", body=deployment())
    assert failed.status_code == status and failed.json()["error"]["code"] == classification
    deployment_id = failed.json()["error"]["detail"]["deployment_id"]
    result = call("GET", "/customer/v1/deployments/{deployment_id}", f"/customer/v1/deployments/{deployment_id}")
    assert result.json()["status"] == "failed" and result.json()["failure"]["classification"] == classification


@pytest.mark.parametrize("fault", [
    {"kind": "rate_limit", "retry_after_s": 2},
    {"kind": "outage", "retry_after_s": 1},
    {"kind": "outage"},
    {"kind": "error", "status": 502},
    {"kind": "timeout", "delay_s": 0.05},
])
def test_fault_answers_match_the_contract(call: Caller, http: httpx.Client, fault: dict[str, Any]) -> None:
    http.put("/admin/faults", json={"faults": [fault]}).raise_for_status()
    for method, template, path, body in [
        ("GET", "/insurer/v1/policies/{policy_id}", f"/insurer/v1/policies/{POLICY_ID}", None),
        ("POST", "/customer/v1/deployments", None, deployment()),
        ("GET", "/marketplace/v1/works/{work_id}", "/marketplace/v1/works/w", None),
    ]:
        response = call(method, template, path, body)
        assert response.status_code >= 429
        if "retry_after_s" in fault:
            assert float(response.headers["retry-after"]) == fault["retry_after_s"]


@pytest.mark.parametrize(("kwargs", "status", "code"), [
    ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 400, "malformed_json"),
    ({"content": b"[1, 2]", "headers": {"content-type": "application/json"}}, 400, "invalid_request"),
    ({"content": b"\xff\xfe", "headers": {"content-type": "application/json"}}, 400, "malformed_json"),
    # a key given twice, NaN, a number too large to be finite: read as JSON strictly (validation.loads_json)
    ({"content": json.dumps(deployment())[:-1].encode() + b', "region": "us-east1"}',
      "headers": {"content-type": "application/json"}}, 400, "malformed_json"),
    ({"content": json.dumps(deployment(artifacts={"size": 1.5})).replace("1.5", "NaN").encode(),
      "headers": {"content-type": "application/json"}}, 400, "malformed_json"),
    ({"content": json.dumps(deployment(artifacts={"size": 1.5})).replace("1.5", "1e999").encode(),
      "headers": {"content-type": "application/json"}}, 400, "malformed_json"),
    ({"content": b"sku_id=1", "headers": {"content-type": "application/x-www-form-urlencoded"}}, 415,
     "unsupported_media_type"),
    ({"json": deployment(target_cloud="mars")}, 400, "invalid_request"),
    ({"json": deployment(extra=1)}, 400, "invalid_request"),
    ({"json": deployment(region="")}, 400, "invalid_request"),
    ({"json": deployment(artifacts=[])}, 400, "invalid_request"),
])
def test_malformed_requests_get_clean_json_4xx(http: httpx.Client, contract: Any, kwargs: dict[str, Any],
                                               status: int, code: str) -> None:
    response = http.post("/customer/v1/deployments", **kwargs)
    contract.check_response("POST", "/customer/v1/deployments", response)
    assert response.status_code == status and response.json()["error"]["code"] == code


def test_unknown_routes_and_methods_get_json_errors(http: httpx.Client) -> None:
    missing = http.get("/insurer/v1/nothing-here")
    wrong_method = http.delete("/customer/v1/deployments")
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "not_found")
    assert (wrong_method.status_code, wrong_method.json()["error"]["code"]) == (405, "method_not_allowed")


# No "\n" in generated text: jsonschema evaluates `pattern` with Python's re, where "$" also matches
# before a final newline; the contract's patterns are ECMA-262, which the sandbox implements (fullmatch).
# UTF-8 only: a lone surrogate cannot be sent as JSON at all (httpx fails to encode it, before any request).
TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\n"), max_size=20)
FIELD_VALUES = st.one_of(
    st.sampled_from(["sku-001", "gcp", "aws", "eu-1", "acct", "", "mars", " ", "a" * 200]),
    st.integers(), st.none(), st.booleans(), st.lists(st.integers(), max_size=2),
    st.dictionaries(TEXT, st.integers(), max_size=2), TEXT,
)
DEPLOY_FIELDS = st.sampled_from(["sku_id", "target_cloud", "region", "customer_account", "artifacts", "operation_id",
                                 "other"])


@HYPOTHESIS
@given(base=st.booleans(), changes=st.dictionaries(DEPLOY_FIELDS, FIELD_VALUES, max_size=3),
       removed=st.sets(DEPLOY_FIELDS, max_size=2))
@example(base=True, changes={"operation_id": None}, removed=set())  # null is not "absent"
def test_any_deploy_body_is_accepted_exactly_when_the_contract_allows_it(
        http: httpx.Client, contract: Any, base: bool, changes: dict[str, Any], removed: set[str]) -> None:
    body = {**(deployment() if base else {}), **changes}
    for name in removed:
        body.pop(name, None)
    response = http.post("/customer/v1/deployments", json=body)
    contract.check_response("POST", "/customer/v1/deployments", response)
    valid = not contract.request_errors("POST", "/customer/v1/deployments", body)
    assert (response.status_code == 201) == valid, (body, response.text)


SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(
    max_size=10)
JSON = st.recursive(SCALARS,
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                    max_leaves=8)


@HYPOTHESIS
@given(body=JSON, target=st.sampled_from([
    ("/marketplace/v1/works", "/marketplace/v1/works"),
    ("/marketplace/v1/artifacts", "/marketplace/v1/artifacts"),
    ("/insurer/v1/policies/{policy_id}/certificates", f"/insurer/v1/policies/{POLICY_ID}/certificates"),
    ("/insurer/v1/policies/{policy_id}/certificates/renew", f"/insurer/v1/policies/{POLICY_ID}/certificates/renew"),
]))
def test_arbitrary_json_bodies_get_documented_answers(http: httpx.Client, contract: Any, body: Any,
                                                      target: tuple[str, str]) -> None:
    template, path = target
    response = http.post(path, json=body)
    contract.check_response("POST", template, response)
    assert response.status_code < 500
    if contract.request_errors("POST", template, body):
        assert 400 <= response.status_code < 500
