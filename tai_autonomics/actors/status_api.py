"""ProdMode's, CertManager's and InsuranceClient's calls as callers outside the tree make them.

As :mod:`tai_autonomics.actors.ledger_api` does for the ledger, each function here is one call of
one actor: the gateway's routes, the shell and the daemon's drain use these instead of naming the
actor, a message-type string and a payload dict at each call site, so a misspelt message type is
an import error rather than a call that fails at run time. The wire format is unchanged: the
actors receive the same messages. The caller passes its transport (the gateway's bridge or the
shell, which both ``await call(actor, msg_type, payload, timeout_s=...)``; a runtime
:class:`~tai_autonomics.runtime.client.Client` for the synchronous drain), so errors are the
transport's, as before. The actors' own calls of one another (``then(value, error)``, as
:meth:`~tai_autonomics.runtime.Server.call_actor` takes it) are here too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final, Protocol

from tai_autonomics.actors.ledger_api import Then
from tai_autonomics.actors.names import CERT_MANAGER, INSURANCE_CLIENT, PROD_MODE

if TYPE_CHECKING:
    from tai_autonomics.runtime import Server
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


# -- the actors' calls of one another ------------------------------------------------------------

def status(caller: Server, actor: str, then: Then) -> None:
    """``status`` of ProdMode, CertManager or InsuranceClient (each answers one); ``then(status, error)``."""
    caller.call_actor(actor, STATUS, then=then)


def guard(caller: Server, operation: str, then: Then) -> None:
    """ProdMode's authority for ``operation`` now, or its refusal; ``then(authority, error)``."""
    caller.call_actor(PROD_MODE, "guard", {"operation": operation}, then=then)


def subscribe(caller: Server, name: str, then: Then) -> None:
    """Subscribe the actor registered as ``name`` to CertManager's certificate notices."""
    caller.call_actor(CERT_MANAGER, "subscribe", {"name": name}, then=then)


def verify_policy(caller: Server, policy_id: str, then: Then, timeout: float) -> None:
    """The insurer's word on ``policy_id`` (InsuranceClient retries on its timers, so ``timeout``)."""
    caller.call_actor(INSURANCE_CLIENT, "verify_policy", {"policy_id": policy_id}, then=then, timeout=timeout)


def certificate_status(caller: Server, serial: str, then: Then, timeout: float) -> None:
    """The insurer's word on the certificate of ``serial`` (revoked or not)."""
    caller.call_actor(INSURANCE_CLIENT, "certificate_status", {"serial": serial}, then=then, timeout=timeout)


def renew(caller: Server, csr_pem: str, then: Then, timeout: float) -> None:
    """A new certificate from the insurer for the PEM request ``csr_pem``."""
    caller.call_actor(INSURANCE_CLIENT, "renew", {"csr_pem": csr_pem}, then=then, timeout=timeout)


def authority(caller: Server, name: str, then: Then) -> None:
    """Subscribe the operation actor registered as ``name`` to ProdMode's authority (pushed on every
    change); ``then(authority, error)`` gets the current one."""
    caller.call_actor(PROD_MODE, "authority", {"name": name}, then=then)


def certificate_expired(caller: Server, then: Then) -> None:
    """Tell ProdMode that a guard found the certificate expired (it moves to ``read_only``)."""
    caller.call_actor(PROD_MODE, "certificate_expired", None, then=then)


def ledger_unavailable(caller: Server, reason: str, then: Then) -> None:
    """Tell ProdMode that the ledger's store refuses writes (it moves ``prod`` to ``read_only``)."""
    caller.call_actor(PROD_MODE, "ledger_unavailable", {"reason": reason}, then=then)
