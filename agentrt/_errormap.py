"""Where transport and HTTP failures become agentrt errors: the one mapping for all providers.

:class:`ErrorMap` is what :meth:`HTTPProvider._map_errors` returns: an httpx error raised
inside the block becomes the matching :class:`~agentrt.errors.ProviderError`, chained to the
httpx error with its request (whose headers carry the API key) dropped. As httpx's
``map_httpcore_exceptions`` does for httpcore.
"""

from __future__ import annotations

import http
from typing import TYPE_CHECKING

import httpx

from .errors import APIConnectionError, APITimeoutError, ProviderError

if TYPE_CHECKING:
    from ._http import HTTPProvider

__all__ = ["ErrorMap", "Progress", "shorten", "status_phrase"]

_MAX_ERROR_TEXT = 500


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
    """

    __slots__ = ("_progress", "_provider")

    def __init__(self, provider: HTTPProvider, progress: Progress | None) -> None:
        self._provider = provider
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
        provider, progress = self._provider, self._progress
        if isinstance(exc, httpx.HTTPStatusError):
            return provider._error_from_response(exc.response)
        if isinstance(exc, httpx.TimeoutException):
            where = f" {progress.describe()}" if progress and progress.bytes else ""
            return APITimeoutError(
                f"the request timed out{where} ({type(exc).__name__}); raise timeout= "
                "if the model needs longer",
                provider=provider.name,
            )
        if isinstance(exc, httpx.TransportError):
            if progress is not None:
                what = f"the event stream broke {progress.describe()}"
            else:
                what = f"could not get a response from {_origin(provider.base_url)}"
            return APIConnectionError(
                f"{what}: {provider._scrub(str(exc)) or type(exc).__name__}",
                provider=provider.name,
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


def shorten(text: str, limit: int = _MAX_ERROR_TEXT) -> str:
    """Collapse whitespace and cut ``text`` to ``limit`` characters (with an ellipsis)."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def status_phrase(status: int) -> str:
    """``"HTTP 404 Not Found"``, or ``"HTTP 599"`` for a status without a phrase."""
    try:
        return f"HTTP {status} {http.HTTPStatus(status).phrase}"
    except ValueError:
        return f"HTTP {status}"


def _origin(url: str) -> str:
    parsed = httpx.URL(url)
    return f"{parsed.scheme}://{parsed.host}" + (f":{parsed.port}" if parsed.port else "")
