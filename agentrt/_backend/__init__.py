"""Everything asyncio-specific of agentrt, behind one seam.

The only package of agentrt that imports ``asyncio`` or anyio's private modules (ruff's
banned-API rule, TID251, enforces it): the asyncio protocol connection
(:mod:`.conn`), the worker-thread pool with its cheap hop (:mod:`.threads`) and the loop
lookup (:mod:`.loops`). The fast paths are on only for the anyio versions they are
tested with and unless ``AGENTRT_PORTABLE=1`` (:mod:`.version`); otherwise, and on trio,
the portable path runs: anyio streams and ``anyio.to_thread``.
"""

from __future__ import annotations

from .conn import HIGH_WATER, Conn, NotSent, ProtocolConn, StreamConn, open_conn
from .loops import running_asyncio_loop, running_loop_library, spawn_detached
from .threads import IDLE_SECONDS, run_in_thread
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
