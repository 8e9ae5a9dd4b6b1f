"""Fault descriptions, the injector's determinism, and the admin API that sets them."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tai_autonomics.sandbox.faults import (
    KINDS, REJECTION_STATUS, Fault, FaultConfigError, FaultInjector, format_fault_arg, parse_fault_arg,
)

SECONDS = st.floats(0, 3600, allow_nan=False)
COMMON = {"endpoint": st.sampled_from(["*", "insurer.*", "customer.deploy", "marketplace.*"]),
          "probability": st.floats(0, 1), "times": st.none() | st.integers(1, 10**6)}
PER_KIND = {
    "latency": {"delay_s": SECONDS}, "timeout": {"delay_s": SECONDS},
    "error": {"status": st.integers(500, 599)},
    "outage": {"mode": st.sampled_from(["status", "drop"]), "retry_after_s": st.none() | SECONDS},
    "rate_limit": {"retry_after_s": SECONDS},
    "expired_certificate": {}, "revoked_certificate": {},
    "bad_signature": {"mode": st.sampled_from(["corrupt", "missing", "unknown_key"])},
    "reject": {"classification": st.sampled_from(sorted(REJECTION_STATUS))},
}
FAULTS = st.sampled_from(KINDS).flatmap(
    lambda kind: st.fixed_dictionaries({}, optional={**COMMON, **PER_KIND[kind]}).map(
        lambda fields: Fault(kind=kind, **{k: v for k, v in fields.items() if v is not None})))
ANY_VALUE = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8) | st.lists(st.integers(),
                                                                                                   max_size=2)
FIELD_NAMES = st.sampled_from(["kind", "endpoint", "probability", "times", "delay_s", "status", "retry_after_s", "mode",
                               "classification", "bogus"])
JSON_VALUE = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(
    max_size=8) | st.lists(st.integers(), max_size=2)
API = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@given(FAULTS)
def test_faults_round_trip_through_json_and_the_cli_flag(fault: Fault) -> None:
    assert Fault.from_dict(fault.to_dict()) == fault
    assert parse_fault_arg(format_fault_arg(fault)) == fault


@given(st.dictionaries(FIELD_NAMES, st.sampled_from(KINDS) | ANY_VALUE, max_size=5))
def test_any_fault_dict_is_a_fault_or_a_typed_error(data: dict[str, Any]) -> None:
    try:
        fault = Fault.from_dict(data)
    except FaultConfigError as exc:
        assert exc.code == "sandbox_fault_invalid"
    else:
        assert fault.kind in KINDS and Fault.from_dict(fault.to_dict()) == fault


@pytest.mark.parametrize("text", ["", "nope", "latency:delay_s", "latency:delay_s=-1", "error:status=404",
                                  "reject:classification=unknown", "latency:colour=1", "rate_limit:mode=drop",
                                  "{bad json", "[1]", "outage:times=0",
                                  '{"kind": "latency", "kind": "error", "status": 502}'])  # a key given twice
def test_bad_fault_flags_are_refused_with_a_typed_error(text: str) -> None:
    with pytest.raises(FaultConfigError):
        parse_fault_arg(text)


def test_fault_flags_parse() -> None:
    assert parse_fault_arg("rate_limit@insurer.*:retry_after_s=2,times=3") == Fault(
        kind="rate_limit", endpoint="insurer.*", retry_after_s=2, times=3)
    assert parse_fault_arg('{"kind": "outage", "mode": "drop"}') == Fault(kind="outage", mode="drop")


def test_the_injector_matches_endpoints_and_expires_counted_faults() -> None:
    injector = FaultInjector([Fault(kind="outage", endpoint="insurer.*", times=2), Fault(kind="latency")])
    assert [f.kind for f in injector.draw("insurer.policy_status")] == ["outage", "latency"]
    assert [f.kind for f in injector.draw("customer.deploy")] == ["latency"]
    assert [f.kind for f in injector.draw("insurer.keys")] == ["outage", "latency"]
    assert [f.kind for f in injector.draw("insurer.keys")] == ["latency"]
    assert [f["kind"] for f in injector.snapshot()["faults"]] == ["latency"]


@given(seed=st.integers(0, 2**32), rate=st.floats(0.05, 0.95))
def test_an_error_rate_is_reproducible_from_its_seed(seed: int, rate: float) -> None:
    def run() -> list[bool]:
        injector = FaultInjector([Fault(kind="error", probability=rate)], seed=seed)
        return [bool(injector.draw("customer.deploy")) for _ in range(50)]

    assert run() == run()


def test_an_error_rate_fires_at_about_that_rate() -> None:
    injector = FaultInjector([Fault(kind="error", probability=0.25)], seed=1)
    fired = sum(bool(injector.draw("x")) for _ in range(4000))
    assert 900 <= fired <= 1100


def test_admin_api_sets_lists_and_removes_faults(http: httpx.Client, contract: Any) -> None:
    put = http.put("/admin/faults", json={"seed": 9, "faults": [{"kind": "latency", "delay_s": 0.01}]})
    contract.check_response("PUT", "/admin/faults", put)
    added = http.post("/admin/faults", json={"kind": "outage", "endpoint": "customer.*", "times": 1})
    contract.check_response("POST", "/admin/faults", added)
    listed = http.get("/admin/faults")
    contract.check_response("GET", "/admin/faults", listed)
    assert listed.json()["seed"] == 9 and [f["kind"] for f in listed.json()["faults"]] == ["latency", "outage"]
    deleted = http.delete(f"/admin/faults/{added.json()['id']}")
    contract.check_response("DELETE", "/admin/faults/{fault_id}", deleted)
    again = http.delete(f"/admin/faults/{added.json()['id']}")
    contract.check_response("DELETE", "/admin/faults/{fault_id}", again)
    assert (deleted.status_code, again.status_code) == (204, 404)


def test_admin_request_log_and_reset(http: httpx.Client, contract: Any) -> None:
    http.get("/insurer/v1/keys")
    http.get("/marketplace/v1/works/w")
    log = http.get("/admin/requests", params={"endpoint": "insurer.*"})
    contract.check_response("GET", "/admin/requests", log)
    assert [e["endpoint"] for e in log.json()["requests"]] == ["insurer.signing_keys"]
    first_seq = http.get("/admin/requests").json()["requests"][0]["seq"]
    assert [e["endpoint"] for e in http.get("/admin/requests", params={"after": first_seq}).json()["requests"]] == [
        "marketplace.get_work"]
    bad = http.get("/admin/requests", params={"after": "-1"})
    contract.check_response("GET", "/admin/requests", bad)
    assert bad.status_code == 400
    reset = http.post("/admin/reset")
    contract.check_response("POST", "/admin/reset", reset)
    assert http.get("/admin/requests").json()["requests"] == []


def test_admin_policies(http: httpx.Client, contract: Any) -> None:
    listed = http.get("/admin/policies")
    contract.check_response("GET", "/admin/policies", listed)
    policy = listed.json()["policies"][0]["policy"]
    moved = http.put("/admin/policies/other-1", json={"policy": {**policy, "policy_id": "other-1"},
                                                      "period_end": "2020-01-01T00:00:00Z"})
    contract.check_response("PUT", "/admin/policies/{policy_id}", moved)
    assert moved.json()["status"] == "expired"
    for body in ({"policy": policy}, {"policy": {**policy, "policy_id": "x", "coverage_limits": {}}},
                 {"policy": {**policy, "policy_id": "x"}, "status": "paused"},
                 {"policy": {**policy, "policy_id": "x"}, "period_end": "tomorrow"}):
        refused = http.put("/admin/policies/x", json=body)
        contract.check_response("PUT", "/admin/policies/{policy_id}", refused)
        assert refused.status_code == 400


@API
@given(body=st.dictionaries(FIELD_NAMES, st.sampled_from(KINDS) | JSON_VALUE, max_size=4))
def test_any_admin_fault_body_is_added_or_refused_cleanly(http: httpx.Client, contract: Any,
                                                          body: dict[str, Any]) -> None:
    response = http.put("/admin/faults", json={"faults": [body]})
    contract.check_response("PUT", "/admin/faults", response)
    assert response.status_code in (200, 400)
    http.put("/admin/faults", json={"faults": []}).raise_for_status()
