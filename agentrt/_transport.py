"""agentrt's default HTTP/1.1 transport for httpx: an O(1) keep-alive pool and a hand parser.

Why it exists: measured on a 2-core machine, httpcore's pool rescans every connection and
waiter on each event (``AsyncConnectionPool._assign_requests_to_connections``), so at 1,000
concurrent chains a turn costs many times what it costs alone; and at N=1 httpcore + h11 +
per-operation cancel scopes cost more CPU than the rest of a turn. This transport keeps
httpx's client API (``httpx.AsyncClient(transport=LeanTransport())``) and replaces the pool
and the parser:

* one LIFO list of idle keep-alive connections per origin: taking and returning one is
  O(1) whatever the number of connections;
* the request head and body go out in one ``send``; the response head is parsed by hand;
  bodies are ``Content-Length``, chunked or delimited by the connection closing; every
  complete chunk already buffered is handed over at once;
* connections from ``_conn``: an ``asyncio.Protocol`` filling a buffer on asyncio (one
  future and one timer handle per read), anyio streams on trio; TLS for https URLs;
* a reused connection found closed before any byte of the request was written is
  replaced by a fresh one at no cost; once the request was written, a connection that
  fails (EOF before any response byte included) is an error, which the caller's retry
  policy may retry: a request that may have reached the server is never resent for free.

Not supported, by design: HTTP/2, proxies and ``Expect: 100-continue``. Pass your own
``httpx.AsyncClient`` (``http_client=``) when you need them. A connection is opened whenever
no idle one is free, up to ``max_connections`` when set (``max_idle`` caps what is kept).
Failures are raised as the httpx exceptions httpx's own transport raises, so error mapping
above is unchanged.
"""

from __future__ import annotations

import contextlib
import ssl
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from typing import NamedTuple, NoReturn

import anyio
import anyio.lowlevel
import httpx

from ._backend import Conn, NotSent, open_conn
from ._http1 import BodyDecoder, Head, ProtocolError, parse_head

__all__ = ["LeanTransport", "RawResponse"]

#: How a connection fails under a read or write (a clean EOF included), whatever its kind.
_BROKEN = (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.EndOfStream)


class _Stale(Exception):
    """A reused connection was found closed before any byte of the request was written."""


class _Unanswered(Exception):
    """The connection closed after the request was written, before any response byte."""


class LeanTransport(httpx.AsyncBaseTransport):
    """An ``httpx.AsyncBaseTransport`` with an O(1) keep-alive pool and a hand-written parser.

    Args:
        max_idle: idle connections kept per origin.
        keepalive_expiry: seconds an idle connection may be reused.
        ssl_context: for https origins; httpx's default context when ``None``.
        max_connections: connections open at once (in use, over all origins); a request
            beyond it waits for one to be released, up to the pool timeout, then raises
            ``httpx.PoolTimeout``. ``None``: no limit.
    """

    def __init__(
        self,
        *,
        max_idle: int = 1000,
        keepalive_expiry: float = 5.0,
        ssl_context: ssl.SSLContext | None = None,
        max_connections: int | None = None,
    ) -> None:
        if max_connections is not None and max_connections < 1:
            raise ValueError(f"max_connections must be at least 1, got {max_connections}")
        self.max_connections = max_connections
        self._slots: anyio.Semaphore | None = None
        self.max_idle = max_idle
        self.keepalive_expiry = keepalive_expiry
        self._ssl_context = ssl_context
        self._idle: dict[tuple[bytes, bytes, int], list[Conn]] = {}
        self._active: set[Conn] = set()
        self._closed = False

    @property
    def connections_in_use(self) -> int:
        """Connections carrying a request or an unread body right now."""
        return len(self._active)

    @property
    def idle_connections(self) -> int:
        """Open keep-alive connections waiting to be reused."""
        return sum(len(conns) for conns in self._idle.values())

    async def _drop(self, conn: Conn) -> None:
        self._leave(conn)
        await conn.aclose()

    def _leave(self, conn: Conn) -> None:
        # Every connection in use holds one slot of max_connections; it frees it here.
        if conn in self._active:
            self._active.discard(conn)
            if self._slots is not None:
                self._slots.release()

    async def _acquire_slot(self, seconds: float | None) -> None:
        if self.max_connections is None:
            return
        if self._slots is None:
            self._slots = anyio.Semaphore(self.max_connections)
        try:
            self._slots.acquire_nowait()
        except anyio.WouldBlock:
            try:
                with anyio.fail_after(seconds):
                    await self._slots.acquire()
            except TimeoutError as exc:
                raise httpx.PoolTimeout(
                    f"all {self.max_connections} connections stayed busy for the pool timeout"
                ) from exc

    def _release_slot(self) -> None:
        if self._slots is not None:
            self._slots.release()

    # --- the pool ----------------------------------------------------------------------

    async def _connect(self, origin: tuple[bytes, bytes, int], seconds: float | None) -> Conn:
        scheme, host, port = origin
        context = None
        if scheme == b"https":
            context = self._ssl_context or httpx.create_ssl_context()
        with anyio.fail_after(seconds):
            return await open_conn(scheme, host.decode("ascii"), port, context)

    async def _release(self, origin: tuple[bytes, bytes, int], conn: Conn) -> None:
        self._leave(conn)
        idle = self._idle.setdefault(origin, [])
        if self._closed or len(idle) >= self.max_idle:
            await conn.aclose()
            return
        conn.idle_since = time.monotonic()
        idle.append(conn)

    async def _take_idle(self, origin: tuple[bytes, bytes, int]) -> Conn | None:
        idle = self._idle.get(origin)
        while idle:
            conn = idle.pop()
            if time.monotonic() - conn.idle_since > self.keepalive_expiry:
                # Everything older is below it in the LIFO: drop them all.
                stale = [conn, *idle]
                idle.clear()
                for old in stale:
                    await old.aclose()
                return None
            if conn.reusable():
                return conn
            await conn.aclose()  # the server closed it, or sent bytes nobody asked for
        return None

    # --- one exchange ------------------------------------------------------------------

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        scheme = url.raw_scheme
        port = url.port or (443 if scheme == b"https" else 80)
        timeouts: dict[str, float | None] = request.extensions.get("timeout", {})
        try:
            body = request.content
        except httpx.RequestNotRead:
            body = await request.aread()
        head = _request_head(request, len(body))
        raw = await self.send_raw(
            (scheme, url.raw_host, port),
            head,
            body,
            timeouts,
            method=request.method,
            request=request,
        )
        return httpx.Response(
            raw.status,
            headers=raw.headers,
            stream=raw.body,
            request=request,
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": raw.reason},
        )

    async def send_raw(
        self,
        origin: tuple[bytes, bytes, int],
        head: bytes,
        body: bytes,
        timeouts: Mapping[str, float | None],
        *,
        method: str = "POST",
        request: httpx.Request | None = None,
    ) -> RawResponse:
        """Send one request whose head is already encoded; return the status, headers and body.

        The lower half of :meth:`handle_async_request`, for callers that build no
        ``httpx.Request`` and read the body themselves (agentrt's own providers). Failures
        are the same httpx exceptions; ``request`` only goes into them.
        """
        payload = head + body if len(body) < 65536 else None
        await self._acquire_slot(timeouts.get("pool"))
        conn = await self._take_idle(origin)
        if conn is not None:
            self._active.add(conn)  # the connection now holds the slot
            try:
                return await self._exchange(
                    request, method, origin, conn, head, body, payload, timeouts
                )
            except _Stale:
                pass  # dropped, and its slot freed
            await self._acquire_slot(timeouts.get("pool"))
        try:
            conn = await self._connect_mapped(origin, timeouts.get("connect"))
        except BaseException:
            if self.max_connections is not None:
                self._release_slot()
            raise
        self._active.add(conn)
        try:
            return await self._exchange(
                request, method, origin, conn, head, body, payload, timeouts
            )
        except _Stale as exc:  # pragma: no cover - a fresh connection closed at once
            raise httpx.RemoteProtocolError(
                "Server disconnected before the request was sent.", request=request
            ) from exc

    async def _connect_mapped(
        self, origin: tuple[bytes, bytes, int], seconds: float | None
    ) -> Conn:
        try:
            return await self._connect(origin, seconds)
        except TimeoutError as exc:
            raise httpx.ConnectTimeout(str(exc) or "connect timed out") from exc
        except OSError as exc:
            raise httpx.ConnectError(str(exc)) from exc

    async def _exchange(
        self,
        request: httpx.Request | None,
        method: str,
        origin: tuple[bytes, bytes, int],
        conn: Conn,
        head: bytes,
        body: bytes,
        payload: bytes | None,
        timeouts: Mapping[str, float | None],
    ) -> RawResponse:
        sending = True
        try:
            write_timeout = timeouts.get("write")
            try:
                await conn.send(payload if payload is not None else head, write_timeout)
            except NotSent as exc:
                raise _Stale from exc
            if payload is None:
                await conn.send(body, write_timeout)
            sending = False
            parsed = await self._read_head(conn, timeouts.get("read"), method)
        except ProtocolError as exc:
            await self._drop(conn)
            raise httpx.RemoteProtocolError(str(exc), request=request) from exc
        except _Stale:
            await self._drop(conn)
            raise
        except _Unanswered as exc:
            await self._drop(conn)
            raise httpx.RemoteProtocolError(
                "Server disconnected without sending a response.", request=request
            ) from exc
        except TimeoutError as exc:
            await self._drop(conn)
            if sending:
                raise httpx.WriteTimeout("timed out sending the request", request=request) from exc
            raise httpx.ReadTimeout("timed out reading the response", request=request) from exc
        except _BROKEN as exc:
            await self._drop(conn)
            raise httpx.ReadError(str(exc) or type(exc).__name__, request=request) from exc
        except BaseException:
            await self._drop(conn)
            raise
        body_stream = _Body(self, origin, conn, parsed, request, timeouts.get("read"))
        return RawResponse(parsed.status, parsed.reason, parsed.headers, body_stream)

    async def _read_head(self, conn: Conn, seconds: float | None, method: str) -> Head:
        buffer = conn.buffer
        verb = method.encode("ascii")
        fresh = True
        while True:
            head = parse_head(buffer, method=verb)
            if head is not None:
                return head
            try:
                await conn.fill(seconds)
            except (anyio.EndOfStream, anyio.BrokenResourceError) as exc:
                if fresh and not buffer:
                    raise _Unanswered from exc
                raise
            fresh = False

    async def aclose(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, {}
        for conns in idle.values():
            for conn in conns:
                await conn.aclose()


class RawResponse(NamedTuple):
    """A response as :meth:`LeanTransport.send_raw` returns it."""

    status: int
    reason: bytes
    headers: list[tuple[bytes, bytes]]
    body: _Body


class _Body(httpx.AsyncByteStream):
    """The body of one response; returns the connection to the pool once fully read."""

    def __init__(
        self,
        transport: LeanTransport,
        origin: tuple[bytes, bytes, int],
        conn: Conn,
        head: Head,
        request: httpx.Request | None,
        timeout: float | None,
    ) -> None:
        self._transport = transport
        self._origin = origin
        self._conn: Conn | None = conn
        self._keep_alive = head.keep_alive
        self._decoder = BodyDecoder(head)
        self._request = request
        self._timeout = timeout
        #: The whole body, once :meth:`read`.
        self.content = b""

    async def __aiter__(self) -> AsyncIterator[bytes]:
        conn = self._conn
        if conn is None:
            return
        pieces = self._pieces(conn)
        try:
            async with contextlib.aclosing(pieces):
                async for data in pieces:
                    # Data already buffered is handed over without suspending: keep every
                    # piece a point where a cancelled scope takes effect, as a read would be.
                    await conn.checkpoint_if_cancelled()
                    yield data
        except BaseException as exc:
            await self._fail(exc)
        await self._finish()

    async def _fail(self, exc: BaseException) -> NoReturn:
        """Drop the connection and raise what a failure while reading the body is."""
        await self._discard()
        if isinstance(exc, TimeoutError):
            raise httpx.ReadTimeout("timed out reading the body", request=self._request) from exc
        if isinstance(exc, ProtocolError):
            raise httpx.RemoteProtocolError(str(exc), request=self._request) from exc
        if isinstance(exc, _BROKEN) and not isinstance(exc, httpx.HTTPError):
            raise httpx.RemoteProtocolError(
                f"the connection broke while reading the body ({type(exc).__name__})",
                request=self._request,
            ) from exc
        raise exc

    async def _pieces(self, conn: Conn) -> AsyncGenerator[bytes, None]:
        decoder = self._decoder
        buffer = conn.buffer
        while True:
            data = decoder.take(buffer)
            if data:
                yield data
            if decoder.done or not await self._more(conn):
                return

    async def _more(self, conn: Conn) -> bool:
        """Wait for more of the body; ``False`` when the connection ended it."""
        try:
            await conn.fill(self._timeout)
        except anyio.EndOfStream:
            self._decoder.end_of_stream()  # complete only when read to the end of the stream
            self._keep_alive = False
            return False
        return True

    async def _finish(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if self._keep_alive and conn.reusable(probe=False):  # probed when taken out
            await self._transport._release(self._origin, conn)
        else:
            await self._transport._drop(conn)

    async def _discard(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await self._transport._drop(conn)

    async def aclose(self) -> None:
        # Closed before the end of the body: the connection cannot be reused.
        await self._discard()

    async def read(self) -> bytes:
        """Read the whole body into ``content`` (the connection goes back to the pool).

        The loop of :meth:`_pieces` without its generators: a whole answer is read on
        every non-streamed turn.
        """
        conn = self._conn
        if conn is None:
            return self.content
        decoder = self._decoder
        buffer = conn.buffer
        pieces: list[bytes] = []
        try:
            while True:
                data = decoder.take(buffer)
                if data:
                    pieces.append(data)
                if decoder.done or not await self._more(conn):
                    break
            await conn.checkpoint_if_cancelled()
        except BaseException as exc:
            await self._fail(exc)
        self.content = b"".join(pieces)
        await self._finish()
        return self.content


def _request_head(request: httpx.Request, length: int) -> bytes:
    url = request.url
    target = url.raw_path
    lines = [request.method.encode("ascii") + b" " + target + b" HTTP/1.1"]
    has_host = has_length = False
    for name, value in request.headers.raw:
        lower = name.lower()
        if lower == b"host":
            has_host = True
        elif lower == b"content-length":
            has_length = True
        elif lower == b"transfer-encoding":
            continue  # the body is sent whole, with a Content-Length
        lines.append(name + b": " + value)
    if not has_host:
        lines.insert(1, b"Host: " + url.netloc)
    if not has_length and (length or request.method in ("POST", "PUT", "PATCH")):
        lines.append(b"Content-Length: " + str(length).encode("ascii"))
    return b"\r\n".join(lines) + b"\r\n\r\n"
