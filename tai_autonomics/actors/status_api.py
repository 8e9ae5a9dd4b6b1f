"""ProdMode's, CertManager's and InsuranceClient's calls as callers outside the tree make them.

As :mod:`tai_autonomics.actors.ledger_api` does for the ledger, each function here is one call of
one actor: the gateway's routes, the shell and the daemon's drain use these instead of naming the
actor, a message-type string and a payload dict at each call site, so a misspelt message type is
an import error rather than a call that fails at run time. The wire format is unchanged: the
actors receive the same messages. The caller passes its transport (the gateway's bridge or the
shell, which both ``await call(actor, msg_type, payload, timeout_s=...)``; a runtime
:class:`~tai_autonomics.runtime.client.Client` for the synchronous drain), so errors are the
transport's, as before.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final, Protocol

from tai_autonomics.actors.names import CERT_MANAGER, INSURANCE_CLIENT, PROD_MODE

if TYPE_CHECKING:
    from tai_autonomics.runtime.client import Client

#: ProdMode's message types that callers outside the tree send (the gateway names them in errors)
MODE: Final = "mode"
STATUS: Final = "status"
RECORD: Final = "record"
RESUME: Final = "resume"
DRAIN: Final = "drain"


class AsyncCaller(Protocol):
    """The gateway's bridge, or the shell: an awaited call of one actor."""

    async def call(self, actor: str, msg_type: str, payload: Any = None,
                   timeout_s: float | None = None) -> Any: ...


async def amode(caller: AsyncCaller) -> dict[str, Any]:
    """ProdMode's current mode (``mode``, ``reason``, ``manual_resume``, ...)."""
    return await caller.call(PROD_MODE, MODE)


async def astatus(caller: AsyncCaller) -> dict[str, Any]:
    """ProdMode's status (its ``policy_id`` names the contractual chain)."""
    return await caller.call(PROD_MODE, STATUS)


async def arecord(caller: AsyncCaller, kind: str, payload: dict[str, Any]) -> dict[str, Any]:
    """A receipt of ``kind`` recorded by ProdMode, which decides its chain and authority."""
    return await caller.call(PROD_MODE, RECORD, {"kind": kind, "payload": payload})


async def aresume(caller: AsyncCaller, timeout_s: float) -> dict[str, Any]:
    """Leave ``read_only``: ProdMode asks the insurer first, so the call waits up to ``timeout_s``."""
    return await caller.call(PROD_MODE, RESUME, timeout_s=timeout_s)


def drain(client: Client, timeout_s: float) -> None:
    """Put ProdMode in ``draining`` (SIGTERM): new writes are refused."""
    client.call(PROD_MODE, DRAIN, None, timeout_s)


async def ainsurance(caller: AsyncCaller) -> dict[str, Any]:
    """The certificate's status (CertManager) and the insurer's (InsuranceClient), as the gateway
    and the shell both show them."""
    return {"certificate": await caller.call(CERT_MANAGER, STATUS),
            "insurer": await caller.call(INSURANCE_CLIENT, STATUS)}
