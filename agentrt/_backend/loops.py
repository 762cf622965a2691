"""Which event loop, if any, runs in this thread, and scheduling onto it.

anyio no longer depends on sniffio, so agentrt asks asyncio and trio directly.
"""

from __future__ import annotations

import asyncio
import contextvars
import sys
from collections.abc import Callable, Coroutine
from typing import Any

__all__ = ["running_asyncio_loop", "running_loop_library", "spawn_detached"]

_detached: set[Any] = set()


def running_asyncio_loop() -> asyncio.AbstractEventLoop | None:
    """The asyncio event loop running in this thread, or ``None`` (none, or trio)."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def running_loop_library() -> str | None:
    """Return ``"asyncio"`` or ``"trio"`` when called from a thread running that loop."""
    if running_asyncio_loop() is not None:
        return "asyncio"
    trio = sys.modules.get("trio")
    if trio is not None:
        try:
            trio.lowlevel.current_task()
        except RuntimeError:
            return None
        return "trio"
    return None


def spawn_detached(fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> bool:
    """Start ``fn(*args)`` as a task of the running loop that nobody awaits.

    Used only for an async ``on_done`` callback registered after its owner ended: it must
    start at once, and a sync method cannot await it. Returns ``False`` outside a loop.
    """
    library = running_loop_library()
    context = contextvars.copy_context()
    if library == "asyncio":
        # The new task copies the current context, so the caller's contextvars are visible.
        task: asyncio.Task[Any] = asyncio.get_running_loop().create_task(fn(*args))
        _detached.add(task)
        task.add_done_callback(_detached.discard)
        return True
    if library == "trio":
        import trio

        trio.lowlevel.spawn_system_task(fn, *args, context=context)
        return True
    return False
