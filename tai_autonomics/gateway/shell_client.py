"""A client of the remote shell's WebSocket (:mod:`.shell`): connect, run a line, read its result.

Blocking and single-threaded on purpose: an operator's shell runs one command at a time, and
``websockets``' synchronous client needs no event loop in the CLI. Every failure to connect or
to talk is a :class:`ShellClientError` with a sentence an operator can act on.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI
from websockets.sync.client import ClientConnection, connect

from tai_autonomics.errors import TaiError
from tai_autonomics.gateway.shell import MAX_FRAME_BYTES, PATH
from tai_autonomics.gateway.shell_commands import VERIFY_TIMEOUT_S, ShellInputError

CONNECT_TIMEOUT_S = 10.0
POLL_S = 0.05  # how often a refreshing command's stop condition (a key pressed) is looked at
ANSWER_TIMEOUT_S = VERIFY_TIMEOUT_S + 60  # the slowest command, and then some


_STOPPED: Any = object()
"""What :meth:`ShellClient._receive` returns once it has asked the daemon to stop a refresh."""


class ShellClientError(TaiError):
    """The remote shell could not be opened or stopped answering."""

    code = "shell_unavailable"


class ShellUrlInvalid(ShellClientError):
    """The daemon URL given is not http(s) or ws(s) with a host."""

    code = "invalid_url"


class ShellRefused(ShellClientError):
    """The daemon refused the shell's handshake (a bad token, a role without the shell)."""

    code = "shell_refused"


@dataclass
class Result:
    """One command's answer: ``ok`` with ``value``/``text``/``receipt``, or ``error`` (code, message, detail)."""

    ok: bool
    command: str | None = None
    text: str = ""
    value: Any = None
    receipt: str | None = None
    error: dict[str, Any] = field(default_factory=dict)


def shell_url(url: str) -> str:
    """``ws(s)://host:port/v1/shell`` for the daemon at ``url`` (http, https, ws or wss; any path ignored)."""
    parts = urlsplit(url if "://" in url else f"http://{url}")
    scheme = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}.get(parts.scheme)
    if scheme is None or not parts.netloc:
        raise ShellUrlInvalid(f"not a daemon URL: {url!r} (expected e.g. http://127.0.0.1:8080)")
    return urlunsplit((scheme, parts.netloc, PATH, "", ""))


class ShellClient:
    """One session: ``welcome`` holds the daemon's first frame (commands, actors, subject)."""

    def __init__(self, url: str, token: str, *, timeout_s: float = ANSWER_TIMEOUT_S) -> None:
        self.url = shell_url(url)
        self._timeout_s = timeout_s
        self._ids = itertools.count(1)
        self._open = ExitStack()  # websockets wants its connection entered as a context
        try:
            self._ws: ClientConnection = self._open.enter_context(connect(
                self.url, additional_headers={"Authorization": f"Bearer {token}"}, open_timeout=CONNECT_TIMEOUT_S,
                max_size=None))
        except InvalidStatus as refused:
            raise ShellRefused(_refusal(refused)) from None
        except (OSError, InvalidHandshake, InvalidURI, TimeoutError) as exc:
            raise ShellClientError(f"cannot open the shell at {self.url}: {exc}") from None
        self.welcome = self._receive()
        if self.welcome.get("type") != "welcome":
            self.close()
            raise ShellClientError(f"{self.url} did not open a shell session")

    @property
    def commands(self) -> list[dict[str, str]]:
        return list(self.welcome.get("commands", []))

    @property
    def actors(self) -> list[str]:
        return list(self.welcome.get("actors", []))

    def run(self, line: str, *, on_update: Callable[[Result], None] | None = None,
            stop_requested: Callable[[], bool] | None = None) -> Result:
        """Send ``line``; its result (the daemon answers in order, one result per command).

        A refreshing command (``top``) sends updates first: each goes to ``on_update``, and
        ``stop_requested`` is asked every :data:`POLL_S` while waiting; once it says True (a key
        was pressed) the daemon is told to stop, and answers with the result.
        """
        frame_id = next(self._ids)
        text = json.dumps({"type": "command", "id": frame_id, "line": line})
        if len(text.encode()) > MAX_FRAME_BYTES:
            return Result(False, error=ShellInputError("the line is too long").to_dict())
        self._send(text)
        while True:
            frame = self._receive(frame_id, stop_requested)
            if frame is _STOPPED:
                stop_requested = None  # asked once: the result comes next
                continue
            if frame.get("type") == "update" and frame.get("id") == frame_id:
                if on_update is not None:
                    on_update(Result(True, frame.get("command"), frame.get("text", ""), frame.get("value")))
                continue
            if frame.get("type") != "result" or frame.get("id") != frame_id:
                raise ShellClientError("the daemon answered out of turn; the session is closed")
            if frame.get("ok"):
                return Result(True, frame.get("command"), frame.get("text", ""), frame.get("value"),
                              frame.get("receipt"))
            return Result(False, receipt=frame.get("receipt"), error=frame.get("error") or {})

    def _send(self, text: str) -> None:
        try:
            self._ws.send(text)
        except ConnectionClosed:
            raise ShellClientError("the daemon closed the shell session") from None

    def _receive(self, frame_id: int = 0, stop_requested: Callable[[], bool] | None = None) -> Any:
        """The next frame, or :data:`_STOPPED` once ``stop_requested`` said True and the stop went out."""
        deadline = time.monotonic() + self._timeout_s
        while True:
            wait = deadline - time.monotonic() if stop_requested is None else min(POLL_S, deadline - time.monotonic())
            try:
                raw = self._ws.recv(timeout=max(0.0, wait))
                break
            except ConnectionClosed:
                raise ShellClientError("the daemon closed the shell session") from None
            except TimeoutError:
                if time.monotonic() >= deadline:
                    raise ShellClientError(f"no answer from the daemon within {self._timeout_s:g} s") from None
                if stop_requested is not None and stop_requested():
                    self._send(json.dumps({"type": "stop", "id": frame_id}))
                    return _STOPPED
        try:
            frame = json.loads(raw)
        except ValueError:
            frame = None
        if not isinstance(frame, dict):
            raise ShellClientError("the daemon sent a frame that is not a JSON object")
        return frame

    def close(self) -> None:
        self._open.close()

    def __enter__(self) -> ShellClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _refusal(refused: InvalidStatus) -> str:
    """The daemon's own sentence for a refused upgrade (our JSON error body), else the status."""
    response = refused.response
    try:
        message = json.loads(response.body)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = response.reason_phrase
    return f"the daemon refused the shell (HTTP {response.status_code}): {message}"
