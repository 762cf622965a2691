"""What agentrt retries, how long it waits, and the one loop that does it.

:class:`RetryPolicy` is a frozen value (``get_async_model(..., retry=RetryPolicy(...))``;
``max_retries=`` is its shorthand); :func:`send_with_retries` is the only retry loop of
agentrt, used by the HTTP driver (:mod:`agentrt.providers.http`) for every provider and
both backends. It retries a connection failure or a response whose status is in
``statuses``, waits what the server asked for (``retry-after-ms``, ``Retry-After``, or the
policy's ``retry_after`` hook, e.g. Gemini's ``RetryInfo``), capped, or else an
exponential backoff with jitter; and it never retries once a response was handed over.
"""

from __future__ import annotations

import email.utils
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import anyio

from .errors import APIConnectionError, ProviderError, UsageError

__all__ = [
    "RETRY_STATUSES",
    "RetryPolicy",
    "Retryable",
    "retry_after_from_headers",
    "send_with_retries",
]

logger = logging.getLogger("agentrt.http")

#: Statuses worth retrying: timeouts, conflicts, rate limits, transient server failures,
#: and Anthropic's 529 "overloaded".
RETRY_STATUSES: frozenset[int] = frozenset({408, 409, 429, 500, 502, 503, 504, 529})

#: ``retry_after(status, headers, body) -> seconds or None``: the wait a failed response
#: asks for (``None``: no request, use the backoff).
RetryAfterHook = Callable[[int, Mapping[str, str], bytes], "float | None"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How failed requests are retried: a frozen value, shared freely.

    Args:
        max_retries: retries after the first attempt (0: none).
        statuses: HTTP statuses that are retried.
        initial_delay: the first backoff, in seconds; it doubles with every attempt.
        max_delay: the cap on the backoff, in seconds.
        jitter: the fraction of the backoff taken off at random (0: none; 1: full jitter).
        max_retry_after: the cap on a wait the server asks for, in seconds.
        retry_after: a hook ``(status, headers, body) -> seconds | None`` for waits a
            server states its own way (the provider's default reads Gemini's
            ``RetryInfo``); ``None``: the provider's default, then the headers.

    Raises:
        UsageError: a value of the wrong type or out of range.
    """

    max_retries: int = 2
    statuses: frozenset[int] = RETRY_STATUSES
    initial_delay: float = 0.5
    max_delay: float = 8.0
    jitter: float = 0.25
    max_retry_after: float = 60.0
    retry_after: RetryAfterHook | None = None

    def __post_init__(self) -> None:
        if type(self.max_retries) is not int or self.max_retries < 0:
            raise UsageError(
                f"RetryPolicy(max_retries=...) must be an int >= 0, got {self.max_retries!r}"
            )
        if not isinstance(self.statuses, (frozenset, set, tuple, list)) or not all(
            type(s) is int and 100 <= s <= 599 for s in self.statuses
        ):
            raise UsageError(
                f"RetryPolicy(statuses=...) must be HTTP status ints, got {self.statuses!r}"
            )
        object.__setattr__(self, "statuses", frozenset(self.statuses))
        for name in ("initial_delay", "max_delay", "max_retry_after"):
            value = getattr(self, name)
            if not _number(value) or value < 0:
                raise UsageError(f"RetryPolicy({name}=...) must be seconds >= 0, got {value!r}")
        if not _number(self.jitter) or not 0 <= self.jitter <= 1:
            raise UsageError(f"RetryPolicy(jitter=...) must be in [0, 1], got {self.jitter!r}")
        if self.retry_after is not None and not callable(self.retry_after):
            raise UsageError(
                f"RetryPolicy(retry_after=...) must be callable, got {self.retry_after!r}"
            )

    def backoff(self, attempt: int) -> float:
        """The wait before retry number ``attempt`` (1-based) when the server asked none."""
        base = min(self.initial_delay * 2.0 ** (attempt - 1), self.max_delay)
        return base * (1 - self.jitter * random.random())  # jitter, not crypto


class Retryable(Protocol):
    """What :func:`send_with_retries` needs of a response: its status and headers."""

    @property
    def status(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    async def read(self) -> bytes: ...

    async def aclose(self) -> None: ...


async def send_with_retries(
    send: Callable[[], Awaitable[Any]],
    policy: RetryPolicy,
    *,
    error_of: Callable[[Any, bytes], ProviderError],
    retry_after: RetryAfterHook | None = None,
    on_retry: Callable[[int, BaseException, float], None] | None = None,
    what: str = "request",
    first: Any = None,
) -> Any:
    """Call ``send()`` until it gives a response worth keeping; return that response.

    ``send()`` returns a response (see :class:`Retryable`) or raises an
    ``APIConnectionError`` (timeouts included). A connection failure, or a response
    whose status is in ``policy.statuses``, is retried up to ``policy.max_retries``
    times; the last failed response is returned as it is (its body read), for the
    caller to raise as an error. ``on_retry(attempt, error, delay)`` is called before
    each wait, with ``error_of(response, body)`` for a failed response. ``first``: the
    outcome of a first attempt already made (a response, or the ``APIConnectionError``
    it raised), so the happy path never enters this loop.
    """
    attempt = 0
    while True:
        try:
            if first is not None:
                outcome, first = first, None
                if isinstance(outcome, BaseException):
                    raise outcome
                response = outcome
            else:
                response = await send()
        except APIConnectionError as exc:
            if attempt >= policy.max_retries:
                raise
            error: BaseException = exc
            delay = policy.backoff(attempt + 1)
        else:
            if response.status not in policy.statuses or attempt >= policy.max_retries:
                return response
            body = await response.read()
            await response.aclose()
            error = error_of(response, body)
            requested = None
            hook = policy.retry_after or retry_after
            if hook is not None:
                requested = hook(response.status, response.headers, body)
            if requested is None:
                requested = retry_after_from_headers(response.headers, math.inf)
            if requested is None:
                delay = policy.backoff(attempt + 1)
            else:
                delay = min(max(requested, 0.0), policy.max_retry_after)
        attempt += 1
        what_failed = type(error).__name__
        status = getattr(error, "status", None)
        if status is not None and not isinstance(error, APIConnectionError):
            what_failed = f"HTTP {status}"
        logger.info(
            "%s: %s; retry %d of %d in %.2f s",
            what,
            what_failed,
            attempt,
            policy.max_retries,
            delay,
        )
        if on_retry is not None:
            on_retry(attempt, error, delay)
        await _sleep_at_least(delay)


async def _sleep_at_least(delay: float) -> None:
    """Sleep ``delay`` seconds, never less: a server's Retry-After is a minimum.

    Some loops fire timers early (uvloop's clock has millisecond steps): what is left is
    slept again.
    """
    deadline = time.monotonic() + delay
    await anyio.sleep(delay)
    for _ in range(3):
        left = deadline - time.monotonic()
        if left <= 0:
            return
        await anyio.sleep(left + 0.001)


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


def _number(value: Any) -> bool:
    return type(value) in (int, float) and value == value and value != math.inf


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
