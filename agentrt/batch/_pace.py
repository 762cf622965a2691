"""Pacing a batch's requests: ``RateLimit`` and the pacer every chain of a batch shares.

The pacer spaces request starts evenly (one every ``60 / requests_per_minute`` seconds:
no bursts, so any minute of the run stays under the limit) and holds new requests while
the tokens reported so far are over ``tokens_per_minute``. Tokens are known only once a
turn reports its usage, so the requests already running when the budget runs out still
finish; over a run the rate settles at the limit.

A 429 pauses every chain of the batch, not only the one that got it: when the HTTP layer
is about to retry a rate-limited request (the ``on_retry`` hook) the whole batch waits for
the delay the server asked for, and a chain that failed with ``RateLimitError`` after its
retries pauses the batch with a backoff that doubles up to 60 s while such failures go on.
With a rate limit the pause holds every request; without one, every chain start (so a
batch without limits adds no async hook to its turns).

The decisions are in :class:`Pacer`, on an injectable clock and without I/O; the Ray
integration runs the same class in a small actor so that every worker shares it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio

from ..callbacks import CallbackHandler
from ..errors import RateLimitError, UsageError

__all__ = [
    "MAX_BACKOFF",
    "Pacer",
    "PacingHandler",
    "RateLimit",
    "RetryPauseHandler",
    "TokenPacingHandler",
    "pacer_pause",
    "pacing_handler",
]

#: The longest pause after chains failed with ``RateLimitError``.
MAX_BACKOFF = 60.0


@dataclass(frozen=True, slots=True)
class RateLimit:
    """Limits shared by every chain of a batch.

    Attributes:
        requests_per_minute: model requests (turns) started per minute; retries of a
            request are not counted.
        tokens_per_minute: tokens (as the provider reports them) per minute.
    """

    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None

    def __post_init__(self) -> None:
        for name in ("requests_per_minute", "tokens_per_minute"):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise UsageError(f"RateLimit({name}=...) must be a positive number, got {value!r}")
        if self.requests_per_minute is None and self.tokens_per_minute is None:
            raise UsageError(
                "RateLimit() limits nothing: give requests_per_minute= and/or tokens_per_minute="
            )


class Pacer:
    """When the next request may start: the pure part of pacing (no I/O, any clock)."""

    def __init__(
        self, limit: RateLimit | None = None, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = limit
        self.clock = clock
        rpm = limit.requests_per_minute if limit else None
        tpm = limit.tokens_per_minute if limit else None
        self._interval = 60.0 / rpm if rpm else 0.0
        self._seconds_per_token = 60.0 / tpm if tpm else 0.0
        self._next_request = -float("inf")
        self._tokens_paid_at = -float("inf")
        self._paused_until = -float("inf")
        self._failures = 0

    def reserve(self) -> float:
        """Take the next request slot; return how many seconds to wait for it."""
        now = self.clock()
        start = max(now, self._paused_until, self._tokens_paid_at)
        if self._interval:
            start = max(start, self._next_request)
            self._next_request = start + self._interval
        return start - now

    def paused_for(self) -> float:
        """Seconds left of a pause (0 when none)."""
        return max(0.0, self._paused_until - self.clock())

    def add_tokens(self, tokens: int) -> None:
        """Count tokens a turn reported against ``tokens_per_minute``."""
        if self._seconds_per_token and tokens > 0:
            base = max(self.clock(), self._tokens_paid_at)
            self._tokens_paid_at = base + tokens * self._seconds_per_token

    def pause(self, seconds: float) -> None:
        """Hold every new request for ``seconds`` (a 429's retry delay)."""
        if seconds > 0:
            self._paused_until = max(self._paused_until, self.clock() + seconds)

    def rate_limited(self) -> float:
        """Note a chain that failed with ``RateLimitError``; pause with a growing backoff."""
        self._failures += 1
        backoff = min(MAX_BACKOFF, 2.0 ** (self._failures - 1))
        self.pause(backoff)
        return backoff

    def succeeded(self) -> None:
        """Note a completed chain: the backoff starts again from 1 s."""
        self._failures = 0


class RetryPauseHandler(CallbackHandler):
    """Pauses the batch when a request is about to be retried after a 429.

    The only hook is a sync ``on_retry``, so a batch without a rate limit adds no async
    hook (and no cancel scope) to its chains' turns.
    """

    def __init__(self, pacer: Any) -> None:
        self.pacer = pacer

    def on_retry(self, response: Any, attempt: int, error: BaseException, delay: float) -> None:
        """Pause the whole batch for the delay a rate-limited request is retried after."""
        if _is_rate_limit(error):
            self.pacer.pause(delay)


class PacingHandler(RetryPauseHandler):
    """Waits for the pacer before each request; pauses the batch on 429 retries.

    ``on_turn_start`` is awaited before the request is sent, so waiting in it delays the
    request. One instance serves every chain of a batch.
    """

    async def on_turn_start(self, response: Any) -> None:
        """Wait for this request's slot, and out any pause set meanwhile."""
        delay = self.pacer.reserve()
        if not isinstance(delay, (int, float)):
            delay = await delay
        if delay > 0:
            await anyio.sleep(delay)
            await pacer_pause(self.pacer)


class TokenPacingHandler(PacingHandler):
    """A :class:`PacingHandler` that also counts reported tokens."""

    def on_turn_end(self, response: Any) -> None:
        """Charge the turn's reported tokens."""
        usage = response.usage
        if usage is not None:
            self.pacer.add_tokens(usage.total_tokens)


async def pacer_pause(pacer: Any) -> None:
    """Wait out the pacer's pause, if any (checked again after each wait)."""
    delay = pacer.paused_for()
    if not isinstance(delay, (int, float)):
        delay = await delay
    while delay > 0:
        await anyio.sleep(delay)
        delay = pacer.paused_for()
        if not isinstance(delay, (int, float)):
            delay = await delay


def _is_rate_limit(error: BaseException) -> bool:
    return isinstance(error, RateLimitError) or getattr(error, "status", None) == 429


def pacing_handler(pacer: Any) -> RetryPauseHandler:
    """The handler for ``pacer``: the cheapest one that does what its limit needs.

    ``pacer`` is a :class:`Pacer`, or an object with the same methods whose ``reserve``
    and ``paused_for`` may return awaitables (the Ray workers' handle to the shared one).
    """
    limit = getattr(pacer, "limit", None)
    if limit is None:
        return RetryPauseHandler(pacer)
    if limit.tokens_per_minute:
        return TokenPacingHandler(pacer)
    return PacingHandler(pacer)
