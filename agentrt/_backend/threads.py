"""Running a sync tool in a worker thread, with a cheap hop on asyncio and on trio.

``anyio.to_thread.run_sync`` costs about 170 µs of CPU per call on a 2-core machine: two
extra event-loop iterations (a checkpoint, and the limiter's shielded checkpoint), two
cancel scopes and a ``queue.Queue`` built on a condition variable. A chain pays it for every
sync tool call. On asyncio, :func:`run_in_thread` does the same job for about half that:

* the caller's ``CapacityLimiter`` (or anyio's per-loop default of 40) is taken without a
  checkpoint when a token is free, and given back when the thread is done: an abandoned
  call keeps its token until its thread finishes, as on trio, so the threads running tools
  never outnumber the limiter's tokens;
* agentrt's process-wide pool of daemon worker threads (:mod:`.pool`) runs it;
* the call runs in a copy of the caller's contextvars, as anyio's workers do, and the
  worker registers the event loop with anyio so ``anyio.from_thread.run`` /
  ``run_sync`` / ``check_cancelled`` work inside the tool.

On trio the same pool serves :func:`.trio_threads.run_in_trio_thread` (for the trio
versions it is tested with). If anyio's or trio's worker-thread registry ever moves, or
``AGENTRT_PORTABLE=1``, it is ``anyio.to_thread.run_sync``. Either way a cancelled call is
abandoned: its thread finishes in the background, holding its token, and the result is
dropped (Python cannot stop a thread).
"""

from __future__ import annotations

import asyncio
import contextvars
import math
import threading
from collections.abc import Callable
from typing import Any

import anyio
import anyio.from_thread
import anyio.to_thread

from .loops import running_asyncio_loop
from .pool import IDLE_SECONDS, Pool, current_pool
from .trio_threads import FAST_TRIO_THREADS, run_in_trio_thread
from .version import FAST_THREADS

try:  # anyio's registry of worker threads, for anyio.from_thread inside tools
    from anyio._backends._asyncio import AsyncIOBackend
    from anyio._backends._asyncio import CancelScope as AsyncIOCancelScope
    from anyio._core._eventloop import set_current_async_library, threadlocals
    from anyio.lowlevel import EventLoopToken
except ImportError:  # anyio < 4.12 (or a future one that moved them): anyio's own pool
    _FAST = False
else:
    _FAST = FAST_THREADS

__all__ = ["IDLE_SECONDS", "run_in_thread"]


def _run_job(
    pool: Pool,
    loop: asyncio.AbstractEventLoop,
    future: asyncio.Future[Any],
    context: contextvars.Context,
    fn: Callable[[], Any],
    scope: Any,
    limiter: anyio.CapacityLimiter,
    borrower: object,
) -> tuple[Callable[..., None], tuple[Any, ...]]:
    result: Any = None
    error: BaseException | None = None
    if not future.cancelled():  # abandoned before it started: do not run it at all
        threadlocals.current_token = EventLoopToken(AsyncIOBackend, loop)
        threadlocals.current_cancel_scope = scope
        try:
            result = context.run(fn)
        except BaseException as exc:
            error = exc
        finally:
            del threadlocals.current_token, threadlocals.current_cancel_scope
    pool.ready()
    return _report, (loop, future, result, error, limiter, borrower)


def _report(
    loop: asyncio.AbstractEventLoop,
    future: asyncio.Future[Any],
    result: Any,
    error: BaseException | None,
    limiter: anyio.CapacityLimiter,
    borrower: object,
) -> None:
    try:
        loop.call_soon_threadsafe(_finish, future, result, error, limiter, borrower)
    except RuntimeError:  # the loop is closed: nobody is waiting any more
        pass


def _finish(
    future: asyncio.Future[Any],
    result: Any,
    error: BaseException | None,
    limiter: anyio.CapacityLimiter,
    borrower: object,
) -> None:
    # The token is held until the thread is done, even by an abandoned call.
    limiter.release_on_behalf_of(borrower)
    if future.cancelled():
        return
    if error is None:
        future.set_result(result)
    elif isinstance(error, StopIteration):  # cannot travel through a future
        wrapped = RuntimeError("the sync tool raised StopIteration")
        wrapped.__cause__ = error
        future.set_exception(wrapped)
    else:
        future.set_exception(error)


async def run_in_thread(fn: Callable[[], Any], *, limiter: anyio.CapacityLimiter | None) -> Any:
    """Run ``fn()`` in a worker thread under ``limiter`` and return its result.

    Args:
        fn: the call, arguments bound.
        limiter: bounds the threads running at once; ``None`` is anyio's per-loop default.
    """
    loop = running_asyncio_loop()
    if loop is None:  # trio: its threads keep their token until they finish
        if FAST_TRIO_THREADS:
            return await run_in_trio_thread(fn, limiter)
        return await anyio.to_thread.run_sync(fn, limiter=limiter, abandon_on_cancel=True)
    if not _FAST:
        return await _run_portable(fn, limiter)
    # A call whose scope is already cancelled must not start (a full checkpoint would cost
    # an event-loop iteration per call). The backend is called directly: going through
    # anyio's front door looks the running library up again on every call.
    await AsyncIOBackend.checkpoint_if_cancelled()
    if limiter is None:
        limiter = AsyncIOBackend.current_default_thread_limiter()
    borrower = object()  # one per call: an abandoned call keeps its token, not the task
    try:
        limiter.acquire_on_behalf_of_nowait(borrower)
    except anyio.WouldBlock:
        await limiter.acquire_on_behalf_of(borrower)
    future: asyncio.Future[Any] = loop.create_future()
    # A real anyio cancel scope is the worker's scope, as in anyio's own pool:
    # ``from_thread.check_cancelled`` walks it and its parents, and ``from_thread.run``
    # adds the task it starts to it, so cancelling the caller cancels that task too.
    with AsyncIOCancelScope() as scope:
        try:
            context = contextvars.copy_context()
            context.run(set_current_async_library, None)
            current_pool().submit((_run_job, loop, future, context, fn, scope, limiter, borrower))
        except BaseException:
            limiter.release_on_behalf_of(borrower)
            raise
        return await future


async def _run_portable(fn: Callable[[], Any], limiter: anyio.CapacityLimiter | None) -> Any:
    """``anyio.to_thread.run_sync`` on asyncio, with an abandoned call keeping its token.

    anyio's asyncio pool gives the token back when the caller is cancelled, although the
    thread still runs; so the caller's limiter is held here, on behalf of the call, and
    the thread gives it back (through the loop) when it is done. A call dropped before
    its thread started gives it back at once.
    """
    if limiter is None:
        limiter = anyio.to_thread.current_default_thread_limiter()
    borrower = object()
    await limiter.acquire_on_behalf_of(borrower)
    state = threading.Lock()
    phase = ["queued"]  # -> "running" (the thread took it) or "dropped" (the caller left)

    def release() -> None:
        limiter.release_on_behalf_of(borrower)

    def job() -> Any:
        with state:
            if phase[0] == "dropped":
                return None
            phase[0] = "running"
        try:
            return fn()
        finally:
            try:
                anyio.from_thread.run_sync(release)
            except Exception:  # the loop is gone: nobody waits any more
                pass

    try:
        return await anyio.to_thread.run_sync(
            job, limiter=anyio.CapacityLimiter(math.inf), abandon_on_cancel=True
        )
    except BaseException:
        with state:
            dropped = phase[0] == "queued"
            phase[0] = "dropped" if dropped else phase[0]
        if dropped:
            release()
        raise
