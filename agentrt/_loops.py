"""Where the loop lookup lived: now :mod:`agentrt._backend` (kept for existing imports)."""

from __future__ import annotations

from ._backend import running_asyncio_loop, running_loop_library, spawn_detached

__all__ = ["running_asyncio_loop", "running_loop_library", "spawn_detached"]
