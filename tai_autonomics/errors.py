"""The one exception hierarchy of the project.

Every error we raise on purpose is a :class:`TaiError` with a stable machine-readable
``code`` (used in HTTP bodies, CLI output and receipts) and a message a person can act on.
Subpackages subclass it; callers that only care "did our code refuse this" catch the base.
"""

from __future__ import annotations

from typing import Any


class TaiError(Exception):
    """Base of every error raised deliberately by tai_autonomics.

    A subclass that sets its own ``code`` is registered under it when it is defined: codes are
    unique (a second class claiming one is a bug, refused at import), and an error that crossed
    an actor boundary as a code and a message is rebuilt as its class by :func:`rebuild`, so
    callers catch classes instead of comparing codes.
    """

    code: str = "error"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "code" not in cls.__dict__:
            return
        known = _REGISTRY.get(cls.code)
        if known is not None and (known.__module__, known.__qualname__) != (cls.__module__, cls.__qualname__):
            raise TypeError(f"error code {cls.code!r} of {cls.__qualname__} is already {known.__qualname__}'s")
        _REGISTRY[cls.code] = cls

    def __init__(self, message: str, *, code: str | None = None, detail: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        self.message = message
        self.detail: dict[str, Any] = dict(detail or {})

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of docs/specification.md §7's error body (without the request id)."""
        return {"code": self.code, "message": self.message, "detail": self.detail}

    def __reduce__(self) -> tuple[Any, ...]:  # errors cross process boundaries pickled as actor replies
        return (_restore, (type(self), self.message, self.code, self.detail))


_REGISTRY: dict[str, type[TaiError]] = {}


def registered() -> dict[str, type[TaiError]]:
    """Every code a class claims, with that class (the ones whose modules are imported)."""
    return dict(_REGISTRY)


def rebuild(code: str, message: str, detail: dict[str, Any] | None = None) -> TaiError:
    """The error ``code`` names, as its registered class (an unknown code: a :class:`TaiError`
    keeping the code), without running the class's own ``__init__``: subclasses keep what their
    constructors take in ``detail``, so nothing is lost."""
    return _restore(_REGISTRY.get(code, TaiError), message, code, detail)


def _restore(cls: type[TaiError], message: str, code: str, detail: dict[str, Any] | None) -> TaiError:
    err = cls.__new__(cls)
    TaiError.__init__(err, message, code=code, detail=detail)
    return err


class HttpError(TaiError):
    """A request refused over HTTP: ``status`` is the HTTP status, ``headers`` extra headers.

    Shared by the gateway and the sandbox, whose error bodies have the same shape. Its code is
    given per instance (the answer's), so it claims none in the registry.
    """

    def __init__(self, status: int, code: str, message: str, detail: dict[str, Any] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message, code=code, detail=detail)
        self.status = status
        self.headers = dict(headers or {})

    def __reduce__(self) -> tuple[Any, ...]:
        return (HttpError, (self.status, self.code, self.message, self.detail, self.headers))


class InvalidRequest(TaiError):
    """A call's (or a request's) payload is malformed: a field is missing, of the wrong type or out
    of range; ``detail["field"]`` names it when there is one. The caller must change the request;
    nothing was done."""

    code = "invalid_request"


class ConfigError(TaiError):
    """A configuration file or option is invalid; names the file, the key path and the reason."""

    code = "config_invalid"

    def __init__(self, file: str, key: str, reason: str) -> None:
        where = f"{file}: {key}" if key else file
        super().__init__(f"{where}: {reason}", detail={"file": file, "key": key, "reason": reason})

    @property
    def file(self) -> str:
        return str(self.detail.get("file", ""))

    @property
    def key(self) -> str:
        return str(self.detail.get("key", ""))

    @property
    def reason(self) -> str:
        return str(self.detail.get("reason", ""))


class Problems(TaiError):
    """Several problems found at once (e.g. every bad setting of a release, checked before a
    start): the CLI prints each on its own line, so one run names them all."""

    code = "start_checks_failed"

    def __init__(self, message: str, problems: list[TaiError]) -> None:
        super().__init__(message, detail={"problems": [problem.to_dict() for problem in problems]})

    @property
    def problems(self) -> list[TaiError]:
        """Each problem, rebuilt from ``detail`` (so a pickled or rebuilt copy has them too)."""
        return [rebuild(p["code"], p["message"], p.get("detail")) for p in self.detail.get("problems", [])]
