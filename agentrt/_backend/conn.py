"""One TCP (or TLS) connection of the transport: a byte buffer filled from the socket.

Two implementations with one interface, chosen when the connection opens:

* :class:`ProtocolConn` on asyncio: an ``asyncio.Protocol`` appends whatever arrives to
  ``buffer`` as it arrives; a reader that needs more awaits one future, with its read
  timeout as one timer handle. No cancel scope, no stream object and no extra task switch
  per read: on the per-turn path this is several times cheaper than anyio's streams with
  ``anyio.fail_after`` around every read. The protocol stops reading from the socket when
  more than :data:`HIGH_WATER` bytes wait unread, and knows when the peer closed an idle
  connection, so the pool never hands one out.
* :class:`.trio_conn.TrioConn` on trio, for plain TCP: the raw non-blocking socket,
  waiting through trio's I/O manager only when nothing is there yet.
* :class:`StreamConn` otherwise (TLS on trio, and the portable path): an anyio byte
  stream, a cancel scope per read.

All raise the exceptions :mod:`.connbase` names.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from typing import cast

import anyio
import anyio.abc
import anyio.lowlevel

from .connbase import Conn, NotSent, Probe
from .connect import connect_socket
from .loops import running_asyncio_loop
from .trio_conn import open_trio_conn
from .version import FAST_CONN, PORTABLE

__all__ = ["HIGH_WATER", "Conn", "NotSent", "ProtocolConn", "StreamConn", "open_conn"]


try:  # anyio's asyncio backend, called directly on the per-read path
    from anyio._backends._asyncio import AsyncIOBackend

    _asyncio_checkpoint_if_cancelled = AsyncIOBackend.checkpoint_if_cancelled
except ImportError:  # pragma: no cover - a future anyio moved it
    _asyncio_checkpoint_if_cancelled = anyio.lowlevel.checkpoint_if_cancelled

#: Unread bytes above which a ``ProtocolConn`` stops reading from its socket.
HIGH_WATER = 256 * 1024
_READ_SIZE = 65536
_CLOSE_SECONDS = 2.0


async def open_conn(
    scheme: bytes, host: str, port: int, ssl_context: ssl.SSLContext | None
) -> Conn:
    """Open a connection; the caller bounds the time it may take."""
    asyncio_loop = running_asyncio_loop()
    loop = asyncio_loop if FAST_CONN else None  # None on the portable path
    context = ssl_context if scheme == b"https" else None
    if asyncio_loop is None and context is None and not PORTABLE:  # plain TCP on trio
        return await open_trio_conn(host, port)
    if loop is not None:
        conn = ProtocolConn(loop)
        sock = await connect_socket(host, port, loop.getaddrinfo, loop.sock_connect)
        try:
            # On failure or cancellation (e.g. during the TLS handshake) the loop closes
            # the transport and with it the socket.
            await loop.create_connection(
                lambda: conn,
                sock=sock,
                ssl=context,
                server_hostname=host if context is not None else None,
            )
        except BaseException:
            if conn._transport is None:  # never wrapped in a transport: close it here
                sock.close()
            raise
        return conn
    if context is not None:
        stream: anyio.abc.ByteStream = await anyio.connect_tcp(
            host, port, ssl_context=context, tls_standard_compatible=False
        )
    else:
        stream = await anyio.connect_tcp(host, port)
    return StreamConn(stream)


class ProtocolConn(Conn, asyncio.Protocol):
    """A connection on asyncio, driven by the event loop's protocol callbacks."""

    __slots__ = (
        "_closed",
        "_drain",
        "_ended",
        "_error",
        "_loop",
        "_paused",
        "_probe",
        "_transport",
        "_waiter",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._loop = loop
        self._transport: asyncio.Transport | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._drain: asyncio.Future[None] | None = None
        self._ended = False  # EOF received or connection lost
        self._error: BaseException | None = None
        self._paused = False
        self._closed: asyncio.Future[None] | None = None  # set once the socket is closed
        self._probe: Probe | None = None

    # --- protocol callbacks (run by the loop) --------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but behave as such.
        self._transport = cast("asyncio.Transport", transport)
        sock = transport.get_extra_info("socket")
        self._probe = Probe(sock.fileno()) if sock is not None else None

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) > HIGH_WATER and not self._paused and self._transport is not None:
            self._paused = True
            self._transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self._ended = True
        self._wake()
        return False  # let the transport close itself

    def connection_lost(self, exc: Exception | None) -> None:
        self._ended = True
        self._transport = None
        if self._closed is not None and not self._closed.done():
            self._closed.set_result(None)
        if exc is not None and self._error is None:
            self._error = exc
        self._wake()
        drain, self._drain = self._drain, None
        if drain is not None and not drain.done():
            drain.set_result(None)

    def pause_writing(self) -> None:
        if self._drain is None:
            self._drain = self._loop.create_future()

    def resume_writing(self) -> None:
        drain, self._drain = self._drain, None
        if drain is not None and not drain.done():
            drain.set_result(None)

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # --- used by the transport -----------------------------------------------------------

    async def fill(self, seconds: float | None) -> None:
        if self._paused and self._transport is not None:
            self._paused = False
            self._transport.resume_reading()
        size = len(self.buffer)
        if not self._ended:
            waiter = self._waiter = self._loop.create_future()
            if seconds is None:
                try:
                    await waiter
                finally:
                    self._waiter = None
            else:
                timer = self._loop.call_later(seconds, _expire, waiter)
                try:
                    await waiter
                finally:
                    self._waiter = None
                    timer.cancel()
        if len(self.buffer) == size:
            raise self._end_error()

    def _end_error(self) -> Exception:
        if self._error is not None:
            error = anyio.BrokenResourceError(f"the connection broke: {self._error}")
            error.__cause__ = self._error
            return error
        return anyio.EndOfStream()

    async def send(self, data: bytes, seconds: float | None) -> None:
        transport = self._transport
        if self._ended or transport is None or transport.is_closing():
            raise NotSent(f"the connection was closed before the request: {self._error}")
        transport.write(data)
        drain = self._drain
        if drain is not None:
            with anyio.fail_after(seconds):
                await asyncio.shield(drain)
            if self._ended:
                raise self._end_error()

    async def checkpoint_if_cancelled(self) -> None:
        # The backend's own check: anyio's front door looks the running library up first.
        await _asyncio_checkpoint_if_cancelled()

    def reusable(self, *, probe: bool = True) -> bool:
        # A connection belongs to the loop that opened it: one left in the pool by an
        # earlier ``asyncio.run()`` cannot be used (or properly closed) from another.
        if self.buffer or self._ended or self._loop is not running_asyncio_loop():
            return False
        if self._transport is None or not probe:
            return self._transport is not None
        # The loop may not have run the protocol's eof_received yet: ask the socket.
        return self._probe is not None and not self._probe.readable()

    async def aclose(self) -> None:
        self._ended = True
        transport = self._transport
        if transport is None:  # never opened, or already closed
            return
        if self._loop is not running_asyncio_loop():
            self._transport = None
            _close_orphan(transport)
            return
        if self._closed is None:
            self._closed = self._loop.create_future()
        transport.close()
        # The socket closes on a later loop iteration: wait for it, so that a closed pool
        # holds no file descriptor; a TLS peer that never answers the close is cut off.
        with anyio.CancelScope(shield=True):
            with anyio.move_on_after(_CLOSE_SECONDS):
                await asyncio.shield(self._closed)
            if self._transport is not None:
                self._transport.abort()


def _close_orphan(transport: asyncio.Transport) -> None:
    """Close the socket of a transport whose event loop is closed or elsewhere.

    ``abort()`` schedules the close on the transport's own loop, which fails on a closed
    one; the selector transports' ``_call_connection_lost`` closes the socket at once (it
    is what the scheduled callback would have run).
    """
    with contextlib.suppress(Exception):
        transport.abort()
    finish = getattr(transport, "_call_connection_lost", None)
    if finish is not None:
        with contextlib.suppress(Exception):
            finish(None)
        return
    sock = transport.get_extra_info("socket")  # not a selector transport: at least hang up
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


class StreamConn(Conn):
    """A connection on an anyio byte stream (TLS on trio, and the portable path)."""

    __slots__ = ("_loop", "_probe", "stream")

    def __init__(self, stream: anyio.abc.ByteStream) -> None:
        super().__init__()
        self.stream = stream
        # On asyncio (the portable path) a stream belongs to the loop that opened it.
        self._loop = running_asyncio_loop()
        sock = stream.extra(anyio.abc.SocketAttribute.raw_socket, None)
        self._probe = Probe(sock.fileno()) if sock is not None else None

    async def fill(self, seconds: float | None) -> None:
        try:
            if seconds is None:
                data = await self.stream.receive(_READ_SIZE)
            else:
                with anyio.fail_after(seconds):
                    data = await self.stream.receive(_READ_SIZE)
        except ConnectionError as exc:
            raise anyio.BrokenResourceError(f"the connection broke: {exc}") from exc
        self.buffer += data

    async def send(self, data: bytes, seconds: float | None) -> None:
        with anyio.fail_after(seconds):
            await self.stream.send(data)

    def reusable(self, *, probe: bool = True) -> bool:
        # An idle connection with anything to read (the server's EOF, or bytes nobody asked
        # for) cannot carry another request; asked of the socket without blocking.
        if self.buffer or self._loop is not running_asyncio_loop():
            return False
        return not probe or self._probe is None or not self._probe.readable()

    async def aclose(self) -> None:
        if self._loop is not running_asyncio_loop():  # opened by another (finished) loop
            transport = getattr(self.stream, "_transport", None)  # anyio's asyncio stream
            if transport is not None:
                _close_orphan(transport)
            return
        with anyio.CancelScope(shield=True):
            # Closing a broken socket may fail; there is nothing more to do with it.
            with contextlib.suppress(Exception):
                await self.stream.aclose()
