"""trio's and anyio's private worker-thread registries, for :mod:`.trio_threads`.

Imported only on trio, once the first sync tool runs there; an ImportError (a trio or
anyio that moved them) turns the hop off and ``anyio.to_thread`` is used instead.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from typing import Any

import outcome
from anyio._backends._trio import TrioBackend
from anyio._core._eventloop import set_current_async_library, threadlocals
from anyio.lowlevel import EventLoopToken
from trio._threads import PARENT_TASK_DATA

__all__ = ["new_context", "run_registered"]


def new_context() -> contextvars.Context:
    """A copy of the caller's contextvars in which no async library is running."""
    context = contextvars.copy_context()
    context.run(set_current_async_library, None)
    return context


def run_registered(
    token: Any,
    task_register: list[Any],
    cancel_register: list[Callable[[], Any] | None],
    context: contextvars.Context,
    fn: Callable[[], Any],
) -> outcome.Outcome[Any]:
    """Run ``fn`` in ``context`` as a thread of trio's ``to_thread`` (abandoned on cancel)."""
    PARENT_TASK_DATA.token = token
    PARENT_TASK_DATA.abandon_on_cancel = True
    PARENT_TASK_DATA.cancel_register = cancel_register
    PARENT_TASK_DATA.task_register = task_register
    threadlocals.current_token = EventLoopToken(TrioBackend, token)
    try:
        return outcome.Value(context.run(fn))
    except StopIteration as exc:  # cannot travel through a coroutine
        wrapped = RuntimeError("the sync tool raised StopIteration")
        wrapped.__cause__ = exc
        return outcome.Error(wrapped)
    except BaseException as exc:
        return outcome.Error(exc)
    finally:
        del PARENT_TASK_DATA.token, PARENT_TASK_DATA.abandon_on_cancel
        del PARENT_TASK_DATA.cancel_register, PARENT_TASK_DATA.task_register
        del threadlocals.current_token
