"""The sync facade: thin wrappers that run the async core through a blocking portal.

Each :class:`Model` owns one event loop in a daemon thread (started on first use) and a
``BlockingPortal`` into it, so a long-lived HTTP client and open streams live on one loop.
Every call runs in a copy of the caller's contextvars. No chain logic lives here.

Calling the sync API from inside a running event loop, or from inside a sync tool, would
block or deadlock; it raises :class:`~agentrt.errors.UsageError` instead.
"""

from __future__ import annotations

import contextvars
import threading
import types
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Generator, Iterable, Iterator
from concurrent.futures import Future
from typing import Any, Generic, TypeVar

import anyio
from anyio.from_thread import BlockingPortal

from ._backend import running_loop_library
from ._chain import DEFAULT_MAX_TOOL_OUTPUT, AsyncChain, PromptType
from ._execute import in_sync_tool
from ._model import CHAIN_SETTINGS, AsyncConversation, AsyncModel, ToolErrors, get_async_model
from ._response import AsyncResponse
from .callbacks import CallbackHandler, is_async_callable
from .errors import UsageError
from .messages import Message, StreamChunk, ToolCall
from .output import OutputMode

__all__ = ["Chain", "Conversation", "Model", "Response", "get_model"]

T = TypeVar("T")
C = TypeVar("C", bound=Callable[..., Any])
W = TypeVar("W", AsyncResponse, AsyncChain)

_END = object()


def check_sync_allowed() -> None:
    """Refuse a blocking call where it would block a loop or deadlock.

    Raises:
        UsageError: called from a thread running an event loop, or from a sync tool.
    """
    library = running_loop_library()
    if library is not None:
        raise UsageError(
            f"agentrt's sync API was called from inside a running {library} event loop, "
            "where it would block the loop: use get_async_model() and await it instead"
        )
    if in_sync_tool.get():
        raise UsageError(
            "agentrt's sync API was called from inside a sync tool, which runs in a worker "
            "thread of a chain and could deadlock it: make the tool async and use "
            "get_async_model()"
        )


@types.coroutine
def _drive(ctx: contextvars.Context, coro: Coroutine[Any, Any, T]) -> Generator[Any, Any, T]:
    # Runs each step of ``coro`` inside ``ctx``: the caller's contextvars are visible to
    # the async core, and what it sets persists across steps.
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            if error is not None:
                step, error = ctx.run(coro.throw, error), None
            else:
                step = ctx.run(coro.send, value)
        except StopIteration as stop:
            result: T = stop.value
            return result
        try:
            value = yield step
        except BaseException as exc:
            error, value = exc, None


async def _in_context(ctx: contextvars.Context, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
    return await _drive(ctx, ctx.run(fn, *args))  # type: ignore[arg-type]


async def _next_or_end(iterator: Any) -> Any:
    try:
        return await iterator.__anext__()
    except StopAsyncIteration:
        return _END


#: How long an interrupted call waits for a task it could not be sure was spawned.
_SPAWN_WAIT = 1.0


class _Call:
    """One blocking call's link to its task: its cancel scope, and whether it ended.

    ``ended`` is a plain lock, held until the task has ended: the caller blocks acquiring
    it. Not a ``threading.Event`` nor ``Future.result()``: both wait on a condition
    variable, and a Ctrl-C landing while one re-takes its lock can leave the caller
    blocked for good; a plain lock's acquire is interrupted cleanly.
    """

    __slots__ = ("cancelled", "ended", "scope")

    def __init__(self) -> None:
        self.cancelled = False
        self.scope: anyio.CancelScope | None = None
        self.ended = threading.Lock()
        self.ended.acquire()


class _LoopThread:
    """An event loop in a daemon thread, reached through a blocking portal."""

    def __init__(self) -> None:
        ready = threading.Event()
        self.portal: BlockingPortal | None = None

        async def serve() -> None:
            async with BlockingPortal() as portal:
                self.portal = portal
                ready.set()
                await portal.sleep_until_stopped()

        # A daemon thread: an unclosed model must not keep the interpreter alive at exit.
        self.thread = threading.Thread(
            target=anyio.run, args=(serve,), name="agentrt-sync-loop", daemon=True
        )
        self.thread.start()
        ready.wait()

    def call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        check_sync_allowed()
        return self._call(contextvars.copy_context(), fn, *args)

    def _call(self, ctx: contextvars.Context, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run ``fn(*args)`` on the loop; an interrupt here cancels it there.

        Ctrl-C (``KeyboardInterrupt``) reaches the thread blocked here, not the loop: the
        call is cancelled on the loop exactly as an async caller's cancellation would,
        and this returns only once it has ended (its shielded callbacks included), then
        re-raises the interrupt.
        """
        assert self.portal is not None
        portal = self.portal
        call = _Call()

        async def run() -> T:
            try:
                with anyio.CancelScope() as scope:
                    call.scope = scope
                    if call.cancelled:  # interrupted before this task started
                        scope.cancel()
                    return await _in_context(ctx, fn, *args)
                raise anyio.get_cancelled_exc_class()  # cancelled before it ran
            finally:
                call.ended.release()

        future: Future[T] | None = None
        waited = False
        try:
            future = portal.start_task_soon(run)
            call.ended.acquire()
            waited = True
            return future.result()  # resolved right after the task ended
        except BaseException:
            if not waited:
                call.cancelled = True
                scope = call.scope
                if scope is not None:
                    portal.call(scope.cancel)
                # Wait for the call to end (a second Ctrl-C interrupts this). When the
                # interrupt came before the task was spawned, it may never run: bounded.
                call.ended.acquire(timeout=-1 if future is not None else _SPAWN_WAIT)
            raise

    def iterate(self, aiterable: Any) -> Iterator[Any]:
        check_sync_allowed()
        ctx = contextvars.copy_context()
        iterator = aiterable.__aiter__()
        finished = False
        try:
            while True:
                item = self._call(ctx, _next_or_end, iterator)
                if item is _END:
                    finished = True
                    return
                yield item
        finally:
            if not finished:
                # The caller stopped early (or was interrupted, which already cancelled
                # the pending step): close the stream so the turn ends (cancelled).
                self._call(ctx, iterator.aclose)

    def stop(self, *, wait: bool = True) -> None:
        """Stop the loop, cancelling what still runs on it (nothing should).

        Args:
            wait: wait for the thread to end; a model collected without ``close()``
                does not, since garbage collection may run anywhere.
        """
        if threading.current_thread() is self.thread:
            # Collected on its own loop (from a callback): cannot block here. The daemon
            # thread ends with the interpreter.
            return
        if self.portal is None or not self.thread.is_alive():
            return
        try:
            stopping = self.portal.start_task_soon(self.portal.stop, True)
        except RuntimeError:  # the portal already stopped
            return
        if wait:
            stopping.result()
            self.thread.join(timeout=5)


class _Wrapper(Generic[W]):
    """Shared passthrough: attributes not defined here come from the async object."""

    _inner: W

    def __init__(self, model: Model, inner: W) -> None:
        self._model = model
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def __iter__(self) -> Iterator[StreamChunk]:
        return self._model._loop().iterate(self._inner)

    def on_done(self, cb: C) -> C:
        """Call ``cb`` with this object once it ends (at once if it already has)."""
        if is_async_callable(cb):

            async def adapted_async(_inner: object) -> None:
                await cb(self)

            self._inner.on_done(adapted_async)
        else:
            self._inner.on_done(lambda _inner: cb(self))
        return cb

    def __repr__(self) -> str:
        return f"<{type(self).__name__} of {self._inner!r}>"


class Response(_Wrapper[AsyncResponse]):
    """The sync form of :class:`~agentrt.AsyncResponse`; same attributes."""

    def text(self) -> str:
        """Run the turn if needed and return its text."""
        return self._model._loop().call(self._inner.text)

    def tool_calls(self) -> list[ToolCall]:
        """Run the turn if needed and return its tool calls."""
        return self._model._loop().call(self._inner.tool_calls)

    def output(self) -> Any:
        """Run the turn if needed and return its validated output (else its text)."""
        return self._model._loop().call(self._inner.output)


class Chain(_Wrapper[AsyncChain]):
    """The sync form of :class:`~agentrt.AsyncChain`; same attributes."""

    def text(self) -> str:
        """Run the chain if needed and return its final answer (the last turn's text)."""
        return self._model._loop().call(self._inner.text)

    def output(self) -> Any:
        """Run the chain if needed and return its validated output (else the final text)."""
        return self._model._loop().call(self._inner.output)

    @property
    def responses(self) -> list[Response]:
        """The response of each turn so far."""
        return [Response(self._model, r) for r in self._inner.responses]


class Conversation:
    """The sync form of :class:`~agentrt.AsyncConversation`."""

    def __init__(self, model: Model, inner: AsyncConversation) -> None:
        self._model = model
        self._inner = inner

    @property
    def id(self) -> str:
        """The conversation's id."""
        return self._inner.id

    @property
    def messages(self) -> list[Message]:
        """The history so far."""
        return self._inner.messages

    def chain(self, prompt: PromptType, **kwargs: Any) -> Chain:
        """Continue the conversation with a chain (arguments of :meth:`Model.chain`)."""
        return Chain(self._model, self._inner._chain(prompt, kwargs, prefer_sync=True))

    def prompt(self, prompt: PromptType, **kwargs: Any) -> Response:
        """Continue the conversation with one turn (arguments of :meth:`Model.prompt`)."""
        return Response(self._model, self._inner.prompt(prompt, **kwargs))


class Model:
    """The sync facade over an :class:`~agentrt.AsyncModel`; create it with :func:`get_model`.

    Sync chains call the sync implementation of dual tools. Close with ``close()`` or
    ``with``.
    """

    def __init__(self, async_model: AsyncModel) -> None:
        self.async_model = async_model
        self._thread: _LoopThread | None = None
        self._lock = threading.Lock()

    @property
    def model_id(self) -> str:
        """The model id, e.g. ``"offline:default"``."""
        return self.async_model.model_id

    def _loop(self) -> _LoopThread:
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = _LoopThread()
                    weakref.finalize(self, self._thread.stop, wait=False)
        return self._thread

    def prompt(
        self,
        prompt: PromptType,
        *,
        system: str | None = None,
        tools: Iterable[Any] = (),
        on_chunk: Callable[[StreamChunk], Any] | None = None,
        callbacks: Iterable[CallbackHandler] = (),
        stream: bool | None = None,
        history: list[Message] | None = None,
        output_type: Any = None,
        output_mode: OutputMode = "auto",
        tool_choice: str | None = None,
        parallel_tool_calls: bool | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        top_p: float | None = None,
        stop: str | list[str] | None = None,
        extra_body: dict[str, Any] | None = None,
        extra_headers: dict[str, str] | None = None,
        **generation: Any,
    ) -> Response:
        """Run one turn (lazily); the arguments of :meth:`AsyncModel.prompt`."""
        return Response(
            self,
            self.async_model.prompt(
                prompt,
                system=system,
                tools=tools,
                on_chunk=on_chunk,
                callbacks=callbacks,
                stream=stream,
                history=history,
                output_type=output_type,
                output_mode=output_mode,
                tool_choice=tool_choice,
                parallel_tool_calls=parallel_tool_calls,
                temperature=temperature,
                max_tokens=max_tokens,
                top_p=top_p,
                stop=stop,
                extra_body=extra_body,
                extra_headers=extra_headers,
                **generation,
            ),
        )

    def chain(
        self,
        prompt: PromptType,
        *,
        system: str | None = None,
        tools: Iterable[Any] = (),
        max_turns: int = 10,
        before_call: Callable[..., Any] | None = None,
        after_call: Callable[..., Any] | None = None,
        on_chunk: Callable[[StreamChunk], Any] | None = None,
        callbacks: Iterable[CallbackHandler] = (),
        limiter: anyio.CapacityLimiter | None = None,
        stream: bool | None = None,
        max_tool_output: int | None = DEFAULT_MAX_TOOL_OUTPUT,
        tool_errors: ToolErrors = "model",
        name: str | None = None,
        output_type: Any = None,
        output_mode: OutputMode = "auto",
        output_retries: int = 2,
        tool_choice: str | None = None,
        parallel_tool_calls: bool | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        top_p: float | None = None,
        stop: str | list[str] | None = None,
        extra_body: dict[str, Any] | None = None,
        extra_headers: dict[str, str] | None = None,
        **generation: Any,
    ) -> Chain:
        """Run a chain (lazily); the arguments of :meth:`AsyncModel.chain`."""
        settings = {k: v for k, v in locals().items() if k in CHAIN_SETTINGS}
        return Chain(self, self.async_model._chain(prompt, settings, generation, prefer_sync=True))

    def conversation(self, *, system: str | None = None) -> Conversation:
        """Start a conversation that keeps its history."""
        return Conversation(self, self.async_model.conversation(system=system))

    def close(self) -> None:
        """Close the model's network resources and stop its loop thread."""
        if self._thread is not None:
            self._thread.call(self.async_model.aclose)
            self._thread.stop()
            self._thread = None

    def __enter__(self) -> Model:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Model {self.model_id}>"


def get_model(
    model_id: str | AsyncModel,
    *,
    api_key: str | None = None,
    base_url: str | None = None,
    timeout: Any = 60.0,
    max_retries: int = 2,
    retry: Any = None,
    http_client: Any = None,
    limits: Any = None,
    stream: bool = True,
    callbacks: Iterable[CallbackHandler] = (),
    temperature: float | None = None,
    max_tokens: int | None = None,
    top_p: float | None = None,
    stop: str | list[str] | None = None,
    extra_body: dict[str, Any] | None = None,
    extra_headers: dict[str, str] | None = None,
    **generation: Any,
) -> Model:
    """Return the sync facade of :func:`~agentrt.get_async_model` (same arguments)."""
    return Model(
        get_async_model(
            model_id,
            api_key=api_key,
            base_url=base_url,
            timeout=timeout,
            max_retries=max_retries,
            retry=retry,
            http_client=http_client,
            limits=limits,
            stream=stream,
            callbacks=callbacks,
            temperature=temperature,
            max_tokens=max_tokens,
            top_p=top_p,
            stop=stop,
            extra_body=extra_body,
            extra_headers=extra_headers,
            **generation,
        )
    )
