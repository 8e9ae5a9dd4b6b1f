"""A ProdMode whose pushed authority refuses as each test configures it (the real one is tested in
tests/actors): operation actors guard their writes with the authority ProdMode pushes, so the
stub answers ``authority`` (the subscription) and pushes again when a test changes the refusal."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from tai_autonomics.errors import TaiError
from tai_autonomics.operations.authority import Authority
from tai_autonomics.runtime import NOREPLY, Server
from tai_autonomics.trust import sample_policy

POLICY = "dev-policy-0001"
VALID_S = 86_400.0


@dataclass(frozen=True)
class StubAuthority(Authority):
    """The real authority on the development policy, or a configured refusal from its guard."""

    refusal: dict[str, Any] | None = None

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return stub_authority, (self.mode, self.refusal)

    def guard(self, sku: str, timeout_s: float, now: float) -> dict[str, Any]:
        if self.refusal is not None and self.mode == "prod":
            raise TaiError(self.refusal["message"], code=self.refusal["code"], detail=self.refusal.get("detail"))
        return super().guard(sku, timeout_s, now)


def stub_authority(mode: str, refusal: dict[str, Any] | None) -> StubAuthority:
    if mode == "eval":
        return StubAuthority("eval", "configured eval mode", None, 0.0, 0.0, refusal)
    return StubAuthority("prod", "stub", sample_policy(), time.time() + VALID_S, 0.0, refusal)


class ProdModeStub(Server):
    def init(self, args: dict[str, Any]) -> None:
        self.mode = args.get("mode", "prod")
        self.refusal: dict[str, Any] | None = args.get("refusal")
        self.subscribers: list[str] = []
        self.calls: list[str] = []  # every call ProdMode got: what a deploy costs it

    def call_authority(self, request: dict[str, Any]) -> StubAuthority:
        self.calls.append("authority")
        self.subscribers.append(request["name"])
        return stub_authority(self.mode, self.refusal)

    def call_refuse(self, refusal: dict[str, Any] | None) -> Any:
        """Change the refusal and push it, as ProdMode pushes every change; answered once every
        subscriber has it (so the test's next request meets it)."""
        self.refusal = refusal
        caller, waiting = self.caller, set(self.subscribers)
        if not waiting:
            return None

        def delivered(name: str, error: BaseException | None) -> None:
            waiting.discard(name)
            if not waiting:
                self.reply(caller, None, error=error)

        for name in self.subscribers:
            self.call_actor(name, "authority_changed", stub_authority(self.mode, refusal),
                            then=lambda _reply, error, n=name: delivered(n, error))
        return NOREPLY

    def call_calls(self, _payload: Any) -> list[str]:
        return self.calls
