"""Where transport failures become agentrt errors: the one mapping for all providers.

:class:`ErrorMap` is entered around every send and every read of a body by the HTTP
driver (:mod:`agentrt.providers.http`): an httpx error raised inside the block becomes the
matching :class:`~agentrt.errors.ProviderError`, chained to the httpx error with its
request (whose headers carry the API key) dropped, as httpx's ``map_httpcore_exceptions``
does for httpcore. Failed HTTP statuses are classified in one place too, by value:
:func:`agentrt.providers._wire.error_for_status`. This module imports nothing from the
providers' HTTP driver (no import cycle).
"""

from __future__ import annotations

from collections.abc import Callable

import httpx

from .errors import APIConnectionError, APITimeoutError, ProviderError
from .providers._wire import shorten, status_phrase

__all__ = ["ErrorMap", "Progress", "shorten", "status_phrase"]


class Progress:
    """What part of a streamed body had arrived, for error messages."""

    __slots__ = ("bytes", "events")

    def __init__(self) -> None:
        self.events = 0
        self.bytes = 0

    def describe(self) -> str:
        return f"after {self.events} event(s) ({self.bytes} bytes)"


class ErrorMap:
    """Translates an httpx failure raised inside the block into an agentrt error.

    A class rather than ``@contextmanager``: it is entered two or three times per turn, and
    a generator-based one costs several times more.

    Args:
        provider: the provider's name, for the error.
        base_url: where requests go, for "could not get a response from ...".
        scrub: removes the API key from a text.
        progress: given while a stream is read, so a broken stream says how much arrived.
    """

    __slots__ = ("_base_url", "_progress", "_provider", "_scrub")

    def __init__(
        self,
        provider: str,
        base_url: str,
        scrub: Callable[[str], str],
        progress: Progress | None = None,
    ) -> None:
        self._provider = provider
        self._base_url = base_url
        self._scrub = scrub
        self._progress = progress

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, exc: BaseException | None, tb: object) -> None:
        if isinstance(exc, httpx.HTTPError):
            error = self.mapped(exc)
            if error is not None:
                raise error from _detach(exc)

    def mapped(self, exc: httpx.HTTPError) -> ProviderError | None:
        """Return the agentrt error for an httpx failure, ``None`` if it is not mapped."""
        progress = self._progress
        if isinstance(exc, httpx.TimeoutException):
            where = f" {progress.describe()}" if progress and progress.bytes else ""
            return APITimeoutError(
                f"the request timed out{where} ({type(exc).__name__}); raise timeout= "
                "if the model needs longer",
                provider=self._provider,
            )
        if isinstance(exc, httpx.TransportError):
            if progress is not None:
                what = f"the event stream broke {progress.describe()}"
            else:
                what = f"could not get a response from {_origin(self._base_url)}"
            return APIConnectionError(
                f"{what}: {self._scrub(str(exc)) or type(exc).__name__}",
                provider=self._provider,
            )
        return None


def _detach(exc: httpx.HTTPError) -> httpx.HTTPError:
    """Drop the ``httpx.Request`` an httpx error holds, and return the error.

    Its headers carry the API key (httpx masks only ``Authorization`` when printing them),
    and the agentrt error is chained to this exception.
    """
    exc._request = None
    response = getattr(exc, "response", None)
    if isinstance(response, httpx.Response):
        response._request = None
    return exc


def _origin(url: str) -> str:
    parsed = httpx.URL(url)
    return f"{parsed.scheme}://{parsed.host}" + (f":{parsed.port}" if parsed.port else "")
