"""Actors for the runtime tests (importable: multiprocess bases re-create them by module path)."""

from __future__ import annotations

import time
from typing import Any

from tai_autonomics.errors import TaiError
from tai_autonomics.runtime import Server


class Echo(Server):
    """Answers calls; crashes on request; counts what it saw in this incarnation."""

    def init(self, args: dict[str, Any]) -> None:
        self.seen = 0
        self.args = args
        if args.get("fail_init"):
            raise RuntimeError("init refused on purpose")

    def call_echo(self, payload: Any) -> Any:
        self.seen += 1
        return payload

    def call_seen(self, payload: Any) -> int:
        return self.seen

    def call_crash(self, payload: Any) -> None:
        raise ValueError(f"boom: {payload}")

    def cast_crash(self, payload: Any) -> None:
        raise ValueError("cast boom")

    def call_refuse(self, payload: Any) -> None:
        raise TaiError("refused on purpose", code="refused", detail={"why": payload})

    def call_stop(self, payload: Any) -> str:
        self.stop("normal", reply="bye")

    def call_sleep(self, seconds: float) -> float:
        time.sleep(seconds)
        return seconds

    def inspect_state(self) -> dict[str, Any]:
        return {"seen": self.seen}


class Stubborn(Echo):
    """Takes far longer to terminate than its shutdown allows (a hung cleanup)."""

    def terminate(self, reason: str) -> None:
        if reason == "shutdown":
            time.sleep(30)
