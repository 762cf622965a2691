"""A plain TCP connection on trio, driven by the socket itself.

anyio's stream on trio wraps trio's ``SocketStream``: every read and write is a conflict
check, a cancellation checkpoint and a schedule point, and agentrt adds a cancel scope
(``anyio.fail_after``, a generator-based context manager) around each for its timeout.
Here a read first asks the non-blocking socket; only when nothing is there does it park in
``trio.lowlevel.wait_readable``, under a ``trio.CancelScope`` deadline. A write is
``socket.send`` until the kernel takes it all. A read that found data waiting still yields
once (``trio.lowlevel.checkpoint``), so a fast stream cannot hold the loop and every read
is a point where other tasks run and cancellation takes effect.

Only public trio API: ``wait_readable``/``wait_writable``, ``notify_closing``, cancel
scopes. TLS on trio stays on anyio's stream (trio's ``SSLStream``).
"""

from __future__ import annotations

import errno
import os
import socket
from typing import Any

import anyio

from .connbase import Conn, NotSent, Probe
from .connect import connect_socket
from .loops import running_asyncio_loop

__all__ = ["TrioConn", "open_trio_conn"]

_READ_SIZE = 65536
#: What a send on a socket the peer has closed raises before any byte was taken.
_GONE = (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN, errno.ESHUTDOWN)


async def open_trio_conn(host: str, port: int) -> TrioConn:
    """Open a plain TCP connection from a trio task; the caller bounds the time it may take."""
    import trio

    return TrioConn(await connect_socket(host, port, trio.socket.getaddrinfo, _connect), trio)


async def _connect(sock: socket.socket, address: Any) -> None:
    """Connect the non-blocking ``sock`` to ``address``, waiting on trio."""
    import trio

    try:
        sock.connect(address)
    except BlockingIOError:
        pass
    else:  # connected at once (loopback can)
        await trio.lowlevel.checkpoint()
        return
    await trio.lowlevel.wait_writable(sock)
    code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if code:
        raise OSError(code, f"{os.strerror(code)} (connecting to {address[0]}:{address[1]})")


class TrioConn(Conn):
    """A connection on a raw non-blocking socket, waiting through trio's I/O manager."""

    __slots__ = ("_closed", "_lowlevel", "_probe", "_sent", "_sock", "_trio")

    def __init__(self, sock: socket.socket, trio: Any) -> None:
        super().__init__()
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock = sock
        self._probe = Probe(sock.fileno())
        self._trio = trio  # the module, looked up once
        self._lowlevel = trio.lowlevel
        self._closed = False
        #: A request was just written: its answer cannot be there yet, so the first read
        #: waits at once instead of asking the socket for nothing.
        self._sent = False

    async def _wait(self, wait: Any, seconds: float | None) -> None:
        if seconds is None:
            await wait(self._sock)
            return
        trio = self._trio
        with trio.CancelScope(deadline=trio.current_time() + seconds) as scope:
            await wait(self._sock)
        if scope.cancelled_caught:
            raise TimeoutError

    async def fill(self, seconds: float | None) -> None:
        if self._closed:
            raise anyio.BrokenResourceError("the connection is closed")
        if self._sent:
            self._sent = False
            data = None
        else:
            data = self._recv()
        if data is None:
            while data is None:
                await self._wait(self._lowlevel.wait_readable, seconds)
                data = self._recv()
        else:  # waiting already: still a point where other tasks run, as any read is
            await self._lowlevel.checkpoint()
        if not data:
            raise anyio.EndOfStream
        self.buffer += data

    def _recv(self) -> bytes | None:
        """What the socket has now (``b""`` at its end), or ``None`` when nothing yet."""
        try:
            return self._sock.recv(_READ_SIZE)
        except BlockingIOError:
            return None
        except OSError as exc:
            raise anyio.BrokenResourceError(f"the connection broke: {exc}") from exc

    async def send(self, data: bytes, seconds: float | None) -> None:
        if self._closed:
            raise NotSent("the connection was closed before the request")
        view = memoryview(data)
        sent = 0
        while True:
            sent += self._send_some(view[sent:], sent)
            if sent == len(view):
                self._sent = True
                return
            await self._wait(self._lowlevel.wait_writable, seconds)

    def _send_some(self, view: memoryview, sent_before: int) -> int:
        """What the kernel takes of ``view`` now (0 when its buffer is full)."""
        try:
            return self._sock.send(view)
        except BlockingIOError:
            return 0
        except OSError as exc:
            if sent_before == 0 and exc.errno in _GONE:
                raise NotSent(f"the connection was closed before the request: {exc}") from exc
            raise anyio.BrokenResourceError(f"the connection broke: {exc}") from exc

    async def checkpoint_if_cancelled(self) -> None:
        await self._lowlevel.checkpoint_if_cancelled()

    def reusable(self, *, probe: bool = True) -> bool:
        # Only from trio (any run: a raw socket belongs to no run), never from asyncio.
        if self.buffer or self._closed or running_asyncio_loop() is not None:
            return False
        return not probe or not self._probe.readable()

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._lowlevel.notify_closing(self._sock)
        except RuntimeError:  # not inside a trio run (closed by a finished one's pool)
            pass
        self._sock.close()
