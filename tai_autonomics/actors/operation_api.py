"""What callers of the operation actors (Acquisition, Publisher) need, apart from the actors.

The timeout every ``deploy``/``publish`` call must give, the message types and payloads of the
calls the gateway and the daemon make (Pricing's ``quote`` too, which the gateway sends through the
same route helper), and the errors those actors answer with, in a module of their own: the gateway
and the CLI use them without importing the actors' implementation
(:mod:`tai_autonomics.actors._operation`, private to ``actors/``) or spelling their protocol at
each call site. The gateway's route helper keeps the actor and message type apart (it counts
operations by message type), so this module gives it those and the payloads rather than one
function per call.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final, TypedDict

from tai_autonomics.errors import TaiError

if TYPE_CHECKING:
    from tai_autonomics.runtime.client import Client

DEPLOY: Final = "deploy"
PUBLISH: Final = "publish"
GET: Final = "get"
"""An operation by its id (Acquisition) or work id (Publisher)."""
QUOTE: Final = "quote"
"""Pricing's quote (its payload is the request body as the schema admitted it)."""
DRAIN: Final = "drain"


class DeployRequest(TypedDict):
    """The payload of Acquisition's ``deploy``: the deployment spec and the caller's idempotency key."""

    spec: Any
    idempotency_key: str | None


def deploy_request(spec: Any, idempotency_key: str | None) -> DeployRequest:
    """``deploy`` of ``spec``; a repeat of ``idempotency_key`` answers the first deployment."""
    return {"spec": spec, "idempotency_key": idempotency_key}


def deployment_query(operation_id: str) -> dict[str, str]:
    """The payload of Acquisition's ``get``: one deployment by its operation id."""
    return {"operation_id": operation_id}


def publication_query(work_id: str) -> dict[str, str]:
    """The payload of Publisher's ``get``: one publication by its work id."""
    return {"work_id": work_id}


def drain(client: Client, actor: str, budget_s: float, timeout_s: float) -> int:
    """Ask the operation actor ``actor`` to drain within ``budget_s``: how many operations it
    recorded as interrupted."""
    return int(client.call(actor, DRAIN, {"budget_s": budget_s}, timeout_s)["interrupted"])

CALL_TIMEOUT_S = 40.0
"""The timeout callers must give ``deploy``/``publish``: ``deadline_s`` plus the ledger's time."""


class OperationConflict(TaiError):
    """A key already names another request (HTTP 409/422); each operation actor names its own
    subclass (:attr:`~tai_autonomics.actors._operation.OperationActor.conflict`), since the outside
    party's contract names the code."""


class IdempotencyKeyReused(OperationConflict):
    """A deploy's idempotency key already names another deployment request."""

    code = "idempotency_key_reused"


class WorkConflict(OperationConflict):
    """A publish's work id already names another publication request."""

    code = "work_conflict"


class NotFound(TaiError):
    """No operation has this id or key (on any instance)."""

    code = "not_found"


class Draining(TaiError):
    """The instance is stopping (SIGTERM): new operations are refused (HTTP 503)."""

    code = "draining"


class OperationInterrupted(TaiError):
    """The instance stopped while the operation waited on the outside party: recorded as
    ``*.interrupted``, open, and finished by a repeat of its key on any instance (HTTP 503)."""

    code = "operation_interrupted"
