"""The remote shell's WebSocket, ``GET /v1/shell`` (docs/specification.md §7): one operator session per connection.

It is a WebSocket because Cloud Run exposes one port and one protocol family, and a shell needs
a conversation, not a request. Frames are JSON text:

* the daemon opens with ``{"type": "welcome", "session", "subject", "commands": [{name, usage,
  help}], "actors": [name, ...]}`` (all a client needs for help and completion);
* the client sends ``{"type": "command", "id": N, "line": "state ProdMode"}``;
* the daemon answers each, in order, with ``{"type": "result", "id": N, "ok": true, "command",
  "receipt", "value", "text"}`` (``receipt``: the id of its ``shell.command`` receipt) or
  ``{"type": "result", "id": N, "ok": false, "receipt", "error": {"code", "message", "detail"}}``
  (``receipt``: null unless the command was recorded before it failed);
* a refreshing command (``top`` without ``--once``) first sends ``{"type": "update", "id": N,
  "command", "value", "text"}`` for each look but the last, until its ``--count`` or until the
  client sends a frame, ``{"type": "stop", "id": N}`` (any frame stops it and is not otherwise
  read); then its result as above.

A frame that is not such a command (binary, not JSON, other members) is answered with
``invalid_frame`` and the session goes on; frames over :data:`MAX_FRAME_BYTES` close it (1009).
``quit`` answers, then closes (1000). Authentication is on the upgrade request, as on every
route: an ``admin`` bearer token, else the HTTP error body and status before any WebSocket opens.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from tai_autonomics import logs
from tai_autonomics.gateway import shell_commands, supervision
from tai_autonomics.gateway.auth import authorize
from tai_autonomics.gateway.errors import ApiError, error_response
from tai_autonomics.gateway.policy import ADMIN
from tai_autonomics.gateway.shell_commands import Command, Output, Shell, ShellInputError
from tai_autonomics.validation import is_int, loads_json

if TYPE_CHECKING:
    from tai_autonomics.gateway.context import Gateway

log = logging.getLogger("tai_autonomics.gateway.shell")

PATH = "/v1/shell"
MAX_FRAME_BYTES = 64 * 1024


async def session(websocket: WebSocket, gateway: Gateway) -> None:
    """Serve one shell session on an upgraded connection (the app routes ``PATH`` here)."""
    session_id = uuid.uuid4().hex
    try:
        identity = await gateway.auth.authenticate(websocket.headers.get("authorization"))
        authorize(identity, ADMIN)
    except ApiError as refused:
        logs.event(log, "shell refused", logging.WARNING, event="shell_refused", code=refused.code,
                   session=session_id)
        await websocket.send_denial_response(error_response(refused, session_id))
        return
    await websocket.accept()
    shell = Shell(gateway, identity, session_id)
    logs.event(log, "shell session opened", event="shell_opened", session=session_id, subject=identity.subject)
    gateway.metrics.shell_sessions.inc()
    try:
        await _send(websocket, {"type": "welcome", "session": session_id, "subject": identity.subject,
                                "commands": shell_commands.describe_commands(), "actors": await _actor_names(gateway)})
        while await _serve_one(websocket, shell):
            pass
        await websocket.close(1000)
    except WebSocketDisconnect:
        pass
    finally:
        gateway.metrics.shell_sessions.dec()
        logs.event(log, "shell session closed", event="shell_closed", session=session_id, subject=identity.subject)


async def _serve_one(websocket: WebSocket, shell: Shell) -> bool:
    """Answer the next frame; False once the session should end."""
    message = await websocket.receive()
    if message["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(message.get("code", 1000))
    if _late_stop(message):
        return True
    frame_id, name, receipt = None, None, None
    try:
        frame_id, line = _command_frame(message)
        command = shell_commands.parse(line)
        name = command.name
        receipt = (await shell.record(command)).get("id")
        repeat = shell_commands.refreshes(command)
        output = await (shell.run(command) if repeat is None else _refreshing(websocket, shell, command, frame_id,
                                                                              *repeat))
        result = {"type": "result", "id": frame_id, "ok": True, "command": name, "receipt": receipt,
                  "value": output.value, "text": output.text}
        text = json.dumps(result, allow_nan=False, separators=(",", ":"))
    except (ApiError, ShellInputError) as exc:
        refusal = (exc.code, exc.message, exc.detail)
    except (TypeError, ValueError):
        refusal = ("invalid_actor_reply", "the answer is not JSON", {})
    except WebSocketDisconnect:  # the client went away during a refreshing command: nothing to answer
        _logged(shell, frame_id, name, "disconnected", receipt)
        raise
    except Exception as exc:  # a bug: logged with its stack, never a traceback to the operator
        log.error("shell command failed", exc_info=exc, extra={"fields": {
            "event": "shell_command_failed", "session": shell.session}})
        refusal = ("internal_error", "the daemon failed to run the command", {})
    else:
        _logged(shell, frame_id, name, "ok", receipt)
        await websocket.send_text(text)
        return name != "quit"
    code, why, detail = refusal
    _logged(shell, frame_id, name, code, receipt)
    # receipt: the command's receipt if it was recorded before it failed
    await _send(websocket, {"type": "result", "id": frame_id, "ok": False, "receipt": receipt,
                            "error": {"code": code, "message": why, "detail": detail}})
    return True


async def _refreshing(websocket: WebSocket, shell: Shell, command: Command, frame_id: int, count: int | None,
                      interval_s: float) -> Output:
    """Run ``command`` every ``interval_s`` seconds (``top``): each look but the last goes out as an
    ``update`` frame, the last as the result; the last is the ``count``-th, or the one before any
    frame from the client (its stop: a key pressed). One command, one receipt, however many looks."""
    stop = asyncio.ensure_future(websocket.receive())
    looks = 0
    try:
        while True:
            output = await shell.run(command)
            looks += 1
            if count is not None and looks >= count:
                return output
            await _send(websocket, {"type": "update", "id": frame_id, "command": command.name,
                                    "value": output.value, "text": output.text})
            done, _ = await asyncio.wait({stop}, timeout=interval_s)
            if done:
                message = stop.result()
                if message["type"] == "websocket.disconnect":
                    raise WebSocketDisconnect(message.get("code", 1000))
                return Output(output.value, f"({command.name} stopped after {looks} refreshes)")
    finally:
        stop.cancel()  # the next command's frame is read by the session's loop, not by this look


def _late_stop(message: Mapping[str, Any]) -> bool:
    """A stop that crossed its command's result on the wire (the client stopped a ``top`` just as
    its last look went out): it has nothing left to stop and gets no answer, which the client,
    having had its result, does not wait for."""
    try:
        frame = loads_json(message.get("text") or "")
    except (ValueError, RecursionError):
        return False
    return isinstance(frame, dict) and frame.get("type") == "stop" and set(frame) == {"type", "id"}


def _command_frame(message: Mapping[str, Any]) -> tuple[int, str]:
    text = message.get("text")
    if text is None:
        raise ApiError(400, "invalid_frame", "frames must be JSON text, not binary")
    try:
        frame = loads_json(text)
    except (ValueError, RecursionError):
        raise ApiError(400, "invalid_frame", "the frame is not JSON") from None
    if (not isinstance(frame, dict) or frame.get("type") != "command" or set(frame) != {"type", "id", "line"}
            or not is_int(frame["id"])):
        raise ApiError(400, "invalid_frame", 'a frame must be {"type": "command", "id": <integer>, "line": <string>}')
    return frame["id"], frame["line"]


async def _send(websocket: WebSocket, frame: dict[str, Any]) -> None:
    await websocket.send_text(json.dumps(frame, allow_nan=False, separators=(",", ":")))


def _logged(shell: Shell, frame_id: int | None, command: str | None, outcome: str, receipt: str | None) -> None:
    """One log line and one count per frame: ``outcome`` is ``ok`` or the refusal's code."""
    shell.gateway.metrics.shell_command(command or "unparsed", outcome)
    logs.event(log, "shell command", event="shell_command", session=shell.session, subject=shell.identity.subject,
               frame=frame_id, command=command, outcome=outcome, receipt=receipt)


async def _actor_names(gateway: Gateway) -> list[str]:
    """Every name in the live tree, for completion; none if the tree cannot be walked now."""
    try:
        tree = await supervision.walk(gateway.bridge, gateway.config.root)
    except ApiError:
        return []
    return [tree["name"], *shell_commands.names_below(tree)]
