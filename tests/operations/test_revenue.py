"""Revenue recognition from contract receipts, with docs/specification.md §12's numbers."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tai_autonomics.errors import InvalidRequest
from tai_autonomics.operations.revenue import EVENTS, contract_event, recognise


def receipts(*events: tuple[str, dict], contract: str = "acme") -> list[dict]:
    """Receipts as the ledger stores them (contractual, in order), from POST bodies."""
    made = []
    for seq, (event, body) in enumerate(events, 1):
        kind, payload = contract_event(contract, {"event": event, **body})
        made.append({"kind": kind, "authority": "contractual", "seq": seq, "payload": payload})
    return made


SIGNED_AND_VERIFIED = (("msa_signed", {"date": "2026-01-01", "monthly_fee": 5000}),
                       ("insurance_verified", {"date": "2026-01-01"}))


def test_a_lapse_pauses_recognition_and_refunds_the_lapsed_days() -> None:
    """5,000 prepaid for February (28 days), insurance lapsed on the 14th: 15 days refunded."""
    month = recognise(receipts(*SIGNED_AND_VERIFIED, ("insurance_lapsed", {"date": "2026-02-14"})), "2026-02")
    row = month["contracts"][0]
    assert (row["days_in_force"], row["days_lapsed"], row["refund"], row["base"]) == (13, 15, "2678.57", "2321.43")
    assert row["paused"] and row["cure_notices"] == ["2026-02-14"]
    assert month["totals"]["refunds"] == "2678.57" and month["days"] == 28
    cured = recognise(receipts(*SIGNED_AND_VERIFIED, ("insurance_lapsed", {"date": "2026-02-14"}),
                               ("insurance_verified", {"date": "2026-02-21"})), "2026-02")["contracts"][0]
    assert (cured["days_in_force"], cured["days_lapsed"], cured["refund"]) == (21, 7, "1250.00")  # 14th-20th


def test_recognition_starts_only_with_the_msa_and_verified_insurance_pro_rata() -> None:
    only_msa = recognise(receipts(("eval_start", {"date": "2025-12-01"}),
                                  ("msa_signed", {"date": "2026-03-01", "monthly_fee": "3100.00"})), "2026-03")
    assert only_msa["totals"]["recognised"] == "0.00"
    mid_month = recognise(receipts(("msa_signed", {"date": "2026-03-01", "monthly_fee": "3100.00"}),
                                   ("insurance_requested", {"date": "2026-03-02"}),
                                   ("insurance_received", {"date": "2026-03-15"}),
                                   ("insurance_verified", {"date": "2026-03-17"}),
                                   ("production_go_live", {"date": "2026-03-18"})), "2026-03")
    assert mid_month["contracts"][0]["base"] == "1500.00"  # 15 of 31 days of 3,100
    assert mid_month["contracts"][0]["refund"] == "0.00"  # never in force before: nothing prepaid to refund


def test_variable_fees_are_capped_at_125_percent_of_the_base() -> None:
    rows = recognise(receipts(*SIGNED_AND_VERIFIED, ("usage_reported", {"date": "2026-02-28", "month": "2026-02",
                                                                        "amount": "4000"}),
                              ("usage_reported", {"date": "2026-02-28", "month": "2026-02", "amount": "4000"})),
                     "2026-02")["contracts"][0]
    assert (rows["variable_reported"], rows["variable_cap"], rows["variable"]) == ("8000.00", "6250.00", "6250.00")
    assert rows["recognised"] == "11250.00"


@pytest.mark.parametrize(("availability", "percent", "credit"), [
    ("99.9", 0, "0.00"), ("99.5", 0, "0.00"), ("99.49", 5, "250.00"), ("99.0", 5, "250.00"),
    ("98.99", 15, "750.00"), ("98", 15, "750.00"), ("97.999", 30, "1500.00")])
def test_sla_credit_tiers(availability: str, percent: int, credit: str) -> None:
    row = recognise(receipts(*SIGNED_AND_VERIFIED, ("sla_reported", {"date": "2026-03-01", "month": "2026-02",
                                                                     "availability_pct": availability})),
                    "2026-02")["contracts"][0]
    assert (row["sla_credit_pct"], row["sla_credit"]) == (percent, credit)
    assert row["recognised"] == f"{5000 - float(credit):.2f}"


def test_no_verification_30_days_after_the_msa_escalates_in_that_month() -> None:
    unverified = receipts(("msa_signed", {"date": "2026-01-10", "monthly_fee": 1000}))
    assert recognise(unverified, "2026-01")["contracts"][0]["escalated_on"] is None
    assert recognise(unverified, "2026-02")["contracts"][0]["escalated_on"] == "2026-02-09"
    on_time = unverified + receipts(("insurance_verified", {"date": "2026-02-09"}))
    assert recognise(on_time, "2026-02")["contracts"][0]["escalated_on"] is None


def test_only_contractual_contract_receipts_count() -> None:
    advisory = [{**r, "authority": "advisory"} for r in receipts(*SIGNED_AND_VERIFIED)]
    other = [{"kind": "deploy.intent", "authority": "contractual", "payload": {"contract_id": "x"}}]
    month = recognise(advisory + other, "2026-02")
    assert month["contracts"] == [] and month["contract_receipts"] == 0


@pytest.mark.parametrize(("contract", "body", "field"), [
    ("acme", {"event": "msa_signed", "date": "2026-02-30", "monthly_fee": 1}, "date"),
    ("acme", {"event": "msa_signed", "date": "2026-02-01"}, "monthly_fee"),
    ("acme", {"event": "msa_signed", "date": "2026-02-01", "monthly_fee": "1.001"}, "monthly_fee"),
    ("acme", {"event": "msa_signed", "date": "2026-02-01", "monthly_fee": -1}, "monthly_fee"),
    ("acme", {"event": "msa_signed", "date": "2026-02-01", "monthly_fee": "NaN"}, "monthly_fee"),
    ("acme", {"event": "msa_signed", "date": "2026-02-01", "monthly_fee": True}, "monthly_fee"),
    ("acme", {"event": "usage_reported", "date": "2026-02-01", "month": "2026-13", "amount": 1}, "month"),
    ("acme", {"event": "sla_reported", "date": "2026-02-01", "month": "2026-01", "availability_pct": 101},
     "availability_pct"),
    ("acme", {"event": "refund_everything", "date": "2026-02-01"}, "event"),
    ("acme", {"event": "eval_start", "date": "2026-02-01", "extra": 1}, "extra"),
    ("a/b", {"event": "eval_start", "date": "2026-02-01"}, "id"),
])
def test_bad_events_are_refused_naming_the_field(contract: str, body: dict, field: str) -> None:
    with pytest.raises(InvalidRequest) as err:
        contract_event(contract, body)
    assert err.value.code == "invalid_request" and err.value.detail["field"] == field


@pytest.mark.parametrize("month", ["2026-2", "2026-00", "0000-01", "26-02", "2026-02-01", 202602])
def test_a_bad_month_is_refused(month) -> None:
    with pytest.raises(InvalidRequest):
        recognise([], month)


@given(st.dictionaries(st.sampled_from(["event", "date", "monthly_fee", "month", "amount", "availability_pct", "x"]),
                       st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
                       | st.sampled_from(list(EVENTS) + ["2026-02-01", "2026-02"])))
def test_any_body_gives_an_event_or_a_clear_refusal(body: dict) -> None:
    try:
        kind, payload = contract_event("c-1", body)
    except InvalidRequest as err:
        assert err.detail["field"] and err.message
    else:
        assert kind == f"contract.{body['event']}" and payload["contract_id"] == "c-1"
        recognise([{"kind": kind, "authority": "contractual", "payload": payload}], payload["date"][:7])


@given(st.lists(st.tuples(st.sampled_from(["insurance_verified", "insurance_lapsed"]), st.integers(0, 27)),
                max_size=8))
def test_every_day_of_a_month_is_in_force_lapsed_or_before_the_start_and_the_money_adds_up(changes) -> None:
    events = [("msa_signed", {"date": "2026-01-15", "monthly_fee": 2800})]
    events += [(event, {"date": f"2026-02-{day + 1:02d}"}) for event, day in changes]
    row = recognise(receipts(*events), "2026-02")["contracts"][0]
    assert row["days_in_force"] + row["days_lapsed"] <= 28
    assert row["base"] == f"{row['days_in_force'] * 100:.2f}" and row["refund"] == f"{row['days_lapsed'] * 100:.2f}"
