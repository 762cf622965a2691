"""The backends of the HTTP driver: one response type above two ways of sending.

:class:`Backend` is ``send(route, body, *, stream) -> WireResponse``. :class:`LeanBackend`
sends on agentrt's own transport (:class:`~agentrt._transport.LeanTransport`, no
``httpx.Request`` or ``Response`` at all); :class:`HTTPXBackend` on any
``httpx.AsyncClient`` (a user's ``http_client=``, or agentrt's own when a proxy is set).
Failures are raised as httpx exceptions; the driver (:mod:`agentrt.providers.http`) maps
them, once, for both.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

import httpx

from .._client import finish_iterator, unbind
from .._transport import LeanTransport

__all__ = ["Backend", "HTTPXBackend", "LeanBackend", "Route", "WireResponse"]


# --- what the backends exchange -----------------------------------------------------------


class Route:
    """One endpoint of one provider: URL (with query) and the request headers."""

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
        """The HTTP/1.1 request head for a body of ``length`` bytes."""
        return b"%sContent-Length: %d\r\n\r\n" % (self.prefix, length)


class WireResponse:
    """A response as every backend returns it: status, headers, and a body to read once.

    Iterate it for the body's bytes as they arrive, or ``await read()`` for all of it;
    ``aclose()`` releases the connection (a body not read to its end closes it).
    """

    __slots__ = (
        "_aclose",
        "_chunks",
        "_headers",
        "_iterator",
        "_read",
        "content",
        "raw_headers",
        "status",
    )

    def __init__(
        self,
        status: int,
        raw_headers: list[tuple[bytes, bytes]],
        chunks: Callable[[], AsyncIterator[bytes]],
        read: Callable[[], Awaitable[bytes]],
        aclose: Callable[[], Awaitable[None]],
        content: bytes | None = None,
    ) -> None:
        self.status = status
        self.raw_headers = raw_headers
        self._headers: httpx.Headers | None = None
        self._chunks = chunks
        self._read = read
        self._aclose = aclose
        self._iterator: AsyncIterator[bytes] | None = None
        #: The whole body once read (a backend reads it at once for a non-streamed call).
        self.content = content

    @property
    def headers(self) -> httpx.Headers:
        """The headers, case-insensitive (built on first use)."""
        if self._headers is None:
            self._headers = httpx.Headers(self.raw_headers)
        return self._headers

    def header(self, name: bytes) -> str | None:
        """The first value of header ``name`` (lower case), without building ``headers``."""
        for key, value in self.raw_headers:
            if key.lower() == name:
                return value.decode("latin-1")
        return None

    def __aiter__(self) -> AsyncIterator[bytes]:
        iterator = self._iterator = self._chunks()
        return iterator

    async def read(self) -> bytes:
        """Read the whole body (once; later calls return it again)."""
        if self.content is None:
            self.content = await self._read()
        return self.content

    async def aclose(self) -> None:
        """Release the connection (a body iterator left part-way is closed first)."""
        iterator, self._iterator = self._iterator, None
        try:
            close = getattr(iterator, "aclose", None)
            if close is not None:
                await close()
        finally:
            await self._aclose()


class Backend(Protocol):
    """Sends one request; failures are raised as httpx exceptions (mapped above)."""

    async def send(self, route: Route, body: bytes, *, stream: bool) -> WireResponse:
        """POST ``body``; not streaming, the response body has been read (``content``)."""
        ...

    async def aclose(self) -> None:
        """Release what the backend owns."""
        ...


class LeanBackend:
    """A backend on agentrt's own transport: no ``httpx.Request`` or ``Response`` at all."""

    __slots__ = ("transport",)

    def __init__(self, transport: LeanTransport) -> None:
        self.transport = transport

    async def send(self, route: Route, body: bytes, *, stream: bool) -> WireResponse:
        """POST on the transport's pool; not streaming, the body is read at once."""
        raw = await self.transport.send_raw(
            route.origin, route.head(len(body)), body, route.timeouts
        )
        stream_body = raw.body
        content = None if stream else await stream_body.read()
        return WireResponse(
            raw.status,
            raw.headers,
            stream_body.__aiter__,
            stream_body.read,
            stream_body.aclose,
            content,
        )

    async def aclose(self) -> None:
        """Close the transport's connections."""
        await self.transport.aclose()


class HTTPXBackend:
    """A backend on any ``httpx.AsyncClient``: its own headers, auth, proxies, hooks apply."""

    __slots__ = ("client",)

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def send(self, route: Route, body: bytes, *, stream: bool) -> WireResponse:
        """POST through the client; not streaming, the body is read at once."""
        # The client applies its own headers, cookies and settings (ours: the user agent).
        request = self.client.build_request(
            "POST",
            route.url,
            content=body,
            headers=[(k, v) for k, v in route.headers if k != b"user-agent"],
        )
        response = await self.client.send(request, stream=True)
        content = None
        if not stream:
            try:
                content = await response.aread()
            finally:
                await response.aclose()
                unbind(response)

        async def aclose() -> None:
            try:
                await response.aclose()
                unbind(response)
            finally:
                await finish_iterator(chunks)

        chunks = response.aiter_bytes()
        return WireResponse(
            response.status_code,
            response.headers.raw,
            lambda: chunks,
            response.aread,
            aclose,
            content,
        )

    async def aclose(self) -> None:
        """Close the client."""
        await self.client.aclose()
