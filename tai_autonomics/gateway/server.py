"""Serving the gateway: uvicorn in a thread of the daemon's process, with a start/stop handle.

The daemon's main thread waits on the supervision tree, so the HTTP server gets its own thread
and event loop (:mod:`tai_autonomics.httpserve`; SIGTERM stays the daemon's). The socket is
bound before the thread starts, so a port in use is a clear start error; loopback is the
default, another address only when configured.
"""

from __future__ import annotations

import logging

from tai_autonomics import httpserve, logs
from tai_autonomics.errors import TaiError
from tai_autonomics.gateway import shell
from tai_autonomics.gateway.app import create_app
from tai_autonomics.gateway.bridge import ActorBridge
from tai_autonomics.gateway.config import GatewayConfig
from tai_autonomics.gateway.context import Gateway
from tai_autonomics.runtime import Node

log = logging.getLogger("tai_autonomics.gateway")

GRACEFUL_SHUTDOWN_S = 2.0  # requests in flight get this long to finish when the daemon stops
BACKLOG = 1024


class GatewayStartError(TaiError):
    """The gateway cannot listen where it is configured to (the address is taken or not ours)."""

    code = "gateway_start_failed"


class GatewayServer:
    """The gateway of one node: ``start()`` listens and serves; ``stop()`` ends it, no thread left."""

    def __init__(self, node: Node, config: GatewayConfig) -> None:
        self.config = config
        self.gateway = Gateway(config, ActorBridge(node, workers=config.workers, max_in_flight=config.max_in_flight,
                                                   call_timeout_s=config.call_timeout_s))
        self._serving: httpserve.ServerThread | None = None
        self.port = config.port

    @property
    def url(self) -> str:
        host = f"[{self.config.host}]" if ":" in self.config.host else self.config.host
        return f"http://{host}:{self.port}"

    def start(self) -> GatewayServer:
        host, port = self.config.host, self.config.port
        try:
            sock = httpserve.listen(host, port, BACKLOG)
        except OSError as exc:
            raise GatewayStartError(f"the gateway cannot listen on {host}:{port}: {exc.strerror}",
                                    detail={"host": host, "port": port}) from None
        self.port = sock.getsockname()[1]
        self._serving = httpserve.ServerThread(create_app(self.gateway), sock, f"gateway-{self.port}",
                                               graceful_s=GRACEFUL_SHUTDOWN_S, server_header=False,
                                               max_connections=self.config.max_connections,
                                               ws="websockets-sansio", ws_max_size=shell.MAX_FRAME_BYTES)
        if not self._serving.start():
            self.stop()
            raise GatewayStartError(f"the gateway did not start on {self.url}")
        self.gateway.ready.set()
        logs.event(log, "gateway listening", event="gateway_listening", url=self.url, port=self.port)
        return self

    def drain(self) -> None:
        """SIGTERM (docs/specification.md §11): refuse new writes ``503 draining`` and answer ``/readyz`` 503, while
        reads and the requests in flight go on."""
        self.gateway.draining.set()
        logs.event(log, "gateway draining", event="gateway_draining", in_flight=self.gateway.bridge.in_flight)

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for the actor calls in flight to be answered; whether they were."""
        return self.gateway.bridge.wait_idle(timeout_s)

    def stop(self) -> None:
        """Not ready first (so a load balancer stops sending), then stop serving, then the bridge."""
        self.gateway.ready.clear()
        if self._serving is not None:
            if not self._serving.stop():
                raise GatewayStartError(f"the gateway thread on {self.url} did not stop")
            self._serving = None
            logs.event(log, "gateway stopped", event="gateway_stopped", url=self.url)
        self.gateway.bridge.close()

    def __enter__(self) -> GatewayServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
