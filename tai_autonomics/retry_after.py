"""``Retry-After`` (RFC 9110 §10.2.3) as seconds, for every HTTP client of the project.

The insurer client and the gateway client both honour it; one parser keeps them agreeing on
what a decimal, a date in the past or a malformed value means.
"""

from __future__ import annotations

import email.utils
import math
from datetime import datetime, timezone


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After as seconds: delay-seconds (a decimal is accepted) or an HTTP-date; None if absent or bad."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            moment = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if moment.tzinfo is None:
            return None
        return max(0.0, (moment - datetime.now(timezone.utc)).total_seconds())
    return seconds if math.isfinite(seconds) and seconds >= 0 else None
