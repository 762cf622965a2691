"""One model call: stream its events, assemble text and tool calls, fire its callbacks.

A response runs lazily, the first time it is iterated or awaited. Whatever way it ends
(completed, failed, cancelled, or abandoned by its consumer), its usage is recorded, its
``on_turn_end`` hook and ``on_done`` callbacks run exactly once, shielded from
cancellation, before the exception (if any) reaches the caller.
"""

from __future__ import annotations

import time
import uuid
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import aclosing
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar

from ._turn import ToolCallAssembler, TurnState, parse_arguments
from .callbacks import NO_HOOKS, DoneCallbacks, Hooks, record_usage, retry_notifier
from .errors import CancelChain, UsageError
from .messages import (
    FinishReason,
    Message,
    StreamChunk,
    ToolCall,
    ToolCallDelta,
    ToolResult,
    TurnRequest,
    Usage,
)
from .output import OUTPUT_TOOL_NAME, judge_prompt

if TYPE_CHECKING:
    from .output import OutputRun
    from .providers.base import Provider

__all__ = [
    "AsyncResponse",
    "Lifecycle",
    "Status",
    "ToolCallAssembler",
    "parse_arguments",
    "run_to_end",
]

#: Whether ``TurnRequest`` has the ``on_retry`` field the HTTP layer calls before a retry.

Status = Literal["pending", "running", "completed", "failed", "cancelled"]
C = TypeVar("C", bound=Callable[..., Any])


class LazyId:
    """A unique hex id, made the first time it is read (most never are)."""

    def __get__(self, owner: Any, kind: type | None = None) -> str:
        made: str | None = owner.__dict__.get("_id")
        if made is None:
            made = owner.__dict__["_id"] = uuid.uuid4().hex
        return made


class Lifecycle:
    """What a response and a chain share: status, ``on_done``, consuming, and how they end.

    A subclass implements ``_run(chunks=...)`` (an async generator that runs it once and
    calls :meth:`_ended` with what ended it) and ``_replay()`` (its chunks after it ended).

    Attributes:
        status: ``"pending"``, ``"running"``, then ``"completed"``, ``"failed"`` or
            ``"cancelled"``.
        error: the exception that failed or cancelled it (``None`` when it completed, or
            when its consumer stopped early).
    """

    #: ``"response"`` or ``"chain"``, for messages.
    _what: ClassVar[str]
    status: Status
    error: BaseException | None
    _done: DoneCallbacks

    def _run(self, *, chunks: bool = True) -> AsyncGenerator[StreamChunk, None]:
        raise NotImplementedError

    def _replay(self) -> AsyncIterator[StreamChunk]:
        raise NotImplementedError

    async def __aiter__(self) -> AsyncIterator[StreamChunk]:
        """Run and stream it; refuse a second consumer while it runs; replay once ended."""
        if self.status == "pending":
            # aclosing: a consumer that stops early ends the run now, not at garbage collection.
            async with aclosing(self._run()) as run:
                async for chunk in run:
                    yield chunk
        elif self.status == "running":
            raise UsageError(f"this {self._what} is already being streamed by another consumer")
        else:
            async for chunk in self._replay():
                yield chunk

    async def _run_to_end(self) -> None:
        """Run it if pending; re-raise the error of a failed one.

        Raises:
            UsageError: it is being streamed by another consumer right now.
        """
        status = self.status
        if status == "pending":
            await self._run_quietly()
        elif status == "running":
            raise UsageError(
                f"this {self._what} is already being streamed by another consumer; "
                "read its result once that consumer is done"
            )
        elif status == "failed" and self.error is not None:
            raise self.error

    async def _run_quietly(self) -> None:
        """Run it once with nobody reading its chunks (they are made for ``on_chunk`` only)."""
        async with aclosing(self._run(chunks=False)) as run:
            async for _ in run:
                pass

    def _ended(self, exc: BaseException) -> None:
        """Record how it ended: ``CancelChain`` and cancellation cancel, an error fails."""
        if isinstance(exc, CancelChain):
            self.status, self.error = "cancelled", exc
        elif isinstance(exc, Exception):
            self.status, self.error = "failed", exc
        else:  # cancellation, an abandoned generator, KeyboardInterrupt
            self.status = "cancelled"
            self.error = None if isinstance(exc, GeneratorExit) else exc

    def on_done(self, cb: C) -> C:
        """Call ``cb(self)`` once when it ends (at once if it already has).

        Returns:
            ``cb``, so this also works as a decorator.
        """
        self._done.add(self, cb)
        return cb


async def run_to_end(owner: Lifecycle, what: str = "") -> None:
    """Run a pending response or chain to its end; re-raise the error of a failed one."""
    await owner._run_to_end()


class AsyncResponse(Lifecycle):
    """The result of one model call (one turn).

    Iterate it for :class:`StreamChunk` objects, or ``await response.text()``.

    Attributes:
        id: a unique id of this response.
        model: the model id, e.g. ``"openai:gpt-4.1-mini"``.
        turn: the 0-based turn number within its chain.
        chain: the chain this turn belongs to, or ``None`` for ``model.prompt()`` (held
            weakly: also ``None`` once nothing else holds the chain).
        status: ``"pending"``, ``"running"``, then ``"completed"``, ``"failed"`` or
            ``"cancelled"``.
        error: the exception of a failed or cancelled turn.
        usage: the provider's token counts, ``None`` when it reported none.
        finish_reason: ``"stop"``, ``"tool_calls"``, ``"length"`` or ``"content_filter"``.
        raw_finish_reason: the provider's own value.
        tool_results: results of this turn's tool calls once a chain ran them.
    """

    _what = "response"

    def __init__(
        self,
        provider: Provider,
        request: TurnRequest,
        *,
        model: str,
        stream: bool = True,
        hooks: Hooks,
        turn: int = 0,
        chain: Any = None,
        output: OutputRun | None = None,
    ) -> None:
        self.model = model
        self.request = request
        self.turn = turn
        # Held weakly: the chain holds its responses, and a link back as strong would make
        # every finished chain cyclic garbage instead of being freed by refcounting.
        self._chain = weakref.ref(chain) if chain is not None else None
        self.status: Status = "pending"
        self.error: BaseException | None = None
        self.tool_results: list[ToolResult] = []
        self.started_at: float | None = None
        self.duration: float | None = None
        self.time_to_first_chunk: float | None = None
        self._provider = provider
        self._stream = stream
        self._hooks = hooks
        self._state = TurnState()
        self._done = DoneCallbacks()
        #: The output contract (``output_type=``): its own for ``model.prompt()``, the
        #: chain's for a chain's turn.
        self._output = output
        #: The resolved output mode (``"native"``, ``"tool"``, ``"prompted"``), or ``None``.
        self.output_mode: str | None = output.mode if output is not None else None
        #: What this turn's answer came to: ``("value", v)`` or ``("error", exc)``.
        self._outcome: tuple[str, Any] | None = None

    id = LazyId()

    @property
    def chain(self) -> Any:
        """The chain this turn belongs to; ``None`` for ``model.prompt()``.

        The response refers to its chain weakly: it is also ``None`` once nothing else
        holds the chain.
        """
        return self._chain() if self._chain is not None else None

    # --- what the events added up to ---------------------------------------------------

    @property
    def usage(self) -> Usage | None:
        """The provider's token counts, ``None`` when it reported none."""
        return self._state.usage

    @property
    def finish_reason(self) -> FinishReason | None:
        """``"stop"``, ``"tool_calls"``, ``"length"`` or ``"content_filter"``."""
        return self._state.finish_reason

    @property
    def raw_finish_reason(self) -> str | None:
        """The provider's own finish reason."""
        return self._state.raw_finish_reason

    @property
    def provider_data(self) -> dict[str, Any] | None:
        """Provider-specific fields of this turn (kept on its assistant message)."""
        return self._state.provider_data

    @property
    def truncated(self) -> bool:
        """Whether the answer was cut by the token limit (``finish_reason == "length"``)."""
        return self._state.finish_reason == "length"

    @property
    def _tool_calls(self) -> list[ToolCall]:
        return self._state.tool_calls

    @property
    def text_so_far(self) -> str:
        """The text received so far (all of it once the turn ended)."""
        return "".join(self._state.text_parts)

    @property
    def message(self) -> Message:
        """The assistant message this turn adds to the conversation."""
        return self._state.message()

    # --- consuming -------------------------------------------------------------------

    async def _replay(self) -> AsyncIterator[StreamChunk]:
        """After the turn ended: its whole text as one chunk."""
        text = self.text_so_far
        if text or self.finish_reason:
            yield StreamChunk(content=text, finish_reason=self.finish_reason, turn=self.turn)

    async def text(self) -> str:
        """Run the turn if needed and return its whole text."""
        await self._run_to_end()
        return self.text_so_far

    async def tool_calls(self) -> list[ToolCall]:
        """Run the turn if needed and return the tool calls the model asked for."""
        await self._run_to_end()
        return list(self._state.tool_calls)

    async def output(self) -> Any:
        """Run the turn if needed and return its validated output.

        Without ``output_type=`` this is the turn's text. In a chain, the turn whose
        answer the chain accepted returns the chain's value, and a turn whose answer
        failed validation raises its error.

        Raises:
            OutputValidationError: the answer did not validate (``prompt()`` does not
                retry: use ``chain()`` for retries).
            OutputRefusedError: the model refused.
            UsageError: the turn was cancelled before it ended.
        """
        await self._run_to_end()
        if self._output is None:
            return self.text_so_far
        if self.status != "completed":
            raise UsageError(
                "this turn was cancelled before the model gave its output "
                "(response.status == 'cancelled'); there is no value to return"
            )
        if self._outcome is None:
            self._outcome = judge_prompt(self._output, self)
        kind, value = self._outcome
        if kind == "error":
            raise value
        return value

    # --- running ---------------------------------------------------------------------

    async def _begin(self) -> float:
        """Mark the turn running and fire ``on_turn_start``; return its start time."""
        self.status = "running"
        hooks = self._hooks
        started = time.perf_counter()
        self.started_at = time.time()
        if hooks.retry_handlers:
            self.request.on_retry = retry_notifier(self, hooks.retry_handlers)
        if hooks.on_turn_start:
            await hooks.emit("on_turn_start", self)
        return started

    async def _run_quietly(self) -> None:
        """Run the turn when nobody reads its chunks: a chain's turn, ``await text()``.

        Without ``on_chunk`` hooks no chunk is made at all, so the events are folded in a
        plain coroutine (one async generator fewer per turn than :meth:`_run`).
        """
        if self._hooks.on_chunk:
            await super()._run_quietly()
            return
        started = await self._begin()
        state = self._state
        feed = state.feed
        ended_with: BaseException | None = None
        try:
            events = self._provider.turn(self.request, stream=self._stream)
            async with aclosing(events):  # type: ignore[type-var]
                async for event in events:
                    if feed(event) is not None and self.time_to_first_chunk is None:
                        self.time_to_first_chunk = time.perf_counter() - started
            state.finish()
            self.status = "completed"
        except BaseException as exc:
            ended_with = exc
            self._ended(exc)
            raise
        finally:
            self.duration = time.perf_counter() - started
            await self._finish(ended_with)

    async def _run(self, *, chunks: bool = True) -> AsyncGenerator[StreamChunk, None]:
        """Run the turn, yielding its chunks (none when ``chunks`` is false)."""
        hooks = self._hooks
        started = await self._begin()
        state = self._state
        feed = state.feed
        turn = self.turn
        ended_with: BaseException | None = None
        partial = self._output.partial() if self._output is not None else None
        text_partial = partial is not None and self.output_mode != "tool"
        tool_partial = partial is not None and self.output_mode == "tool"
        final_index: int | None = None  # the final-result tool call's index (tool mode)
        try:
            events = self._provider.turn(self.request, stream=self._stream)
            async with aclosing(events):  # type: ignore[type-var]
                async for event in events:
                    text = feed(event)
                    if text is None:
                        if tool_partial and type(event) is ToolCallDelta:
                            # The final-result tool's arguments are the output, streaming.
                            if event.name == OUTPUT_TOOL_NAME:
                                final_index = event.index
                            if event.index == final_index and event.arguments:
                                value = partial.feed(event.arguments)  # type: ignore[union-attr]
                                if chunks or hooks.on_chunk:
                                    chunk = StreamChunk(content="", turn=turn, partial_output=value)
                                    if hooks.on_chunk:
                                        await hooks.emit("on_chunk", self, chunk)
                                    if chunks:
                                        yield chunk
                        continue
                    if self.time_to_first_chunk is None:
                        self.time_to_first_chunk = time.perf_counter() - started
                    if chunks or hooks.on_chunk:
                        chunk = StreamChunk(content=text, turn=turn)
                        if text_partial:
                            chunk.partial_output = partial.feed(text)  # type: ignore[union-attr]
                        if hooks.on_chunk:
                            await hooks.emit("on_chunk", self, chunk)
                        if chunks:
                            yield chunk
            state.finish()
            self.status = "completed"
            if chunks or hooks.on_chunk:
                final = StreamChunk(content="", finish_reason=state.finish_reason, turn=turn)
                if partial is not None:
                    final.partial_output = partial.final()
                if hooks.on_chunk:
                    await hooks.emit("on_chunk", self, final)
                if chunks:
                    yield final
        except BaseException as exc:
            ended_with = exc
            self._ended(exc)
            raise
        finally:
            self.duration = time.perf_counter() - started
            await self._finish(ended_with)

    async def _finish(self, error: BaseException | None) -> None:
        usage = self._state.usage
        if usage is not None:
            record_usage(self.model, usage)
        await self._hooks.end(self, error, "on_turn_end", self._done)

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled (e.g. inside a ChainLimitError sent to another process) as a finished
        # copy: its results, without the provider, hooks or chain it ran with.
        state = {k: v for k, v in self.__dict__.items() if k not in _UNPICKLED}
        request = self.request
        state["request"] = TurnRequest(
            list(request.messages), request.system, list(request.tools), dict(request.options)
        )
        return (_detached_response, (state,))

    def __repr__(self) -> str:
        return f"<AsyncResponse {self.model} turn={self.turn} status={self.status}>"


_UNPICKLED = frozenset({"_provider", "_hooks", "_chain", "_done", "request"})


def _detached_response(state: dict[str, Any]) -> AsyncResponse:
    response = AsyncResponse.__new__(AsyncResponse)
    response.__dict__.update(state)
    response._provider = None  # type: ignore[assignment]
    response._hooks = NO_HOOKS
    response._chain = None
    done = response._done = DoneCallbacks()
    done._done = True  # it ended before it was pickled
    return response
