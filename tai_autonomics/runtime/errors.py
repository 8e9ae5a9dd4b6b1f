"""Errors a caller of the runtime can get back: each is a TaiError with a stable code.

The runtime knows no product codes: an actor's refusal crosses as its code and message and is
rebuilt by :func:`error_from` as whatever class registered that code (see
:mod:`tai_autonomics.errors`), the product's own classes included.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tai_autonomics.errors import TaiError, rebuild

if TYPE_CHECKING:
    from tai_autonomics.runtime.messages import ErrorInfo


class CallError(TaiError):
    """A call did not produce a result."""

    code = "call_failed"


class CallTimeout(CallError):
    """No reply within the call timeout (the actor may be busy, hung or killed mid-call)."""

    code = "call_timeout"


class ActorCrashed(CallError):
    """The handler raised: the actor crashed and its supervisor is restarting it.

    ``detail`` carries the exception type and message, never a traceback.
    """

    code = "actor_crashed"


class ActorRestarting(CallError):
    """The actor had already crashed and was on its way out when the call arrived."""

    code = "actor_restarting"


class NoSuchActor(CallError):
    """No actor is registered under the name (and none appeared within the call timeout)."""

    code = "no_such_actor"


class UnknownMessage(CallError):
    """The actor has no handler for this message type; it is not crashed by the attempt."""

    code = "unknown_message"


class StartError(TaiError):
    """The tree (or one child in it) failed to start; the message names the child and why."""

    code = "start_failed"


class SystemError_(TaiError):
    """The actor system could not be started or reached."""

    code = "actor_system_error"


class SupervisorBusy(TaiError):
    """A supervisor asked to change its children while it is starting, restarting or stopping them."""

    code = "supervisor_busy"


def error_from(info: ErrorInfo) -> TaiError:
    """The exception a caller gets for an error reply: the class registered for the callee's
    code (the callee's code kept, whatever the class)."""
    detail = {**info.detail, "exception": info.exception} if info.exception else dict(info.detail)
    return rebuild(info.code, info.message, detail)
