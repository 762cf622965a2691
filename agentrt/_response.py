"""One model call: stream its events, assemble text and tool calls, fire its callbacks.

A response runs lazily, the first time it is iterated or awaited. Whatever way it ends
(completed, failed, cancelled, or abandoned by its consumer), its usage is recorded, its
``on_turn_end`` hook and ``on_done`` callbacks run exactly once, shielded from
cancellation, before the exception (if any) reaches the caller.
"""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import aclosing
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from .callbacks import NO_HOOKS, DoneCallbacks, Hooks, record_usage, retry_notifier
from .errors import UsageError
from .messages import (
    FinishEvent,
    FinishReason,
    Message,
    ProviderDataEvent,
    StreamChunk,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    ToolResult,
    TurnRequest,
    Usage,
    UsageEvent,
)
from .output import OUTPUT_TOOL_NAME, judge_prompt

if TYPE_CHECKING:
    from .output import OutputRun
    from .providers.base import Provider

__all__ = ["AsyncResponse", "Status", "ToolCallAssembler", "parse_arguments", "run_to_end"]

#: Whether ``TurnRequest`` has the ``on_retry`` field the HTTP layer calls before a retry.
_REQUEST_HAS_ON_RETRY = any(f.name == "on_retry" for f in dataclasses.fields(TurnRequest))

Status = Literal["pending", "running", "completed", "failed", "cancelled"]
C = TypeVar("C", bound=Callable[..., Any])


async def run_to_end(owner: Any, what: str) -> None:
    """Run a pending response or chain to its end; re-raise the error of a failed one.

    Raises:
        UsageError: it is being streamed by another consumer right now.
    """
    if owner.status == "pending":
        # chunks=False: nobody reads them, so they are only made for ``on_chunk`` hooks.
        async with aclosing(owner._run(chunks=False)) as run:
            async for _ in run:
                pass
    elif owner.status == "running":
        raise UsageError(f"this {what} is already being streamed; await it afterwards")
    elif owner.status == "failed" and owner.error is not None:
        raise owner.error


class LazyId:
    """A unique hex id, made the first time it is read (most never are)."""

    def __get__(self, owner: Any, kind: type | None = None) -> str:
        made: str | None = owner.__dict__.get("_id")
        if made is None:
            made = owner.__dict__["_id"] = uuid.uuid4().hex
        return made


def parse_arguments(raw: str) -> dict[str, Any] | None:
    """Parse a tool call's raw arguments: ``{}`` when empty, ``None`` unless a JSON object.

    ``NaN``, ``Infinity`` and numbers too large for a float are not JSON: Python's parser
    accepts them, but a history holding them could not be sent to a provider again.
    """
    if not raw or raw.isspace():
        return {}
    try:
        value = _arguments_decoder.decode(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _finite_float(text: str) -> float:
    value = float(text)
    if value - value != 0.0:  # inf - inf is nan
        raise ValueError(f"number out of range: {text}")
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


# Made once: json.loads with these options would build a decoder on every call.
_arguments_decoder = json.JSONDecoder(parse_float=_finite_float, parse_constant=_no_constant)


class ToolCallAssembler:
    """Collects ``ToolCallDelta`` fragments into complete tool calls, grouped by index."""

    __slots__ = ("_calls",)

    def __init__(self) -> None:
        self._calls: dict[int, list[Any]] = {}

    def add(self, delta: ToolCallDelta) -> None:
        """Add one fragment; ``id`` and ``name`` are taken from the first fragment with them."""
        entry = self._calls.get(delta.index)
        if entry is None:
            entry = self._calls[delta.index] = [delta.id, delta.name, []]
        else:
            if delta.id and not entry[0]:
                entry[0] = delta.id
            if delta.name and not entry[1]:
                entry[1] = delta.name
        if delta.arguments:
            entry[2].append(delta.arguments)

    def calls(self) -> list[ToolCall]:
        """Return the assembled calls in index order, synthesising missing ids."""
        result = []
        for index in sorted(self._calls):
            call_id, name, parts = self._calls[index]
            raw = "".join(parts)
            result.append(
                ToolCall(
                    id=call_id or f"call_{uuid.uuid4().hex[:24]}",
                    name=name or "",
                    arguments=parse_arguments(raw),
                    raw_arguments=raw,
                )
            )
        return result


class AsyncResponse:
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
        self.usage: Usage | None = None
        self.finish_reason: FinishReason | None = None
        self.raw_finish_reason: str | None = None
        self.tool_results: list[ToolResult] = []
        self.provider_data: dict[str, Any] | None = None
        self.started_at: float | None = None
        self.duration: float | None = None
        self.time_to_first_chunk: float | None = None
        self._provider = provider
        self._stream = stream
        self._hooks = hooks
        self._text_parts: list[str] = []
        self._tool_calls: list[ToolCall] = []
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

    # --- consuming -------------------------------------------------------------------

    async def __aiter__(self) -> AsyncIterator[StreamChunk]:
        """Stream the turn's text; after it ended, yield its whole text as one chunk."""
        if self.status == "pending":
            async with aclosing(self._run()) as run:
                async for chunk in run:
                    yield chunk
        elif self.status == "running":
            raise UsageError("this response is already being streamed by another consumer")
        else:
            text = self.text_so_far
            if text or self.finish_reason:
                yield StreamChunk(content=text, finish_reason=self.finish_reason, turn=self.turn)

    async def _consume(self) -> None:
        await run_to_end(self, "response")

    async def text(self) -> str:
        """Run the turn if needed and return its whole text."""
        await self._consume()
        return self.text_so_far

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
        await self._consume()
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

    async def tool_calls(self) -> list[ToolCall]:
        """Run the turn if needed and return the tool calls the model asked for."""
        await self._consume()
        return list(self._tool_calls)

    @property
    def text_so_far(self) -> str:
        """The text received so far (all of it once the turn ended)."""
        return "".join(self._text_parts)

    @property
    def message(self) -> Message:
        """The assistant message this turn adds to the conversation."""
        return Message(
            role="assistant",
            content=self.text_so_far,
            tool_calls=list(self._tool_calls),
            provider_data=self.provider_data,
        )

    def on_done(self, cb: C) -> C:
        """Call ``cb(response)`` once when this turn ends (at once if it already has).

        Returns:
            ``cb``, so this also works as a decorator.
        """
        self._done.add(self, cb)
        return cb

    # --- running ---------------------------------------------------------------------

    async def _run(self, *, chunks: bool = True) -> AsyncGenerator[StreamChunk, None]:
        """Run the turn, yielding its chunks (none when ``chunks`` is false)."""
        self.status = "running"
        hooks = self._hooks
        started = time.perf_counter()
        self.started_at = time.time()
        if hooks.retry_handlers and _REQUEST_HAS_ON_RETRY:
            self.request.on_retry = retry_notifier(self, hooks.retry_handlers)  # type: ignore[attr-defined]
        if hooks.on_turn_start:
            await hooks.emit("on_turn_start", self)
        assembler = ToolCallAssembler()
        turn = self.turn
        partial = self._output.partial() if self._output is not None else None
        final_index: int | None = None  # the final-result tool call's index (tool mode)
        ended_with: BaseException | None = None
        try:
            events = self._provider.turn(self.request, stream=self._stream)
            async with aclosing(events):  # type: ignore[type-var]
                async for event in events:
                    kind = type(event)
                    if kind is TextDelta:
                        text = event.text  # type: ignore[union-attr]
                        if not text:
                            continue
                        if not self._text_parts:
                            self.time_to_first_chunk = time.perf_counter() - started
                        self._text_parts.append(text)
                        if chunks or hooks.on_chunk:
                            chunk = StreamChunk(content=text, turn=turn)
                            if partial is not None and self.output_mode != "tool":
                                chunk.partial_output = partial.feed(text)
                            if hooks.on_chunk:
                                await hooks.emit("on_chunk", self, chunk)
                            if chunks:
                                yield chunk
                    elif kind is ToolCallDelta:
                        assembler.add(event)  # type: ignore[arg-type]
                        if partial is not None and self.output_mode == "tool":
                            if event.name == OUTPUT_TOOL_NAME:  # type: ignore[union-attr]
                                final_index = event.index  # type: ignore[union-attr]
                            if (
                                event.index == final_index  # type: ignore[union-attr]
                                and event.arguments  # type: ignore[union-attr]
                                and (chunks or hooks.on_chunk)
                            ):
                                chunk = StreamChunk(
                                    content="",
                                    turn=turn,
                                    partial_output=partial.feed(event.arguments),  # type: ignore[union-attr]
                                )
                                if hooks.on_chunk:
                                    await hooks.emit("on_chunk", self, chunk)
                                if chunks:
                                    yield chunk
                    elif kind is UsageEvent:
                        self.usage = event.usage  # type: ignore[union-attr]
                    elif kind is FinishEvent:
                        self.raw_finish_reason = event.raw_reason  # type: ignore[union-attr]
                        self.finish_reason = event.reason  # type: ignore[union-attr]
                    elif kind is ProviderDataEvent:
                        self.provider_data = {**(self.provider_data or {}), **event.data}  # type: ignore[union-attr]
            self._tool_calls = assembler.calls()
            self.finish_reason = _normalise_finish(self.finish_reason, bool(self._tool_calls))
            self.status = "completed"
            if chunks or hooks.on_chunk:
                final = StreamChunk(content="", finish_reason=self.finish_reason, turn=turn)
                if partial is not None:
                    final.partial_output = partial.value
                if hooks.on_chunk:
                    await hooks.emit("on_chunk", self, final)
                if chunks:
                    yield final
        except BaseException as exc:
            ended_with = exc
            if isinstance(exc, Exception):
                self.status, self.error = "failed", exc
            else:  # cancellation, an abandoned generator, KeyboardInterrupt
                self.status = "cancelled"
                self.error = exc if not isinstance(exc, GeneratorExit) else None
            raise
        finally:
            self.duration = time.perf_counter() - started
            await self._finish(ended_with)

    async def _finish(self, error: BaseException | None) -> None:
        if self.usage is not None:
            record_usage(self.model, self.usage)
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


def _normalise_finish(reason: FinishReason | None, has_calls: bool) -> FinishReason:
    if has_calls and reason in (None, "stop"):
        return "tool_calls"
    if reason is None:
        return "stop"
    return reason
