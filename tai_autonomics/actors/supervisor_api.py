"""A supervisor's calls as the gateway and the shell make them (``which_children``, ``restart_child``).

The supervision view and the shell's ``tree``, ``which_children`` and ``restart`` commands each
asked a supervisor with its message type spelt at the call site; these are those calls once. The
answers are the supervisor's own (:meth:`~tai_autonomics.runtime.supervisor.Supervisor.handle_call`),
unchanged: a child is a dict (``name``, ``type``, ``state``, ``pid``, ``restarts``, ``last_crash``)
that the gateway extends with its own children.
"""

from __future__ import annotations

from typing import Any

from tai_autonomics.actors.status_api import AsyncCaller


async def awhich_children(caller: AsyncCaller, supervisor: str) -> list[dict[str, Any]]:
    """The children of ``supervisor``, in its start order."""
    return list(await caller.call(supervisor, "which_children"))


async def arestart_child(caller: AsyncCaller, supervisor: str, child: str) -> dict[str, Any]:
    """Ask ``supervisor`` to stop and start its child ``child``: ``{"restarting": child}``."""
    return await caller.call(supervisor, "restart_child", child)
