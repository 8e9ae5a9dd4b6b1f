"""Private time helpers: every clock in the trust subsystem is injectable and timezone-aware."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

Clock = Callable[[], dt.datetime]
"""A zero-argument callable returning the current time as an aware datetime (tests pass a fake)."""


def utcnow() -> dt.datetime:
    """The real clock."""
    return dt.datetime.now(dt.timezone.utc)


def aware(moment: dt.datetime) -> dt.datetime:
    """``moment`` in UTC; naive datetimes are a programming error (their zone would be a guess)."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("datetimes must be timezone-aware (use datetime.timezone.utc)")
    return moment.astimezone(dt.timezone.utc)
