"""Callbacks: ``on_done``, ``CallbackHandler`` and ``track_usage``.

Callbacks are normalised once, when registered, into ``async`` callables, so the hot loop
never asks whether something is awaitable. With no handler registered the chain checks one
empty tuple per event and does nothing else. Every callback is isolated: an exception is
logged (with the traceback) and never breaks the chain or the next callback.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
import logging
import weakref
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from types import FunctionType
from typing import TYPE_CHECKING, Any, TypeVar

import anyio

from ._loops import spawn_detached
from .messages import Usage

if TYPE_CHECKING:
    from .messages import StreamChunk, ToolCall, ToolResult

__all__ = [
    "CallbackHandler",
    "DoneCallbacks",
    "Hooks",
    "UsageTracker",
    "add_global_handler",
    "global_handlers",
    "remove_global_handler",
    "retry_notifier",
    "track_usage",
]

logger = logging.getLogger("agentrt")

T = TypeVar("T")
AsyncCallback = Callable[..., Awaitable[Any]]

HOOK_NAMES = (
    "on_chain_start",
    "on_turn_start",
    "on_chunk",
    "on_turn_end",
    "on_tool_start",
    "on_tool_end",
    "on_tool_error",
    "on_chain_end",
    "on_error",
    "on_retry",
)

#: Handlers included in every chain and prompt made while they are registered.
_global_handlers: tuple[CallbackHandler, ...] = ()


def add_global_handler(handler: CallbackHandler) -> None:
    """Include ``handler`` in every chain and prompt of every model created from now on.

    Adding the same handler twice has no further effect. Used by integrations (tracing)
    that observe everything without being passed to each call.

    Raises:
        UsageError: ``handler`` is not a ``CallbackHandler``.
    """
    global _global_handlers
    if not isinstance(handler, CallbackHandler):
        from .errors import UsageError

        raise UsageError(f"add_global_handler() takes a CallbackHandler instance, got {handler!r}")
    if handler not in _global_handlers:
        _global_handlers = (*_global_handlers, handler)


def remove_global_handler(handler: CallbackHandler) -> None:
    """Stop including ``handler`` in chains and prompts created from now on (no error if absent)."""
    global _global_handlers
    _global_handlers = tuple(h for h in _global_handlers if h is not handler)


def global_handlers() -> tuple[CallbackHandler, ...]:
    """The handlers registered with :func:`add_global_handler`, in order."""
    return _global_handlers


def is_async_callable(cb: Any) -> bool:
    """Whether calling ``cb`` returns a coroutine (async functions, partials, objects)."""
    function = getattr(cb, "__func__", cb)  # a bound method: its function decides
    known = _ASYNC_FUNCTIONS.get(function) if isinstance(function, FunctionType) else None
    if known is not None:
        return known
    while isinstance(cb, functools.partial):
        cb = cb.func
    result = inspect.iscoroutinefunction(cb) or inspect.iscoroutinefunction(
        getattr(cb, "__call__", None)  # noqa: B004 - objects with an async __call__
    )
    if isinstance(function, FunctionType):
        _ASYNC_FUNCTIONS[function] = result
    return result


#: Functions already inspected: a chain with handlers looks up the same methods each time.
_ASYNC_FUNCTIONS: weakref.WeakKeyDictionary[FunctionType, bool] = weakref.WeakKeyDictionary()


def as_async(cb: Callable[..., Any]) -> AsyncCallback:
    """Normalise a sync or async callable into an async one (done once, at registration)."""
    if is_async_callable(cb):
        return cb

    async def call_sync(*args: Any) -> Any:
        return cb(*args)

    call_sync.__qualname__ = _name(cb)
    return call_sync


async def call_isolated(cb: AsyncCallback, *args: Any) -> None:
    """Await a callback; log and swallow its exception so nothing else is affected."""
    try:
        await cb(*args)
    except Exception:
        logger.exception("agentrt callback %s raised; continuing", _name(cb))


def _name(cb: Any) -> str:
    return getattr(cb, "__qualname__", None) or repr(cb)


class CallbackHandler:
    """Receives events of chains and turns; override any hook, as ``def`` or ``async def``.

    Hooks and their arguments:

    - ``on_chain_start(chain)`` / ``on_chain_end(chain)``
    - ``on_turn_start(response)`` / ``on_turn_end(response)``
    - ``on_chunk(response, chunk)``
    - ``on_tool_start(response, call)``
    - ``on_tool_end(response, call, result)`` / ``on_tool_error(response, call, result)``
      (``result.error`` holds the exception of a failed call)
    - ``on_error(owner, error)``: a chain or turn failed (owner is the chain or response)
    - ``on_retry(response, attempt, error, delay)``: the HTTP layer is about to wait
      ``delay`` seconds and send the request again (``attempt`` 1 is the first retry)
      after ``error``; called synchronously on the loop, so keep it quick (an
      ``async def`` hook is started as a task and not awaited)

    An exception raised by a hook is logged and ignored.
    """

    def on_chain_start(self, chain: Any) -> Any:
        """Handle the start of a chain."""

    def on_turn_start(self, response: Any) -> Any:
        """Handle the start of a model call."""

    def on_chunk(self, response: Any, chunk: StreamChunk) -> Any:
        """Handle a streamed piece of text."""

    def on_turn_end(self, response: Any) -> Any:
        """Handle the end of a model call, whatever its status."""

    def on_tool_start(self, response: Any, call: ToolCall) -> Any:
        """Handle the start of a tool call."""

    def on_tool_end(self, response: Any, call: ToolCall, result: ToolResult) -> Any:
        """Handle a tool call that succeeded."""

    def on_tool_error(self, response: Any, call: ToolCall, result: ToolResult) -> Any:
        """Handle a tool call that ended in an error result."""

    def on_chain_end(self, chain: Any) -> Any:
        """Handle the end of a chain, whatever its status."""

    def on_error(self, owner: Any, error: BaseException) -> Any:
        """Handle a failed chain or turn."""

    def on_retry(self, response: Any, attempt: int, error: BaseException, delay: float) -> Any:
        """Handle a request about to be retried after ``delay`` seconds."""


class Hooks:
    """The handlers' overridden hooks, each a tuple of async callables (empty when unused)."""

    __slots__ = (*HOOK_NAMES, "has_async", "retry_handlers")

    on_chain_start: tuple[AsyncCallback, ...]
    on_turn_start: tuple[AsyncCallback, ...]
    on_chunk: tuple[AsyncCallback, ...]
    on_turn_end: tuple[AsyncCallback, ...]
    on_tool_start: tuple[AsyncCallback, ...]
    on_tool_end: tuple[AsyncCallback, ...]
    on_tool_error: tuple[AsyncCallback, ...]
    on_chain_end: tuple[AsyncCallback, ...]
    on_error: tuple[AsyncCallback, ...]
    on_retry: tuple[AsyncCallback, ...]
    #: The ``on_retry`` methods as defined (called synchronously by the HTTP layer).
    retry_handlers: tuple[Callable[..., Any], ...]

    def __init__(self, handlers: Iterable[CallbackHandler] = (), on_chunk: Any = None) -> None:
        handlers = tuple(handlers)
        self.has_async = False
        self.retry_handlers = tuple(
            h.on_retry for h in handlers if type(h).on_retry is not CallbackHandler.on_retry
        )
        for name in HOOK_NAMES:
            found = []
            for handler in handlers:
                if not isinstance(handler, CallbackHandler):
                    raise TypeError(
                        f"callbacks=[...] takes CallbackHandler instances, got {handler!r}; "
                        "subclass agentrt.CallbackHandler and override its hooks"
                    )
                method = getattr(type(handler), name)
                if method is not getattr(CallbackHandler, name):
                    bound = getattr(handler, name)
                    self.has_async = self.has_async or is_async_callable(bound)
                    found.append(as_async(bound))
            setattr(self, name, tuple(found))
        if on_chunk is not None:
            # The ``on_chunk=`` argument takes the chunk only.
            cb = as_async(on_chunk)
            self.has_async = self.has_async or cb is on_chunk

            async def chunk_only(_response: Any, chunk: Any) -> None:
                await cb(chunk)

            self.on_chunk = (*self.on_chunk, chunk_only)

    @property
    def empty(self) -> bool:
        """Whether no hook is registered at all."""
        return not any(getattr(self, name) for name in HOOK_NAMES)

    def shield(self) -> AbstractContextManager[Any]:
        """A cancel scope shielding hooks that may await; nothing when all are sync.

        A sync hook never suspends, so cancellation cannot reach it: entering a scope for
        it would only cost time on every turn.
        """
        return anyio.CancelScope(shield=True) if self.has_async else _NO_SHIELD

    async def end(
        self, owner: Any, error: BaseException | None, end_hook: str, done: DoneCallbacks
    ) -> None:
        """Fire what ends a turn or chain, none of it cut short by cancellation.

        ``on_error`` (for an ``Exception``), then ``end_hook``, then the owner's ``on_done``
        callbacks.
        """
        failed = isinstance(error, Exception) and self.on_error
        if failed or getattr(self, end_hook):
            with self.shield():  # a scope only when a hook can await
                if failed:
                    await self.emit("on_error", owner, error)
                await self.emit(end_hook, owner)
        await done.run(owner)  # shields itself when it has callbacks

    async def emit(self, name: str, *args: Any) -> None:
        """Call every callback of hook ``name`` in order, isolated from each other."""
        for cb in getattr(self, name):
            await call_isolated(cb, *args)

    @classmethod
    def combine(cls, *groups: Iterable[CallbackHandler], on_chunk: Any = None) -> Hooks:
        """Build hooks from the global handlers and several lists (model first, then call)."""
        handlers = [*_global_handlers, *(h for group in groups for h in group)]
        if not handlers and on_chunk is None:
            return NO_HOOKS
        return cls(handlers, on_chunk)


NO_HOOKS = Hooks()


def retry_notifier(owner: Any, handlers: tuple[Callable[..., Any], ...]) -> Callable[..., None]:
    """A sync ``on_retry(attempt, error, delay)`` calling each handler with ``owner``.

    Each handler is isolated (an exception is logged); an async one is started as a task
    of the running loop.
    """

    def on_retry(attempt: int, error: BaseException, delay: float) -> None:
        for cb in handlers:
            _call_retry_hook(cb, owner, attempt, error, delay)

    return on_retry


def _call_retry_hook(cb: Callable[..., Any], *args: Any) -> None:
    try:
        result = cb(*args)
        if inspect.isawaitable(result):
            spawn_detached(_await_isolated, result, cb)
    except Exception:
        logger.exception("agentrt callback %s raised; continuing", _name(cb))


async def _await_isolated(awaitable: Awaitable[Any], cb: Any) -> None:
    try:
        await awaitable
    except Exception:
        logger.exception("agentrt callback %s raised; continuing", _name(cb))


_NO_SHIELD = contextlib.nullcontext()


class DoneCallbacks:
    """The ``on_done`` callbacks of one response or chain: run once, in order, isolated.

    The owner is passed to each call rather than stored, so that an owner and its
    callbacks form no reference cycle and a finished chain is freed by refcounting.
    """

    __slots__ = ("_callbacks", "_done", "_has_async")

    def __init__(self) -> None:
        self._callbacks: list[AsyncCallback] = []
        self._done = False
        self._has_async = False  # a sync callback never suspends: no shield needed

    def add(self, owner: Any, cb: Callable[..., Any]) -> None:
        """Register ``cb``; if ``owner`` already ended, run it now (sync) or start it (async)."""
        async_cb = as_async(cb)
        if not self._done:
            self._callbacks.append(async_cb)
            self._has_async = self._has_async or async_cb is cb
            return
        # Registered after the end: run at once.
        if async_cb is cb:
            _run_late_async(async_cb, owner)
        else:
            try:
                cb(owner)
            except Exception:
                logger.exception("agentrt on_done callback %s raised; continuing", _name(cb))

    async def run(self, owner: Any) -> None:
        """Run every callback once with ``owner``, shielded from cancellation."""
        if self._done:
            return
        self._done = True
        callbacks, self._callbacks = self._callbacks, []
        if not callbacks:
            return
        with anyio.CancelScope(shield=True) if self._has_async else _NO_SHIELD:
            for cb in callbacks:
                await call_isolated(cb, owner)


def _run_late_async(cb: AsyncCallback, target: Any) -> None:
    """Run an async callback registered after the end.

    Inside a running loop it starts as a task of that loop; from plain sync code it runs to
    completion in a fresh loop.
    """
    if not spawn_detached(call_isolated, cb, target):
        anyio.run(call_isolated, cb, target)


class UsageTracker:
    """Usage added up inside ``track_usage()``; also split per model in ``by_model``."""

    def __init__(self) -> None:
        self.usage = Usage()
        self.by_model: dict[str, Usage] = {}

    def add(self, model: str, usage: Usage) -> None:
        """Add one response's usage."""
        self.usage = self.usage + usage
        self.by_model[model] = self.by_model.get(model, Usage()) + usage

    @property
    def input_tokens(self) -> int:
        """Input tokens so far."""
        return self.usage.input_tokens

    @property
    def output_tokens(self) -> int:
        """Output tokens so far."""
        return self.usage.output_tokens

    @property
    def total_tokens(self) -> int:
        """Total tokens so far."""
        return self.usage.total_tokens

    def __repr__(self) -> str:
        return f"<UsageTracker {self.usage!r}>"


_trackers: contextvars.ContextVar[tuple[UsageTracker, ...]] = contextvars.ContextVar(
    "agentrt_usage_trackers", default=()
)


@contextmanager
def track_usage() -> Iterator[UsageTracker]:
    """Add up the usage of every response that finishes inside the block.

    Tasks started inside the block inherit it (contextvars); blocks nest, and an inner
    block's usage also counts in the outer one.
    """
    tracker = UsageTracker()
    token = _trackers.set((*_trackers.get(), tracker))
    try:
        yield tracker
    finally:
        _trackers.reset(token)


def record_usage(model: str, usage: Usage) -> None:
    """Add a finished response's usage to every active tracker of this context."""
    for tracker in _trackers.get():
        tracker.add(model, usage)
