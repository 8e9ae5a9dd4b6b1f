"""A typed Python client of the gateway for internal services (docs/gateway.md, "The Python client").

``Client`` (blocking) and ``AsyncClient`` (asyncio), both on httpx, with one method per operation of
``/openapi.json`` answering the ``TypedDict`` models of :mod:`.models`; an automatic
``Idempotency-Key`` on deploys; retries of 429 and 503 honouring ``Retry-After``; a local token or
a Google ID token (:class:`GoogleIdToken`) for Cloud Run::

    from tai_autonomics.client import Client

    with Client("http://127.0.0.1:8080", token=os.environ["TAI_TOKEN_SERVICE"]) as tai:
        result = tai.create_deployment({"sku_id": "sku-001", ...})
"""

from tai_autonomics.client._client import AsyncClient, Client, ClientError, GatewayUnreachable, RetryPolicy
from tai_autonomics.client.auth import BearerToken, GoogleIdToken
from tai_autonomics.client.operations import OPERATIONS, Call

__all__ = ["OPERATIONS", "AsyncClient", "BearerToken", "Call", "Client", "ClientError", "GatewayUnreachable",
           "GoogleIdToken", "RetryPolicy"]
