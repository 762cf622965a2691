"""Everything loop-specific of agentrt, behind one seam.

The only package of agentrt that imports ``asyncio``, or anyio's and trio's private
modules (ruff's banned-API rule, TID251, enforces it): the connections (:mod:`.connbase`
the interface, :mod:`.conn` the asyncio protocol and anyio-stream kinds, :mod:`.trio_conn`
the trio socket one, :mod:`.connect` the happy-eyeballs connect they share), the worker
pool (:mod:`.pool`) with its cheap hops (:mod:`.threads` on asyncio, :mod:`.trio_threads`
on trio) and the loop lookup (:mod:`.loops`). The fast paths are on only for the anyio
and trio versions they are tested with and unless ``AGENTRT_PORTABLE=1``
(:mod:`.version`); otherwise the portable path runs: anyio streams and
``anyio.to_thread``.
"""

from __future__ import annotations

from .conn import HIGH_WATER, Conn, NotSent, ProtocolConn, StreamConn, open_conn
from .loops import running_asyncio_loop, running_loop_library, spawn_detached
from .pool import IDLE_SECONDS
from .threads import run_in_thread
from .version import ANYIO_VERSION, FAST_CONN, FAST_THREADS, PORTABLE

__all__ = [
    "ANYIO_VERSION",
    "FAST_CONN",
    "FAST_THREADS",
    "HIGH_WATER",
    "IDLE_SECONDS",
    "PORTABLE",
    "Conn",
    "NotSent",
    "ProtocolConn",
    "StreamConn",
    "open_conn",
    "run_in_thread",
    "running_asyncio_loop",
    "running_loop_library",
    "spawn_detached",
]
