"""The gateway's access policy, shared by the HTTP routes and the remote shell: the roles each
kind of endpoint admits, the allow-list check for generic actor messages, and how long an
operation call may take.

A leaf module (it imports no route and no shell), so that :mod:`.routes`, :mod:`.shell` and
:mod:`.shell_commands` apply one policy without importing one another.
"""

from __future__ import annotations

from tai_autonomics.actors.operation_api import CALL_TIMEOUT_S
from tai_autonomics.gateway.config import ADMIN_TYPES, GatewayConfig
from tai_autonomics.gateway.errors import ApiError

AUDITOR, ADMIN = frozenset({"auditor"}), frozenset({"admin"})
SERVICE, SERVICE_OR_AUDITOR = frozenset({"service"}), frozenset({"service", "auditor"})
OPERATION_TIMEOUT_S = CALL_TIMEOUT_S


def allowed_message(config: GatewayConfig, actor: str, msg_type: str) -> None:
    """403 unless the allow-list lets ``msg_type`` reach ``actor`` (HTTP actor routes and the shell)."""
    if msg_type not in ADMIN_TYPES and msg_type not in config.allowed.get(actor, ()):
        raise ApiError(403, "message_not_allowed", f"{msg_type!r} may not be sent to {actor!r} through the gateway",
                       {"actor": actor, "message_type": msg_type[:128]})
