"""The actor gateway (docs/specification.md §7): HTTP/JSON in front of the supervision tree.

``GatewayServer(node, gateway_config(...)).start()`` serves :func:`create_app` with uvicorn in a
thread of the daemon; routes are declared in :mod:`.routes` (how to add one is there) and
described in the packaged ``openapi.json``.
"""

from tai_autonomics.gateway.app import create_app
from tai_autonomics.gateway.auth import Authenticator, Identity, authorize, dev_tokens
from tai_autonomics.gateway.bridge import ActorBridge
from tai_autonomics.gateway.config import DEFAULT_ALLOWED, ROLES, TOKEN_ENV, GatewayConfig, gateway_config, resolve_port
from tai_autonomics.gateway.context import Gateway, openapi_document
from tai_autonomics.gateway.errors import STATUS_BY_CLASS, ApiError
from tai_autonomics.gateway.routes import ROUTES, Endpoint, Req
from tai_autonomics.gateway.server import GatewayServer, GatewayStartError

__all__ = [
    "DEFAULT_ALLOWED", "ROLES", "ROUTES", "STATUS_BY_CLASS", "TOKEN_ENV", "ActorBridge", "ApiError", "Authenticator",
    "Endpoint", "Gateway", "GatewayConfig", "GatewayServer", "GatewayStartError", "Identity", "Req", "authorize",
    "create_app", "dev_tokens", "gateway_config", "openapi_document", "resolve_port",
]
