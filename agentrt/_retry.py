"""What agentrt retries and how long it waits: statuses and ``Retry-After`` parsing.

Kept apart from :mod:`agentrt._http` (which applies the policy with tenacity) so the
policy reads on one page.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping
from typing import Any

from tenacity import RetryCallState

__all__ = ["RETRY_STATUSES", "last_outcome", "retry_after_from_headers"]

#: Statuses worth retrying: timeouts, conflicts, rate limits, transient server failures,
#: and Anthropic's 529 "overloaded".
RETRY_STATUSES: frozenset[int] = frozenset({408, 409, 429, 500, 502, 503, 504, 529})


def retry_after_from_headers(headers: Mapping[str, str], cap: float) -> float | None:
    """Return the wait a server asked for, in seconds, capped at ``cap``.

    Reads ``retry-after-ms`` and then ``Retry-After`` (seconds or an HTTP date). ``None``
    means the server asked for nothing: use the backoff.
    """
    delay: float | None = None
    value = headers.get("retry-after-ms")
    if value is not None:
        delay = _to_float(value)
        if delay is not None:
            delay /= 1000
    if delay is None:
        value = headers.get("retry-after")
        if value is not None:
            delay = _to_float(value)
            if delay is None:
                delay = _seconds_until(value)
    if delay is None:
        return None
    return min(max(delay, 0.0), cap)


def last_outcome(state: RetryCallState) -> Any:
    """Hand back the last attempt's outcome once retries are exhausted."""
    # After the last attempt: hand back the failed response (the caller maps it) or
    # re-raise the last exception.
    assert state.outcome is not None
    return state.outcome.result()


def _to_float(value: str) -> float | None:
    try:
        number = float(value)
    except ValueError:
        return None
    return number if number == number else None  # NaN


def _seconds_until(value: str) -> float | None:
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return when.timestamp() - time.time()
