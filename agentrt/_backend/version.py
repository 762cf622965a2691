"""Whether the fast paths are on: a tested anyio version, and not forced off.

The asyncio fast paths reach into anyio's private asyncio backend, so each is enabled only
for the anyio versions it is tested with (checked here, at import); the trio thread hop
checks its trio versions the same way (:mod:`.trio_threads`). ``AGENTRT_PORTABLE=1`` in the
environment forces the portable path (anyio streams and ``anyio.to_thread``) on asyncio
and on trio.
"""

from __future__ import annotations

import os
from importlib import metadata

__all__ = [
    "ANYIO_VERSION",
    "FAST_CONN",
    "FAST_THREADS",
    "PORTABLE",
    "TESTED_CONN_ANYIO",
    "TESTED_THREADS_ANYIO",
    "installed_version",
]

#: anyio versions (``[low, high)``) the asyncio protocol connection is tested with.
TESTED_CONN_ANYIO = ((4, 16), (5, 0))
#: anyio versions the thread hop (anyio's worker-thread registry) is tested with.
TESTED_THREADS_ANYIO = ((4, 16), (5, 0))


def installed_version(distribution: str) -> tuple[int, int] | None:
    """``(major, minor)`` of an installed distribution, read without importing it."""
    try:
        text = metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None
    parts = [int(p) if p.isdigit() else 0 for p in text.split(".")[:2]]
    return (parts[0], parts[1] if len(parts) > 1 else 0)


ANYIO_VERSION = installed_version("anyio") or (0, 0)
#: ``AGENTRT_PORTABLE=1`` (or true/yes): no fast path at all.
PORTABLE = os.environ.get("AGENTRT_PORTABLE", "").strip().lower() not in ("", "0", "false", "no")
FAST_CONN = not PORTABLE and TESTED_CONN_ANYIO[0] <= ANYIO_VERSION < TESTED_CONN_ANYIO[1]
FAST_THREADS = not PORTABLE and TESTED_THREADS_ANYIO[0] <= ANYIO_VERSION < TESTED_THREADS_ANYIO[1]
