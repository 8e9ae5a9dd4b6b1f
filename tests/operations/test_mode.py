"""The mode state machine against a reference table (hypothesis state machine): read_only has
two causes, insurance lost and the ledger's disk refusing writes, and is left only when neither holds."""

from __future__ import annotations

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from tai_autonomics.ledger.errors import StoreUnavailable
from tai_autonomics.operations.mode import (
    DRAINING,
    EVAL,
    PRICING,
    PROD,
    READ,
    READ_ONLY,
    WRITE,
    ModeMachine,
    ModeRefusal,
)


class ModeModel(RuleBasedStateMachine):
    @initialize(configured=st.sampled_from([EVAL, PROD]), manual=st.booleans(), started=st.booleans())
    def start(self, configured: str, manual: bool, started: bool) -> None:
        self.machine = ModeMachine(configured, manual_resume=manual)
        self.manual = manual
        self.insured, self.disk_down = True, False
        self.expected = ""  # not started (ProdMode still verifying): nothing may run
        if started:
            assert self.machine.start("verified").mode == configured
            self.expected = configured

    @rule(reason=st.text(max_size=5))
    def lose_insurance(self, reason: str) -> None:
        t = self.machine.insurance_lost(reason)
        self.insured = False
        if self.expected == PROD:
            assert t is not None and (t.previous, t.mode) == (PROD, READ_ONLY)
            self.expected = READ_ONLY
        else:
            assert t is None

    @rule()
    def confirm_insurance(self) -> None:
        t = self.machine.insurance_confirmed()
        self.insured = True
        if self.expected == READ_ONLY and not self.manual and not self.disk_down:
            assert t is not None and t.mode == PROD
            self.expected = PROD
        else:
            assert t is None

    @rule(reason=st.text(max_size=5))
    def disk_refuses_writes(self, reason: str) -> None:
        t = self.machine.ledger_lost(reason)
        self.disk_down = True
        if self.expected == PROD:
            assert t is not None and (t.previous, t.mode, t.reason) == (PROD, READ_ONLY, reason)
            self.expected = READ_ONLY
        else:
            assert t is None

    @rule()
    def disk_takes_writes_again(self) -> None:
        t = self.machine.ledger_back()
        if self.disk_down and self.expected == READ_ONLY and self.insured and not self.manual:
            assert t is not None and (t.previous, t.mode) == (READ_ONLY, PROD)
            self.expected = PROD
        else:
            assert t is None
        self.disk_down = False

    @rule(ok=st.booleans())
    def operator_resumes(self, ok: bool) -> None:
        if self.expected == READ_ONLY and ok and not self.disk_down:
            assert self.machine.resume(ok).mode == PROD
            self.expected, self.insured = PROD, True
        else:  # the mode and the insurance are checked first: the disk is the last reason left
            with pytest.raises(StoreUnavailable if self.expected == READ_ONLY and ok else ModeRefusal):
                self.machine.resume(ok)

    @rule()
    def drain(self) -> None:
        t = self.machine.drain()
        assert (t is None) == (self.expected == DRAINING)
        self.expected = DRAINING

    @invariant()
    def operations_allowed_match_the_spec(self) -> None:
        if not hasattr(self, "machine"):
            return
        assert self.machine.mode == self.expected
        allowed = {EVAL: {READ, PRICING}, PROD: {READ, PRICING, WRITE}, READ_ONLY: {READ}, DRAINING: set(), "": set()}
        for op in (READ, WRITE, PRICING):
            if op in allowed[self.expected]:
                self.machine.check(op)
            else:
                with pytest.raises(ModeRefusal) as err:
                    self.machine.check(op)
                assert err.value.detail["mode"] == self.expected


TestModeMachine = ModeModel.TestCase


def test_transitions_carry_their_reason_for_the_receipt() -> None:
    m = ModeMachine(PROD)
    m.start("certificate valid")
    assert m.insurance_lost("insurer unreachable past the cache TTL").to_payload() == {
        "from": PROD, "to": READ_ONLY, "reason": "insurer unreachable past the cache TTL"}
