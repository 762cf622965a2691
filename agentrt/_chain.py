"""The chain loop: call the model, run the tools it asks for, feed results back, repeat.

The decisions (what the prompt becomes, what history a finished or cancelled turn leaves)
are plain functions, testable without an event loop; ``AsyncChain`` only drives them.
History stays valid whatever happens: every tool call in it gets a result, a synthetic
"cancelled" one when the chain ended before the call finished.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Sequence
from contextlib import aclosing
from typing import TYPE_CHECKING, Any, TypeVar

import anyio

from ._execute import ToolRunner
from ._response import AsyncResponse, LazyId, Status, run_to_end
from .callbacks import DoneCallbacks, Hooks, as_async
from .errors import CancelChain, ChainLimitError, UsageError
from .messages import Message, StreamChunk, ToolCall, ToolResult, TurnRequest, Usage

if TYPE_CHECKING:
    from ._model import AsyncModel

__all__ = [
    "DEFAULT_MAX_TOOL_OUTPUT",
    "AsyncChain",
    "PromptType",
    "cancelled_results",
    "prompt_messages",
    "tool_messages",
]

C = TypeVar("C", bound=Callable[..., Any])
PromptType = str | Sequence[Message | dict[str, Any]]

#: Tool results longer than this many characters are cut, with a marker saying so.
DEFAULT_MAX_TOOL_OUTPUT = 100_000


def prompt_messages(prompt: PromptType) -> list[Message]:
    """Turn a prompt (a string, or a list of messages or dicts) into messages.

    Raises:
        UsageError: the prompt is empty or not of a supported type.
    """
    if isinstance(prompt, str):
        return [Message(role="user", content=prompt)]
    if isinstance(prompt, Sequence) and not isinstance(prompt, (bytes, bytearray)):
        messages = [m if isinstance(m, Message) else Message.model_validate(m) for m in prompt]
        if messages:
            return messages
    raise UsageError(
        f"prompt must be a string or a non-empty list of Message objects, got {prompt!r}"
    )


def tool_messages(results: Iterable[ToolResult]) -> list[Message]:
    """The ``tool`` messages that answer a turn's calls, in the calls' order."""
    return [
        Message(
            role="tool",
            content=r.content,
            tool_call_id=r.tool_call_id,
            name=r.name,
            is_error=r.is_error,
        )
        for r in results
    ]


def cancelled_results(
    calls: Iterable[ToolCall], finished: Sequence[ToolResult | None] = ()
) -> list[ToolResult]:
    """Results for a turn cut short, so history stays valid.

    A call keeps its own result when ``finished`` (indexed like ``calls``) holds one; the
    others get a synthetic "cancelled" error result.
    """
    results = []
    for index, c in enumerate(calls):
        done = finished[index] if index < len(finished) else None
        if done is not None and done.tool_call_id == c.id:
            results.append(done)
            continue
        results.append(
            ToolResult(
                tool_call_id=c.id,
                name=c.name,
                content="Error: the tool call was cancelled before it finished",
                is_error=True,
            )
        )
    return results


def limit_message(max_turns: int) -> str:
    """The ``ChainLimitError`` message."""
    return (
        f"the chain reached max_turns={max_turns} while the model still asked for tools; "
        "pass a larger max_turns= or look at error.responses"
    )


class AsyncChain:
    """Turns until the model answers without tool calls.

    Iterate it for the streamed text of every turn, or ``await chain.text()``.

    Attributes:
        id: a unique id of this chain.
        model: the model id.
        messages: the whole conversation, growing as the chain runs.
        responses: the :class:`AsyncResponse` of each turn so far.
        status: ``"pending"``, ``"running"``, then ``"completed"``, ``"failed"`` or
            ``"cancelled"`` (by ``CancelChain`` or by cancellation).
        error: the exception that failed or cancelled the chain.
    """

    def __init__(
        self,
        model: AsyncModel,
        prompt: PromptType,
        *,
        system: str | None = None,
        tools: Iterable[Any] = (),
        max_turns: int = 10,
        before_call: Callable[..., Any] | None = None,
        after_call: Callable[..., Any] | None = None,
        on_chunk: Callable[[StreamChunk], Any] | None = None,
        callbacks: Iterable[Any] = (),
        limiter: anyio.CapacityLimiter | None = None,
        history: list[Message] | None = None,
        prefer_sync: bool = False,
        stream: bool | None = None,
        max_tool_output: int | None = DEFAULT_MAX_TOOL_OUTPUT,
        **options: Any,
    ) -> None:
        if max_turns < 1:
            raise UsageError(f"max_turns must be at least 1, got {max_turns}")
        self.model = model.model_id
        self.system = system
        self.max_turns = max_turns
        self.messages: list[Message] = history if history is not None else []
        self.prompt = prompt_messages(prompt)
        self.responses: list[AsyncResponse] = []
        self.status: Status = "pending"
        self.error: BaseException | None = None
        self.started_at: float | None = None
        self.duration: float | None = None
        self._model = model
        self._stream = model.stream if stream is None else stream
        self._options = {**model.options, **options}
        self.tools = model.collect_tools(tools)
        self._specs = [t.spec for t in self.tools.values()]
        self._runner = ToolRunner(
            self.tools,
            prefer_sync=prefer_sync,
            limiter=limiter,
            before_call=as_async(before_call) if before_call else None,
            after_call=as_async(after_call) if after_call else None,
            max_result_chars=max_tool_output,
        )
        self._hooks = Hooks.combine(model.callbacks, callbacks, on_chunk=on_chunk)
        self._done = DoneCallbacks()

    #: A unique id of this chain (made when first read).
    id = LazyId()

    # --- consuming -------------------------------------------------------------------

    async def __aiter__(self) -> AsyncIterator[StreamChunk]:
        """Stream the text of every turn as it arrives."""
        if self.status == "pending":
            # aclosing: a consumer that stops early ends the run now, not at garbage collection.
            async with aclosing(self._run()) as run:
                async for chunk in run:
                    yield chunk
        elif self.status == "running":
            raise UsageError("this chain is already being streamed by another consumer")
        else:
            for response in self.responses:
                async for chunk in response:
                    yield chunk

    async def text(self) -> str:
        """Run the chain if needed and return its final answer: the last turn's text.

        Earlier turns' text ("Let me check.") is in ``chain.responses`` and in the
        chunks of iterating the chain; it is not part of the answer.
        """
        await run_to_end(self, "chain")
        return self.final_text

    @property
    def final_text(self) -> str:
        """The last turn's text so far (``""`` before the first turn)."""
        return self.responses[-1].text_so_far if self.responses else ""

    @property
    def usage(self) -> Usage | None:
        """The usage of every turn added up; ``None`` if no turn reported any."""
        usages = [r.usage for r in self.responses if r.usage is not None]
        return sum(usages[1:], usages[0]) if usages else None

    @property
    def tool_results(self) -> list[ToolResult]:
        """Every tool result of the chain so far, in order."""
        return [result for r in self.responses for result in r.tool_results]

    def on_done(self, cb: C) -> C:
        """Call ``cb(chain)`` once when the chain ends (at once if it already has).

        Returns:
            ``cb``, so this also works as a decorator.
        """
        self._done.add(self, cb)
        return cb

    # --- the loop --------------------------------------------------------------------

    async def _run(self, *, chunks: bool = True) -> AsyncGenerator[StreamChunk, None]:
        """Run the chain, yielding its chunks (none when ``chunks`` is false)."""
        self.status = "running"
        started = time.perf_counter()
        self.started_at = time.time()
        hooks = self._hooks
        if hooks.on_chain_start:
            await hooks.emit("on_chain_start", self)
        messages = self.messages
        messages.extend(self.prompt)
        unanswered: list[ToolCall] = []
        ended_with: BaseException | None = None
        wire_cache: dict[Any, Any] = {}  # providers' encodings of this chain's messages
        try:
            for turn in range(self.max_turns):
                response = AsyncResponse(
                    self._model.provider,
                    TurnRequest(
                        list(messages), self.system, self._specs, self._options, wire_cache
                    ),
                    model=self.model,
                    stream=self._stream,
                    hooks=hooks,
                    turn=turn,
                    chain=self,
                )
                self.responses.append(response)
                async with aclosing(response._run(chunks=chunks)) as turn_run:
                    async for chunk in turn_run:
                        yield chunk
                messages.append(response.message)
                calls = response._tool_calls
                if not calls:
                    self.status = "completed"
                    return
                unanswered = calls
                results = await self._runner.run(calls, hooks, response)
                response.tool_results = results
                messages.extend(tool_messages(results))
                unanswered = []
                if self._runner.cancelled_by is not None:
                    self.status, self.error = "cancelled", self._runner.cancelled_by
                    return
            raise ChainLimitError(limit_message(self.max_turns), self.responses)
        except BaseException as exc:
            ended_with = exc
            if isinstance(exc, CancelChain):
                # Raised outside a tool (e.g. by an after_call hook): a clean end.
                self.status, self.error = "cancelled", exc
            elif isinstance(exc, Exception):
                self.status, self.error = "failed", exc
            else:
                self.status = "cancelled"
                self.error = None if isinstance(exc, GeneratorExit) else exc
            if unanswered:
                repaired = cancelled_results(unanswered, self._runner.results_so_far)
                response.tool_results = repaired
                messages.extend(tool_messages(repaired))
            if not isinstance(exc, CancelChain):
                raise
        finally:
            self.duration = time.perf_counter() - started
            await self._finish(ended_with)

    async def _finish(self, error: BaseException | None) -> None:
        # A chain ended by CancelChain did not fail: no on_error.
        failure = None if isinstance(error, CancelChain) else error
        await self._hooks.end(self, failure, "on_chain_end", self._done)

    def __repr__(self) -> str:
        return f"<AsyncChain {self.model} turns={len(self.responses)} status={self.status}>"
