"""Actor args are checked by the validation helpers: a bool, a string, NaN or infinity given for a
duration or a count refuses the start naming the arg (``float(True)`` used to make a timeout of 1 s).

Each actor's ``init`` is called as the runtime calls it at start; its refusal is what the start
reports (the runtime's own start failure is tested in tests/runtime)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from tai_autonomics.actors.acquisition import Acquisition
from tai_autonomics.actors.cert_manager import CertManager
from tai_autonomics.actors.insurance_client import InsuranceClient
from tai_autonomics.actors.prod_mode import ProdMode
from tai_autonomics.actors.publisher import Publisher
from tai_autonomics.actors.receipt_ledger import ReceiptLedger
from tai_autonomics.errors import InvalidRequest
from tai_autonomics.runtime import Server

BAD = [True, "5", math.nan, math.inf, None]


def _insurer(tmp_path: Path) -> dict[str, Any]:
    """A context whose insurer settings are all given, so InsuranceClient reads its retry args."""
    return {"insurer": {"url": "http://127.0.0.1:9", "policy_id": "p", "public_key_file": str(tmp_path / "absent")}}


@pytest.mark.parametrize("bad", BAD)
@pytest.mark.parametrize(("actor", "arg"), [
    (Acquisition, "timeout_s"), (Acquisition, "attempts"), (Acquisition, "deadline_s"),
    (Publisher, "timeout_s"), (Publisher, "backoff_base_s"),
    (ProdMode, "check_interval_s"), (ProdMode, "verdict_repeat_s"),
    (ReceiptLedger, "batch_delay_s"),
    (InsuranceClient, "timeout_s"), (InsuranceClient, "attempts"), (InsuranceClient, "cache_ttl_s"),
    (CertManager, "clock_offset_s"),
])
def test_a_bad_duration_or_count_refuses_the_start_naming_the_arg(tmp_path: Path, actor: type[Server], arg: str,
                                                                  bad: Any) -> None:
    context = {"data_dir": str(tmp_path), "mode": "eval", **(_insurer(tmp_path) if actor is InsuranceClient else {})}
    with pytest.raises(InvalidRequest) as err:
        actor().init({"context": context, arg: bad})
    assert err.value.detail == {"field": arg}, err.value
    assert list(tmp_path.iterdir()) == []  # refused before it opened or wrote anything
