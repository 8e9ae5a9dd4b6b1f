"""Serving the gateway: uvicorn in a thread of the daemon's process, with a start/stop handle.

The daemon's main thread waits on the supervision tree, so the HTTP server gets its own thread
and event loop (uvicorn installs no signal handlers off the main thread: SIGTERM stays the
daemon's). The socket is bound here, before the thread starts, so a port already in use is a
clear start error, and loopback is the default: another address only when configured.
"""

from __future__ import annotations

import logging
import socket
import threading

import uvicorn

from tai_autonomics import logs
from tai_autonomics.errors import TaiError
from tai_autonomics.gateway.app import Gateway, create_app
from tai_autonomics.gateway.bridge import ActorBridge
from tai_autonomics.gateway.config import GatewayConfig
from tai_autonomics.runtime import Node

log = logging.getLogger("tai_autonomics.gateway")

START_TIMEOUT_S = 30.0
GRACEFUL_SHUTDOWN_S = 2.0


class GatewayStartError(TaiError):
    code = "gateway_start_failed"


class _Uvicorn(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, on_started: threading.Event) -> None:
        super().__init__(config)
        self._on_started = on_started

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self._on_started.set()


class GatewayServer:
    """The gateway of one node: ``start()`` listens and serves; ``stop()`` ends it, no thread left."""

    def __init__(self, node: Node, config: GatewayConfig) -> None:
        self.config = config
        self.gateway = Gateway(config, ActorBridge(node, workers=config.workers, max_in_flight=config.max_in_flight,
                                                   call_timeout_s=config.call_timeout_s))
        self._server: _Uvicorn | None = None
        self._thread: threading.Thread | None = None
        self.port = config.port

    @property
    def url(self) -> str:
        host = f"[{self.config.host}]" if ":" in self.config.host else self.config.host
        return f"http://{host}:{self.port}"

    def start(self) -> GatewayServer:
        sock = _listen(self.config.host, self.config.port)
        self.port = sock.getsockname()[1]
        started = threading.Event()
        server = _Uvicorn(uvicorn.Config(create_app(self.gateway), log_config=None, access_log=False,
                                         lifespan="off", server_header=False,
                                         timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S), started)

        def serve() -> None:
            try:
                server.run(sockets=[sock])
            finally:
                sock.close()
                started.set()

        self._server = server
        self._thread = threading.Thread(target=serve, name=f"gateway-{self.port}", daemon=True)
        self._thread.start()
        started.wait(START_TIMEOUT_S)
        if not server.started:
            self.stop()
            raise GatewayStartError(f"the gateway did not start on {self.url}")
        self.gateway.ready.set()
        logs.event(log, "gateway listening", event="gateway_listening", url=self.url, port=self.port)
        return self

    def stop(self) -> None:
        """Not ready first (so a load balancer stops sending), then stop serving, then the bridge."""
        self.gateway.ready.clear()
        if self._thread is not None:
            self._server.should_exit = True
            self._thread.join(START_TIMEOUT_S)
            if self._thread.is_alive():
                raise GatewayStartError(f"the gateway thread on {self.url} did not stop")
            self._thread = self._server = None
            logs.event(log, "gateway stopped", event="gateway_stopped", url=self.url)
        self.gateway.bridge.close()

    def __enter__(self) -> GatewayServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP (not 0), or asyncio does not set TCP_NODELAY and each response waits for a delayed ACK
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(1024)
    except OSError as exc:
        sock.close()
        raise GatewayStartError(f"the gateway cannot listen on {host}:{port}: {exc.strerror}",
                                detail={"host": host, "port": port}) from None
    return sock
