"""What callers of the operation actors (Acquisition, Publisher) need, apart from the actors.

The timeout every ``deploy``/``publish`` call must give, and the errors those actors answer with,
in a module of their own: the gateway and the CLI use them without importing the actors'
implementation (:mod:`tai_autonomics.actors._operation`, private to ``actors/``).
"""

from __future__ import annotations

from tai_autonomics.errors import TaiError

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
