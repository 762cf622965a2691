"""What the transport needs of a connection, whatever the event loop.

:class:`Conn` is the interface (a byte buffer the socket fills, ``send``, ``reusable``,
``aclose``); :mod:`.conn` has the asyncio and anyio-stream kinds, :mod:`.trio_conn` the
trio one. All raise the same exceptions: ``anyio.EndOfStream`` when the peer closed the
connection cleanly and nothing more arrived, ``anyio.BrokenResourceError`` when it broke
(:class:`NotSent` when it was found closed before any byte of a request was written), and
``TimeoutError`` when nothing arrived within the read timeout.
"""

from __future__ import annotations

import select

import anyio
import anyio.lowlevel

__all__ = ["Conn", "NotSent", "Probe"]


class NotSent(anyio.BrokenResourceError):
    """The connection was found closed before any byte of the data was written."""


class Conn:
    """What the transport needs of a connection (the shared part of both kinds)."""

    __slots__ = ("buffer", "idle_since")

    def __init__(self) -> None:
        #: Bytes received and not consumed yet; readers consume from the front.
        self.buffer = bytearray()
        self.idle_since = 0.0

    async def fill(self, seconds: float | None) -> None:
        """Wait until at least one more byte is appended to ``buffer``.

        ``seconds`` bounds the wait (``None``: no bound); then ``TimeoutError``.
        """
        raise NotImplementedError

    async def send(self, data: bytes, seconds: float | None) -> None:
        """Send ``data`` whole."""
        raise NotImplementedError

    def reusable(self, *, probe: bool = True) -> bool:
        """Whether an idle keep-alive connection can carry another request.

        ``probe=False`` skips asking the socket (a system call): enough when the
        connection goes back to the pool, since it is probed again when taken out.
        """
        return not self.buffer

    async def checkpoint_if_cancelled(self) -> None:
        """Let a cancelled scope take effect here (buffered data is read without waiting)."""
        await anyio.lowlevel.checkpoint_if_cancelled()

    async def aclose(self) -> None:
        """Close the connection; never raises."""
        raise NotImplementedError


class Probe:
    """Asks one socket, without blocking, whether it has something to read.

    The peer's EOF or stray bytes make an idle connection unusable. One ``poll`` object
    per connection, registered once (not ``select.select``: it fails on descriptors above
    1023); it holds no descriptor of its own.
    """

    __slots__ = ("_poller",)

    def __init__(self, fd: int) -> None:
        self._poller = select.poll()
        self._poller.register(fd, select.POLLIN)

    def readable(self) -> bool:
        """Whether the socket has something to read (or is closed under us)."""
        try:
            return bool(self._poller.poll(0))
        except (OSError, ValueError):
            return True
