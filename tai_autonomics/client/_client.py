"""The synchronous and asynchronous gateway clients: one set of operation methods for both.

Each operation is an :class:`_Operation` descriptor over its builder in
:mod:`tai_autonomics.client.operations`: on a :class:`Client` it is a method answering the model,
on an :class:`AsyncClient` a method answering an awaitable of it (the overloads of ``__get__``
tell a type checker which). Sending is the only part written twice, once blocking and once with
``await``, around one retry policy.
"""

from __future__ import annotations

import asyncio
import functools
import random
import time
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass
from typing import Any, Generic, ParamSpec, TypeVar, overload

import httpx

from tai_autonomics.client import operations as ops
from tai_autonomics.client.auth import BearerToken
from tai_autonomics.client.operations import BYTES, SHELL, TEXT, Call
from tai_autonomics.errors import TaiError
from tai_autonomics.retry_after import parse_retry_after

P = ParamSpec("P")
T = TypeVar("T")

RETRIED_STATUSES = frozenset({429, 503})
DEFAULT_TIMEOUT_S = 60.0  # above the gateway's operation timeout, so its own 503 arrives first


class ClientError(TaiError):
    """The gateway refused (its JSON error: ``code``, ``message``, ``detail``, with ``status`` and
    ``request_id``), or it could not be reached (:class:`GatewayUnreachable`)."""

    code = "gateway_error"
    status: int | None = None  # also for an instance rebuilt from its code alone (tai_autonomics.errors.rebuild)
    request_id: str | None = None

    def __init__(self, message: str, *, code: str | None = None, detail: dict[str, Any] | None = None,
                 status: int | None = None, request_id: str | None = None) -> None:
        super().__init__(message, code=code, detail=detail)
        self.status = status
        self.request_id = request_id

    def __reduce__(self):
        return (_rebuild_client_error, (type(self), self.message, self.code, self.detail, self.status, self.request_id))


class GatewayUnreachable(ClientError):
    """No answer came from the gateway (connection refused, reset or timed out)."""

    code = "gateway_unreachable"


def _rebuild_client_error(cls: type[ClientError], message: str, code: str, detail: dict[str, Any], status: int | None,
                          request_id: str | None) -> ClientError:
    error = cls.__new__(cls)
    ClientError.__init__(error, message, code=code, detail=detail, status=status, request_id=request_id)
    return error


@dataclass(frozen=True)
class RetryPolicy:
    """Up to ``attempts`` sends of a call answered 429 or 503 (or not connected at all): wait the
    answer's ``Retry-After``, else ``min(cap_s, base_s * 2**(n-1))`` with up to 10 % jitter; a
    ``Retry-After`` above ``max_retry_after_s`` gives up at once (the caller decides, not a sleep)."""

    attempts: int = 4
    base_s: float = 0.5
    cap_s: float = 8.0
    max_retry_after_s: float = 30.0

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.base_s < 0 or self.cap_s < 0 or self.max_retry_after_s < 0:
            raise ValueError("attempts must be >= 1 and the waits >= 0")

    def wait_s(self, attempt: int, response: httpx.Response | None) -> float | None:
        """Seconds to wait before sending again after ``attempt`` (1-based) got ``response`` (``None``:
        not connected); ``None`` when this answer is final."""
        if attempt >= self.attempts or (response is not None and response.status_code not in RETRIED_STATUSES):
            return None
        retry_after = None if response is None else parse_retry_after(response.headers.get("retry-after"))
        if retry_after is not None:
            return retry_after if retry_after <= self.max_retry_after_s else None
        return min(self.cap_s, self.base_s * 2 ** (attempt - 1)) * (1 + 0.1 * random.random())


class _Operation(Generic[P, T]):
    """A client method made from an operation's builder (see the module docstring)."""

    def __init__(self, build: Callable[P, Call[T]]) -> None:
        self.build = build
        self.__doc__ = build.__doc__

    @overload
    def __get__(self, client: None, owner: type) -> _Operation[P, T]: ...

    @overload
    def __get__(self, client: Client, owner: type) -> Callable[P, T]: ...

    @overload
    def __get__(self, client: AsyncClient, owner: type) -> Callable[P, Awaitable[T]]: ...

    def __get__(self, client: Any, owner: type) -> Any:
        if client is None:
            return self
        build = self.build

        @functools.wraps(build)
        def method(*args: P.args, **kwargs: P.kwargs) -> Any:
            return client.send(build(*args, **kwargs))

        return method


class _Operations:
    """Every operation of ``/openapi.json`` as a method (``tests/client`` holds the two to each other)."""

    healthz = _Operation(ops.healthz)
    readyz = _Operation(ops.readyz)
    prod_health = _Operation(ops.prod_health)
    metrics = _Operation(ops.metrics)
    openapi = _Operation(ops.openapi)
    get_supervision = _Operation(ops.get_supervision)
    open_shell = _Operation(ops.open_shell)
    call_actor = _Operation(ops.call_actor)
    cast_actor = _Operation(ops.cast_actor)
    get_receipt = _Operation(ops.get_receipt)
    get_receipt_proof = _Operation(ops.get_receipt_proof)
    get_checkpoint = _Operation(ops.get_checkpoint)
    get_consistency = _Operation(ops.get_consistency)
    list_receipts = _Operation(ops.list_receipts)
    create_deployment = _Operation(ops.create_deployment)
    get_deployment = _Operation(ops.get_deployment)
    create_publication = _Operation(ops.create_publication)
    get_publication = _Operation(ops.get_publication)
    create_quote = _Operation(ops.create_quote)
    get_mode = _Operation(ops.get_mode)
    get_insurance = _Operation(ops.get_insurance)
    create_contract_event = _Operation(ops.create_contract_event)
    get_revenue = _Operation(ops.get_revenue)
    tlog_checkpoint = _Operation(ops.tlog_checkpoint)
    tlog_tile = _Operation(ops.tlog_tile)


def _auth(token: str | None, auth: httpx.Auth | None) -> httpx.Auth | None:
    if token is not None and auth is not None:
        raise ValueError("give a token or an auth, not both")
    return BearerToken(token) if token is not None else auth


def _answer(call: Call[Any], response: httpx.Response) -> Any:
    """The answer of a 2xx (``readyz`` and ``prod_health`` also answer their 503 state as a
    ``ClientError``, like every other refusal)."""
    if response.is_success:
        if call.answer == BYTES:
            return response.content
        return response.text if call.answer == TEXT else response.json()
    try:
        error = response.json()["error"]
        code, message, detail = str(error["code"]), str(error["message"]), dict(error.get("detail") or {})
    except (ValueError, KeyError, TypeError):
        code, message, detail = "gateway_error", f"HTTP {response.status_code} without our JSON error", {}
    raise ClientError(message, code=code, detail=detail, status=response.status_code,
                      request_id=response.headers.get("x-request-id"))


def _unreachable(call: Call[Any], error: httpx.HTTPError) -> ClientError:
    return GatewayUnreachable(f"cannot reach the gateway for {call.method} {call.path}: {error}",
                              detail={"method": call.method, "path": call.path})


def _exchange(call: Call[Any], retry: RetryPolicy) -> Generator[Any, Any, Any]:
    """One call's attempts without I/O, so both clients retry alike: it yields ``None`` to ask for a
    send and is sent the response (or the ``ConnectError`` that stopped it); then it yields the
    seconds to wait before the next send, or returns the answer (or raises :class:`ClientError`)."""
    attempt = 0
    while True:
        attempt += 1
        outcome = yield None
        response = outcome if isinstance(outcome, httpx.Response) else None
        wait = retry.wait_s(attempt, response)
        if wait is None:
            if response is None:
                raise _unreachable(call, outcome)
            return _answer(call, response)
        yield wait


def _shell(base_url: str, auth: httpx.Auth | None) -> Any:
    """A remote shell session on the gateway's WebSocket, with this client's token."""
    from tai_autonomics.gateway.shell_client import ShellClient

    probe = next((auth or BearerToken("-")).sync_auth_flow(httpx.Request("GET", base_url)))
    return ShellClient(base_url, probe.headers["Authorization"].removeprefix("Bearer "))


class Client(_Operations):
    """A blocking client of the gateway at ``base_url``: ``token`` (a local token) or ``auth``
    (e.g. :class:`~tai_autonomics.client.auth.GoogleIdToken`); ``transport`` for tests and proxies."""

    def __init__(self, base_url: str, *, token: str | None = None, auth: httpx.Auth | None = None,
                 timeout_s: float = DEFAULT_TIMEOUT_S, retry: RetryPolicy = RetryPolicy(),
                 transport: httpx.BaseTransport | None = None) -> None:
        self.retry = retry
        self._auth = _auth(token, auth)
        self._http = httpx.Client(base_url=base_url, auth=self._auth, timeout=timeout_s, transport=transport)

    def send(self, call: Call[T]) -> T:
        """Send ``call``, retried per :attr:`retry`; its answer, or :class:`ClientError`."""
        if call.answer == SHELL:
            return _shell(str(self._http.base_url), self._auth)
        steps = _exchange(call, self.retry)
        next(steps)
        while True:
            try:
                outcome: httpx.Response | httpx.ConnectError = self._http.request(
                    call.method, call.path, params=call.params, json=call.json, headers=call.headers)
            except httpx.ConnectError as error:
                outcome = error
            except httpx.HTTPError as error:
                raise _unreachable(call, error) from None
            try:
                wait = steps.send(outcome)
            except StopIteration as done:
                return done.value
            time.sleep(wait)
            next(steps)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncClient(_Operations):
    """:class:`Client` for asyncio: the same methods, each answering an awaitable."""

    def __init__(self, base_url: str, *, token: str | None = None, auth: httpx.Auth | None = None,
                 timeout_s: float = DEFAULT_TIMEOUT_S, retry: RetryPolicy = RetryPolicy(),
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.retry = retry
        self._auth = _auth(token, auth)
        self._http = httpx.AsyncClient(base_url=base_url, auth=self._auth, timeout=timeout_s, transport=transport)

    async def send(self, call: Call[T]) -> T:
        """As :meth:`Client.send`; the remote shell session it opens for ``open_shell`` is blocking."""
        if call.answer == SHELL:
            return await asyncio.to_thread(_shell, str(self._http.base_url), self._auth)
        steps = _exchange(call, self.retry)
        next(steps)
        while True:
            try:
                outcome: httpx.Response | httpx.ConnectError = await self._http.request(
                    call.method, call.path, params=call.params, json=call.json, headers=call.headers)
            except httpx.ConnectError as error:
                outcome = error
            except httpx.HTTPError as error:
                raise _unreachable(call, error) from None
            try:
                wait = steps.send(outcome)
            except StopIteration as done:
                return done.value
            await asyncio.sleep(wait)
            next(steps)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
