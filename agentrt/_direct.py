"""The fast path of agentrt's own HTTP client: requests straight to :class:`LeanTransport`.

A client that agentrt built itself has no auth, cookies, redirects, event hooks or default
headers beyond what a provider sets, so ``httpx.AsyncClient.send`` would add nothing but
cost. A :class:`Route` holds everything about one endpoint that does not change between
requests (origin, encoded request line and headers, timeouts); a request is then its head
plus the body, and a successful response is read straight off the transport without an
``httpx.Request`` or ``httpx.Response``. Anything else (a failed status, a retry) is turned
into httpx objects and takes the general path, so error handling is written once.
"""

from __future__ import annotations

from typing import Any

import httpx

from ._transport import RawResponse

__all__ = ["Route", "to_response"]


class Route:
    """One endpoint (URL with query, streamed or not) of one provider on its own client."""

    __slots__ = ("extensions", "headers", "origin", "prefix", "timeouts", "url")

    def __init__(
        self, url: httpx.URL, headers: list[tuple[bytes, bytes]], timeouts: dict[str, Any]
    ) -> None:
        self.url = url
        self.headers = headers
        self.timeouts: dict[str, float | None] = timeouts
        self.extensions: dict[str, Any] = {"timeout": timeouts}
        scheme = url.raw_scheme
        self.origin = (scheme, url.raw_host, url.port or (443 if scheme == b"https" else 80))
        lines = [b"POST " + url.raw_path + b" HTTP/1.1", b"Host: " + url.netloc]
        lines += [name + b": " + value for name, value in headers]
        self.prefix = b"\r\n".join(lines) + b"\r\n"

    def head(self, length: int) -> bytes:
        """The request head for a body of ``length`` bytes."""
        return b"%sContent-Length: %d\r\n\r\n" % (self.prefix, length)

    def request(self, content: bytes) -> httpx.Request:
        """The same request as an ``httpx.Request``, for the general path."""
        length = str(len(content)).encode()
        return httpx.Request(
            "POST",
            self.url,
            content=content,
            headers=[*self.headers, (b"content-length", length)],
            extensions=self.extensions,
        )


def to_response(
    raw: RawResponse, request: httpx.Request | None, content: bytes | None = None
) -> httpx.Response:
    """An ``httpx.Response`` of ``raw``: with ``content`` when the body was read already."""
    extensions = {"http_version": b"HTTP/1.1", "reason_phrase": raw.reason}
    if content is not None:
        return httpx.Response(
            raw.status, headers=raw.headers, content=content, request=request, extensions=extensions
        )
    return httpx.Response(
        raw.status, headers=raw.headers, stream=raw.body, request=request, extensions=extensions
    )
