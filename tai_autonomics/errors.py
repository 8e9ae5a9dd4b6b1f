"""The one exception hierarchy of the project.

Every error we raise on purpose is a :class:`TaiError` with a stable machine-readable
``code`` (used in HTTP bodies, CLI output and receipts) and a message a person can act on.
Subpackages subclass it; callers that only care "did our code refuse this" catch the base.
"""

from __future__ import annotations

from typing import Any


class TaiError(Exception):
    """Base of every error raised deliberately by tai_autonomics."""

    code: str = "error"

    def __init__(self, message: str, *, code: str | None = None, detail: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        self.message = message
        self.detail: dict[str, Any] = dict(detail or {})

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of docs/specification.md §7's error body (without the request id)."""
        return {"code": self.code, "message": self.message, "detail": self.detail}

    def __reduce__(self):  # errors cross process boundaries pickled as actor replies
        return (_rebuild, (type(self), self.message, self.code, self.detail))


def _rebuild(cls: type[TaiError], message: str, code: str, detail: dict[str, Any]) -> TaiError:
    err = cls.__new__(cls)
    TaiError.__init__(err, message, code=code, detail=detail)
    return err


class HttpError(TaiError):
    """A request refused over HTTP: ``status`` is the HTTP status, ``headers`` extra headers.

    Shared by the gateway and the sandbox, whose error bodies have the same shape.
    """

    code = "bad_request"

    def __init__(self, status: int, code: str, message: str, detail: dict[str, Any] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message, code=code, detail=detail)
        self.status = status
        self.headers = dict(headers or {})

    def __reduce__(self):
        return (HttpError, (self.status, self.code, self.message, self.detail, self.headers))


class ConfigError(TaiError):
    """A configuration file or option is invalid; names the file, the key path and the reason."""

    code = "config_invalid"

    def __init__(self, file: str, key: str, reason: str) -> None:
        where = f"{file}: {key}" if key else file
        super().__init__(f"{where}: {reason}", detail={"file": file, "key": key, "reason": reason})
        self.file, self.key, self.reason = file, key, reason

    def __reduce__(self):
        return (ConfigError, (self.file, self.key, self.reason))


class Problems(TaiError):
    """Several problems found at once (e.g. every bad setting of a release, checked before a
    start): the CLI prints each on its own line, so one run names them all."""

    code = "start_checks_failed"

    def __init__(self, message: str, problems: list[TaiError]) -> None:
        super().__init__(message, detail={"problems": [problem.to_dict() for problem in problems]})
        self.problems = list(problems)
