"""An eval-mode daemon: quotes are advisory receipts whose session MACs the daemon checks within
its session (the remote shell's ``verify``, over the typed client's shell), while writes are refused
and no revenue is recognised from advisory receipts."""

from __future__ import annotations

import pytest

from tai_autonomics.client import ClientError, RetryPolicy
from tests.e2e import DEPLOY, client, dev_daemon


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    with dev_daemon(tmp_path_factory.mktemp("eval"), release_top='mode = "eval"\n') as d:
        yield d


def test_advisory_receipts_are_mac_checked_within_their_session_through_the_daemon(daemon) -> None:
    with client(daemon, "service", retry=RetryPolicy(attempts=1)) as service:  # eval refuses writes for good
        quotes = [service.create_quote({"customer_id": "trial", "metrics": {"throughput_rps": 10 * n}})
                  for n in range(1, 4)]
        assert {q["receipt"]["authority"] for q in quotes} == {"advisory"} and service.get_mode()["mode"] == "eval"
        with pytest.raises(ClientError) as refused:
            service.create_deployment(DEPLOY)
        assert (refused.value.status, refused.value.code) == (503, "mode_refused")
    with client(daemon, "admin") as admin, admin.open_shell() as shell:
        verified = shell.run("verify")
    assert verified.ok, verified.error
    report = verified.value
    assert report["ok"] and report["contractual"] == 0
    assert report["session_macs_checked"] == report["advisory"] >= 3 + 1  # the quotes, the mode and the command
    with client(daemon, "auditor") as auditor, pytest.raises(ClientError) as none:
        auditor.get_revenue("2026-02")
    assert (none.value.status, none.value.code) == (409, "no_contract_chain")
