"""The operations' pure rules: request validation and root-cause classification (property-tested)."""

from __future__ import annotations

import hashlib
import json
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tai_autonomics.actors._operation import party_url
from tai_autonomics.errors import InvalidRequest
from tai_autonomics.operations import deploy, publish
from tai_autonomics.operations.rca import NO_ANSWER, SEVERITIES, Answer
from tai_autonomics.sandbox.faults import REJECTION_STATUS

IDENTS = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,20}", fullmatch=True)
JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                    max_leaves=8)
SPECS = st.fixed_dictionaries(
    {"sku_id": IDENTS, "target_cloud": st.sampled_from(deploy.TARGET_CLOUDS), "customer_ref": IDENTS,
     "customer_account": IDENTS, "region": IDENTS,
     "artifacts": st.dictionaries(st.text(max_size=5), JSON, max_size=3)},
    optional={"cost": st.integers(0, 10**9) | st.decimals(0, 10**9, places=2).map(str)})
ANY = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5) | st.lists(st.integers(), max_size=2)
ANSWERS = st.builds(Answer, failure=st.sampled_from(NO_ANSWER)) | st.builds(
    Answer, status=st.integers(300, 599), message=st.text(max_size=10),
    code=st.sampled_from(["", "internal_error", "service_unavailable", "rate_limited", "idempotency_key_reused",
                          *REJECTION_STATUS]))


def valid_spec(**changes: Any) -> dict[str, Any]:
    spec = {"sku_id": "sku-001", "target_cloud": "gcp", "customer_ref": "acme", "customer_account": "acct-1",
            "region": "europe-west1", "artifacts": {"image": "app:1"}, "cost": "12.50"}
    spec.update(changes)
    return {k: v for k, v in spec.items() if v is not None}


@given(SPECS)
def test_valid_specs_are_accepted_and_recorded_faithfully(spec: dict[str, Any]) -> None:
    parsed, key = deploy.validate_deploy({"spec": spec, "idempotency_key": "k-1"})
    assert key == "k-1"
    recorded = parsed.to_dict()
    assert Decimal(recorded["cost"]) == Decimal(str(spec.get("cost", 0)))
    assert {k: v for k, v in recorded.items() if k != "cost"} == {k: v for k, v in spec.items() if k != "cost"}
    assert deploy.validate_spec(recorded) == parsed  # what the intent records rebuilds the same spec
    assert parsed.customer_body("op-1")["operation_id"] == "op-1"


@given(SPECS, st.sampled_from([*deploy.SPEC_FIELDS, "cost"]), ANY)
def test_a_bad_field_is_named(spec: dict[str, Any], field: str, value: Any) -> None:
    spec = {**spec, field: value}
    try:
        deploy.validate_spec(spec)
    except InvalidRequest as exc:
        assert exc.code == "invalid_request" and exc.detail["field"].startswith(f"spec.{field}")
    else:  # only values that are valid for the field get through
        assert field == "cost" or (field != "artifacts" and isinstance(value, str) and value)


def _schema_cost_pattern() -> re.Pattern[str]:
    document = json.loads((Path(deploy.__file__).parent.parent / "gateway" / "openapi.json").read_text())
    cost = document["components"]["schemas"]["DeploySpec"]["properties"]["cost"]["oneOf"]
    pattern = next(alt["pattern"] for alt in cost if alt["type"] == "string")
    return re.compile(pattern.replace("$", r"\Z"))  # ECMA-262's $, which a trailing newline does not satisfy


@given(st.text(alphabet="0123456789.eE+- _x", max_size=16) | st.text(max_size=8))
def test_a_cost_given_as_text_is_accepted_only_as_the_served_schema_says(text: str) -> None:
    """Schemathesis found "1e3"-style costs accepted though /openapi.json refuses them."""
    try:
        deploy.validate_spec(valid_spec(cost=text))
    except InvalidRequest as err:
        assert err.detail == {"field": "spec.cost"}
        assert _schema_cost_pattern().search(text) is None
    else:
        assert _schema_cost_pattern().search(text) is not None


@pytest.mark.parametrize(("request_", "field"), [
    ("nope", "request"), ({}, "spec"), ({"spec": valid_spec(), "extra": 1}, "extra"),
    ({"spec": valid_spec(), "idempotency_key": ""}, "idempotency_key"),
    ({"spec": valid_spec(), "idempotency_key": "a\nb"}, "idempotency_key"),
    ({"spec": valid_spec(target_cloud="mars")}, "spec.target_cloud"),
    ({"spec": valid_spec(cost=-1)}, "spec.cost"), ({"spec": valid_spec(cost="NaN")}, "spec.cost"),
    ({"spec": valid_spec(cost=True)}, "spec.cost"), ({"spec": valid_spec(cost="1e13")}, "spec.cost"),
    ({"spec": valid_spec(colour="red")}, "spec.colour"), ({"spec": valid_spec(region=None)}, "spec.region"),
    ({"spec": valid_spec(artifacts=[1])}, "spec.artifacts"),
    ({"spec": valid_spec(artifacts={"x": float("nan")})}, "spec.artifacts"),
    ({"spec": valid_spec(artifacts={"x": "y" * deploy.MAX_ARTIFACTS_BYTES})}, "spec.artifacts"),
    ({"spec": valid_spec(sku_id="-x")}, "spec.sku_id"),
])
def test_bad_deploy_requests_name_the_field(request_: Any, field: str) -> None:
    with pytest.raises(InvalidRequest) as err:
        deploy.validate_deploy(request_)
    assert err.value.detail == {"field": field}


@given(IDENTS, IDENTS, st.fixed_dictionaries({role: st.text(min_size=1, max_size=20) for role in publish.ROLES}))
def test_publications_hash_each_artifact(work_id: str, sku: str, artifacts: dict[str, str]) -> None:
    try:
        work = publish.validate_publish({"work_id": work_id, "sku_id": sku, "artifacts": artifacts})
    except InvalidRequest as exc:  # only text that cannot be UTF-8 (lone surrogates)
        assert exc.detail["field"].startswith("artifacts.")
        return
    assert work.hashes == {r: hashlib.sha256(artifacts[r].encode()).hexdigest() for r in publish.ROLES}
    assert work.register_body() == {"work_id": work_id, "artifacts": work.hashes}
    assert work.to_dict()["artifacts"] == work.hashes  # the intent records hashes, not content


@given(st.dictionaries(st.sampled_from(["work_id", "sku_id", "artifacts", "title"]), ANY | st.dictionaries(
    st.sampled_from([*publish.ROLES, "extra"]), ANY, max_size=5), max_size=4))
def test_any_publish_request_is_a_publication_or_names_its_field(request_: dict[str, Any]) -> None:
    try:
        publish.validate_publish(request_)
    except InvalidRequest as exc:
        assert exc.detail["field"].split(".")[0] in ("work_id", "sku_id", "artifacts", "title")


@given(ANSWERS)
def test_every_deploy_answer_has_a_spec_class_and_a_full_record(answer: Answer) -> None:
    rca = deploy.deploy_rca(answer, {"stage": "deploy"})
    assert rca["classification"] in deploy.CLASSES and rca["severity"] in SEVERITIES
    assert set(rca) == {"classification", "root_cause", "context", "mitigation", "severity",
                        "insurance_claim_eligible"}
    if answer.code in deploy.CLASSES:
        assert rca["classification"] == answer.code and not answer.transient(tuple(deploy.CLASSES))
    elif answer.failure == "timeout":
        assert rca["classification"] == "timeout"
    elif answer.failure:
        assert rca["classification"] == "network_error"


@given(st.sampled_from([publish.UPLOAD, publish.REGISTER]), ANSWERS)
def test_every_publish_answer_has_a_spec_class(stage: str, answer: Answer) -> None:
    rca = publish.publish_rca(stage, answer, {})
    assert rca["classification"] in publish.CLASSES
    if answer.code in publish.CLASSES:
        assert rca["classification"] == answer.code
    elif answer.failure:
        assert rca["classification"] == "network_error"


def test_the_sandbox_rejections_map_to_their_own_class() -> None:
    for code, status in REJECTION_STATUS.items():
        classes = deploy.CLASSES if code in deploy.CLASSES else publish.CLASSES
        answer = Answer(status, code, "rejected")
        assert not answer.transient(tuple(classes))
        rca = deploy.deploy_rca(answer, {}) if classes is deploy.CLASSES else publish.publish_rca("upload", answer, {})
        assert rca["classification"] == code


@pytest.mark.parametrize(("answer", "stage", "expected"), [
    (Answer(500, "internal_error"), publish.UPLOAD, "storage_upload_failed"),
    (Answer(413, "artifact_too_large"), publish.UPLOAD, "artifacts_validation_failed"),
    (Answer(409, "work_conflict"), publish.REGISTER, "metadata_registration_failed"),
    (Answer(401, "unauthorised"), publish.REGISTER, "permission_denied"),
])
def test_unclassified_marketplace_answers_are_classed_by_stage(answer: Answer, stage: str, expected: str) -> None:
    assert publish.classify(stage, answer) == expected


def test_transient_answers_are_retried_and_deliberate_ones_are_not() -> None:
    final = tuple(deploy.CLASSES)
    assert all(Answer(s, "service_unavailable").transient(final) for s in (429, 500, 502, 503, 504))
    assert all(Answer(failure=f).transient(final) for f in NO_ANSWER)
    assert not Answer(500, "other").transient(final) and not Answer(400, "invalid_request").transient(final)
    assert deploy.classify(Answer(422, "idempotency_key_reused")) == "other"


def test_party_urls_come_from_the_context() -> None:
    assert party_url({"customer": {"url": "http://c/"}, "sandbox": {"url": "http://s"}}, "customer") == "http://c"
    assert party_url({"sandbox": {"url": "http://s:1/"}}, "marketplace") == "http://s:1/marketplace/v1"
    with pytest.raises(ValueError, match="context.customer.url"):
        party_url({}, "customer")
