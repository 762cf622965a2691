"""The cheap thread hop on trio: agentrt's worker pool instead of ``trio.to_thread``.

``anyio.to_thread.run_sync`` on trio costs about 52 µs of CPU per call on the 2-core
development machine (anyio's wrapper, then trio's: a placeholder object and thread name
per call, the active-thread count, the limiter's checkpoint). This hop costs about 38:

* the caller's limiter token is taken without a checkpoint when one is free, and given
  back when the thread is done, as everywhere in agentrt;
* the call goes to agentrt's pool (:mod:`.pool`); the task parks in
  ``trio.lowlevel.wait_task_rescheduled`` and the worker reschedules it through the run's
  ``TrioToken``;
* the worker thread is registered with trio (as ``trio.to_thread.run_sync(...,
  abandon_on_cancel=True)`` does) and with anyio, so ``trio.from_thread.run`` /
  ``check_cancelled`` and ``anyio.from_thread.run`` / ``run_sync`` / ``check_cancelled``
  work inside the tool, and the call runs in a copy of the caller's contextvars.

That registration is trio's private ``PARENT_TASK_DATA``, so the hop is on only for the trio
versions it is tested with (:data:`TESTED_TRIO`, checked without importing trio) and
unless ``AGENTRT_PORTABLE=1``. A cancelled call is abandoned: its thread finishes in the
background, holding its token, and the result is dropped.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from typing import Any

import anyio

from .pool import Pool, current_pool
from .version import PORTABLE, installed_version

__all__ = ["FAST_TRIO_THREADS", "TESTED_TRIO", "run_in_trio_thread"]

#: trio versions (``[low, high)``) the hop is tested with.
TESTED_TRIO = ((0, 35), (0, 36))


_TRIO_VERSION = installed_version("trio")
#: Whether :func:`run_in_trio_thread` is used on trio.
FAST_TRIO_THREADS = (
    not PORTABLE and _TRIO_VERSION is not None and TESTED_TRIO[0] <= _TRIO_VERSION < TESTED_TRIO[1]
)

_RaiseCancel = Callable[[], Any]
_loaded: list[Any] = []


def _private() -> Any:
    """The module of private registries, or ``None`` when it cannot be imported."""
    if not _loaded:
        try:
            from . import _trio_private
        except ImportError:  # pragma: no cover - a trio or anyio that moved them
            _loaded.append(None)
        else:
            _loaded.append(_trio_private)
    return _loaded[0]


async def run_in_trio_thread(fn: Callable[[], Any], limiter: anyio.CapacityLimiter | None) -> Any:
    """Run ``fn()`` in one of agentrt's worker threads, from a trio task.

    Args:
        fn: the call, arguments bound.
        limiter: bounds the threads running at once; ``None`` is anyio's default one.
    """
    import trio

    private = _private()
    if private is None:  # a trio or anyio that moved its registries
        return await anyio.to_thread.run_sync(fn, limiter=limiter, abandon_on_cancel=True)
    await trio.lowlevel.checkpoint_if_cancelled()
    if limiter is None:
        limiter = anyio.to_thread.current_default_thread_limiter()
    borrower = object()  # one per call: an abandoned call keeps its token, not the task
    try:
        limiter.acquire_on_behalf_of_nowait(borrower)
    except anyio.WouldBlock:
        await limiter.acquire_on_behalf_of(borrower)
    task_register: list[Any] = [trio.lowlevel.current_task()]
    cancel_register: list[_RaiseCancel | None] = [None]
    token = trio.lowlevel.current_trio_token()
    try:
        context = private.new_context()
        current_pool().submit(
            (_run_job, token, task_register, cancel_register, context, fn, limiter, borrower)
        )
    except BaseException:
        limiter.release_on_behalf_of(borrower)
        raise

    def abort(raise_cancel: _RaiseCancel) -> Any:
        cancel_register[0] = raise_cancel  # trio.from_thread.check_cancelled sees it
        task_register[0] = None  # abandoned: the result is dropped
        return trio.lowlevel.Abort.SUCCEEDED

    return await trio.lowlevel.wait_task_rescheduled(abort)


def _run_job(
    pool: Pool,
    token: Any,
    task_register: list[Any],
    cancel_register: list[_RaiseCancel | None],
    context: contextvars.Context,
    fn: Callable[[], Any],
    limiter: anyio.CapacityLimiter,
    borrower: object,
) -> tuple[Callable[..., None], tuple[Any, ...]]:
    result = None
    if task_register[0] is not None:  # abandoned before it started: do not run it at all
        private = _private()
        assert private is not None  # checked before the job was submitted
        result = private.run_registered(token, task_register, cancel_register, context, fn)
    pool.ready()
    return _report, (token, task_register, result, limiter, borrower)


def _report(
    token: Any, task_register: list[Any], result: Any, limiter: Any, borrower: object
) -> None:
    import trio

    try:
        token.run_sync_soon(_deliver, task_register, result, limiter, borrower)
    except trio.RunFinishedError:  # the run is over: nobody is waiting any more
        pass


def _deliver(task_register: list[Any], result: Any, limiter: Any, borrower: object) -> None:
    import trio

    # The token is held until the thread is done, even by an abandoned call.
    limiter.release_on_behalf_of(borrower)
    task = task_register[0]
    if task is not None:
        trio.lowlevel.reschedule(task, result)
