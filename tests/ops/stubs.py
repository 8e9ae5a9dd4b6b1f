"""A ProdMode that answers ``guard`` as each test configures it (the real one is tested in tests/actors)."""

from __future__ import annotations

from typing import Any

from tai_autonomics.errors import TaiError
from tai_autonomics.runtime import Server

POLICY = "dev-policy-0001"


class ProdModeStub(Server):
    def init(self, args: dict[str, Any]) -> None:
        self.mode = args.get("mode", "prod")
        self.refusal: dict[str, Any] | None = args.get("refusal")
        self.guards: list[dict[str, Any]] = []
        # the SKU's coverage limit the guard answers; the ledger reserves against it
        self.limit: dict[str, Any] = args.get("limit", {"limit_count": 1_000_000, "limit_cost": "1000000000"})

    def call_status(self, _payload: Any) -> dict[str, Any]:
        return {"mode": self.mode, "policy_id": POLICY if self.mode == "prod" else None}

    def call_guard(self, request: dict[str, Any]) -> dict[str, Any]:
        self.guards.append(request)
        if self.mode == "eval":
            raise TaiError("write refused in eval mode: configured eval mode", code="mode_refused",
                           detail={"mode": "eval", "reason": "configured eval mode", "operation": "write"})
        if self.refusal is not None:
            raise TaiError(self.refusal["message"], code=self.refusal["code"], detail=self.refusal.get("detail"))
        return {"mode": "prod", "chain": POLICY, "authority": "contractual", "limit": self.limit}

    def call_refuse(self, refusal: dict[str, Any] | None) -> None:
        self.refusal = refusal

    def call_guards(self, _payload: Any) -> list[dict[str, Any]]:
        return self.guards
