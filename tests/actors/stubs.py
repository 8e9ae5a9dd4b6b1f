"""Stand-ins for ProdMode's neighbours, so its rules can be driven case by case; and the real
ReceiptLedger made to die on cue (:class:`LedgerDyingOnOutcome`), for its callers' tests.

(The real CertManager, InsuranceClient and ReceiptLedger actors are tested on their own; the
daemon test runs them together.)
"""

from __future__ import annotations

import os
import signal
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from tai_autonomics.actors.receipt_ledger import ReceiptLedger
from tai_autonomics.errors import TaiError
from tai_autonomics.runtime import DEFERRED, Server
from tai_autonomics.trust import sample_policy


class CertManagerStub(Server):
    def init(self, args: dict[str, Any]) -> None:
        self.valid_for_s = args.get("valid_for_s", 30 * 86400)
        self.revoked = args.get("revoked", False)
        self.broken = args.get("broken")

    def call_status(self, _payload: Any) -> dict[str, Any]:
        if self.broken:
            raise TaiError(self.broken, code="cert_expired")
        not_after = datetime.now(timezone.utc) + timedelta(seconds=self.valid_for_s)
        return {"policy": sample_policy().to_dict(), "not_after": not_after.isoformat(), "revoked": self.revoked}

    def call_subscribe(self, _payload: Any) -> dict[str, Any]:
        """ProdMode subscribes at start and at each check; the reply is ``status``'s (no notices are sent)."""
        return self.call_status(None)

    def call_set(self, changes: dict[str, Any]) -> None:
        for key, value in changes.items():
            setattr(self, key, value)


class InsuranceStub(Server):
    def init(self, args: dict[str, Any]) -> None:
        self.failing = args.get("failing")
        self.asked = 0

    def call_verify_policy(self, request: dict[str, Any]) -> dict[str, Any]:
        self.asked += 1
        if self.failing:
            raise TaiError(f"insurer says {self.failing}", code=self.failing)
        return {"policy_id": request["policy_id"], "status": "active"}

    def call_set(self, changes: dict[str, Any]) -> None:
        self.failing = changes.get("failing")

    def call_asked(self, _payload: Any) -> int:
        return self.asked


class LedgerStub(Server):
    """Keeps appended receipts in memory, in the shape the real ledger returns."""

    def init(self, args: dict[str, Any]) -> None:
        self.receipts: list[dict[str, Any]] = list(args.get("preload", []))

    def call_append(self, draft: dict[str, Any]) -> dict[str, Any]:
        receipt = {**draft, "seq": len(self.receipts) + 1, "time": datetime.now(timezone.utc).isoformat()}
        self.receipts.append(receipt)
        return receipt

    def call_receipts(self, query: dict[str, Any]) -> list[dict[str, Any]]:
        chain = [r for r in self.receipts if r.get("chain") == query["chain"] and r["seq"] > query["after"]]
        return chain[: query["limit"]]

    def call_price(self, query: dict[str, Any]) -> dict[str, Any]:
        quoted = [r["payload"]["value"] for r in self.receipts if r.get("kind") == "pricing.quoted"
                  and r.get("chain") == query["chain"] and r["payload"]["customer_id"] == query["customer_id"]]
        return {"value": quoted[-1] if quoted else None}

    def call_appended(self, _payload: Any) -> list[dict[str, Any]]:
        return self.receipts


class AuthoritySubscriber(Server):
    """Subscribes to ProdMode's authority as an operation actor does, and keeps what it is pushed."""

    def init(self, args: dict[str, Any]) -> Any:
        self.seen: list[Any] = []
        self.call_actor("ProdMode", "authority", {"name": self.name}, then=self._subscribed)
        return DEFERRED

    def _subscribed(self, authority: Any, error: BaseException | None) -> None:
        if error is not None:
            self.fail_start(f"cannot subscribe: {error}")
            return
        self.seen.append(authority)
        self.confirm_started()

    def call_authority_changed(self, authority: Any) -> None:
        self.seen.append(authority)

    def call_modes(self, _payload: Any) -> list[str]:
        return [authority.mode for authority in self.seen]


DIE_ON_OUTCOME = "die-on-outcome"


class LedgerDyingOnOutcome(ReceiptLedger):
    """The real ReceiptLedger, SIGKILLed (as the chaos bench's schedule does) when an operation's
    outcome receipt reaches it while the file ``DIE_ON_OUTCOME`` exists in the data directory: it
    dies holding the append, before storing it. The file is removed first, so it dies once and
    its next incarnation is the plain ledger. Multiprocess bases only (it kills its own process)."""

    def init(self, args: dict[str, Any]) -> None:
        self.die_on_outcome = Path(args["context"]["data_dir"]) / DIE_ON_OUTCOME
        super().init(args)

    def call_append(self, payload: Any) -> Any:
        kind = payload.get("kind", "") if isinstance(payload, dict) else ""
        if kind.endswith((".completed", ".failed")) and self.die_on_outcome.exists():
            self.die_on_outcome.unlink()
            os.kill(os.getpid(), signal.SIGKILL)
        return super().call_append(payload)
