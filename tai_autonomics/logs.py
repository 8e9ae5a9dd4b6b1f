"""Structured logging: one JSON object per line on stdout, in the shape Cloud Logging reads.

Cloud Logging maps ``severity`` and ``message`` and groups lines by
``logging.googleapis.com/trace``; anything passed in ``extra={"fields": {...}}`` is merged in,
so lifecycle events stay machine-readable without a second logging API.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")  # what a configuration or an operator may set

_SEVERITY = {
    logging.DEBUG: "DEBUG",
    logging.INFO: "INFO",
    logging.WARNING: "WARNING",
    logging.ERROR: "ERROR",
    logging.CRITICAL: "CRITICAL",
}


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line; ``record.fields`` (a dict) is merged into it."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "severity": _SEVERITY.get(record.levelno, "DEFAULT"),
            "message": record.getMessage(),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "logger": record.name,
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        trace = getattr(record, "trace", None)
        if trace:
            entry["logging.googleapis.com/trace"] = trace
        if record.exc_info:
            entry["stack_trace"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, separators=(",", ":"))


def configure(level: str | int = "INFO", stream: Any = None) -> None:
    """Route the root logger to JSON lines on ``stream`` (stdout by default), replacing handlers."""
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def event(logger: logging.Logger, message: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log ``message`` with structured ``fields`` merged into the JSON line."""
    logger.log(level, message, extra={"fields": fields})
