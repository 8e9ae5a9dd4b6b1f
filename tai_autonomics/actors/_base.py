"""What every domain actor shares until its own behaviour is built."""

from __future__ import annotations

from typing import Any

from tai_autonomics.runtime import Server


class DomainActor(Server):
    role = ""

    def init(self, args: dict[str, Any]) -> None:
        self.args = args

    def call_status(self, payload: Any) -> dict[str, Any]:
        return {"actor": self.name, "role": self.role, "ready": True}
