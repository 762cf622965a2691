"""The chain loop: call the model, run the tools it asks for, feed results back, repeat.

The decisions (what the prompt becomes, what history a finished or cancelled turn leaves)
are plain functions, testable without an event loop; ``AsyncChain`` only drives them.
History stays valid whatever happens: every tool call in it gets a result, a synthetic
"cancelled" one when the chain ended before the call finished.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Sequence
from contextlib import aclosing
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import ValidationError

from ._execute import ToolRunner
from ._response import AsyncResponse, LazyId, Lifecycle, Status
from .callbacks import DoneCallbacks, Hooks
from .errors import CancelChain, ChainLimitError, UsageError
from .messages import Message, StreamChunk, ToolCall, ToolResult, TurnRequest, Usage
from .output import Done, Retry, exhausted, judge_turn

if TYPE_CHECKING:
    from .output import OutputRun
    from .providers.base import Provider
    from .tools import Tool

logger = logging.getLogger("agentrt")

__all__ = [
    "DEFAULT_MAX_TOOL_OUTPUT",
    "AsyncChain",
    "PromptType",
    "cancelled_results",
    "committed_messages",
    "not_run_results",
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
        UsageError: the prompt is empty, or an item of a list is not a valid message.
    """
    if isinstance(prompt, str):
        if not prompt.strip():
            raise UsageError("the prompt is empty: pass the question or instruction for the model")
        return [Message(role="user", content=prompt)]
    if isinstance(prompt, Sequence) and not isinstance(prompt, (bytes, bytearray)):
        messages = [_message_item(i, m) for i, m in enumerate(prompt)]
        if messages:
            return messages
    raise UsageError(
        f"prompt must be a non-empty string or a non-empty list of messages "
        f"(Message objects or dicts such as {{'role': 'user', 'content': '...'}}), "
        f"got {prompt!r:.200}"
    )


_ROLES = ("system", "user", "assistant", "tool")


def _message_item(index: int, item: Any) -> Message:
    if isinstance(item, Message):
        return item
    if not isinstance(item, dict):
        raise UsageError(
            f"prompt[{index}] is {item!r:.100}; a list prompt holds messages: Message "
            "objects or dicts such as {'role': 'user', 'content': '...'} (pass a string "
            "prompt for a single user message)"
        )
    role = item.get("role")
    if role not in _ROLES:
        raise UsageError(
            f"prompt[{index}] has role {role!r}; a message's role is one of "
            f"{', '.join(map(repr, _ROLES))}"
        )
    try:
        return Message.model_validate(item)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise UsageError(f"prompt[{index}] is not a valid message: {problems}") from None


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


def limit_message(max_turns: int, unrun: int) -> str:
    """The ``ChainLimitError`` message."""
    calls = "1 tool call was" if unrun == 1 else f"{unrun} tool calls were"
    return (
        f"the chain reached max_turns={max_turns} (model calls) while the model still asked "
        f"for tools; the last turn's {calls} not run, since no turn was left to read the "
        "results; pass a larger max_turns= or look at error.responses"
    )


def not_run_results(calls: Iterable[ToolCall]) -> list[ToolResult]:
    """Synthetic results for the calls of a last turn that the turn limit left unrun."""
    return [
        ToolResult(
            tool_call_id=c.id,
            name=c.name,
            content="Error: not run: the chain reached its max_turns limit",
            is_error=True,
        )
        for c in calls
    ]


def committed_messages(chain: AsyncChain) -> list[Message]:
    """What a chain adds to its conversation's history once it ended.

    A completed chain adds its prompt and every turn. A cancelled chain (by
    ``CancelChain`` or by cancellation) adds its prompt and the turns that completed (their
    tool calls each with a result, real or synthetic), or nothing when no turn completed.
    A failed chain adds nothing: the conversation is as it was, so a retry sends the
    question once.
    """
    if chain.status == "completed" or (
        chain.status == "cancelled" and any(r.status == "completed" for r in chain.responses)
    ):
        return chain.messages[chain.history_length :]
    return []


class AsyncChain(Lifecycle):
    """Turns until the model answers without tool calls.

    Iterate it for the streamed text of every turn, or ``await chain.text()`` for the
    final answer. Made by :meth:`AsyncModel.chain`, which checks its arguments.

    Attributes:
        id: a unique id of this chain.
        model: the model id.
        name: the name given with ``chain(..., name=...)``, or ``None``.
        conversation_id: the id of the conversation the chain belongs to, or ``None``.
        messages: the whole conversation, growing as the chain runs.
        responses: the :class:`AsyncResponse` of each turn so far.
        status: ``"pending"``, ``"running"``, then ``"completed"``, ``"failed"`` or
            ``"cancelled"`` (by ``CancelChain`` or by cancellation).
        error: the exception that failed or cancelled the chain.
        max_turns: the most model calls the chain makes.
    """

    _what = "chain"

    def __init__(
        self,
        provider: Provider,
        model_id: str,
        prompt: list[Message],
        *,
        tools: dict[str, Tool],
        hooks: Hooks,
        options: dict[str, Any],
        stream: bool,
        system: str | None = None,
        max_turns: int = 10,
        runner: ToolRunner | None = None,
        history: list[Message] | None = None,
        name: str | None = None,
        conversation_id: str | None = None,
        output: OutputRun | None = None,
        tool_choice: str | None = None,
        parallel_tool_calls: bool | None = None,
        tool_sources: Sequence[Any] = (),
        collect_tools: Callable[[Sequence[Any]], dict[str, Tool]] | None = None,
    ) -> None:
        self.model = model_id
        self.name = name
        self.conversation_id = conversation_id
        self.system = system
        self.max_turns = max_turns
        self._history = history if history is not None else []
        self.messages: list[Message] = list(self._history)
        #: How many of ``messages`` came from the conversation before the chain ran.
        self.history_length = len(self.messages)
        self.prompt = prompt
        self.responses: list[AsyncResponse] = []
        self.status: Status = "pending"
        self.error: BaseException | None = None
        self.started_at: float | None = None
        self.duration: float | None = None
        self._provider = provider
        self._stream = stream
        self._options = options
        self.tools = tools
        self._specs = [t.spec for t in tools.values()]
        self._runner = runner if runner is not None else ToolRunner(tools)
        self._hooks = hooks
        self._done = DoneCallbacks()
        self._output = output
        self._tool_choice = tool_choice
        self._parallel_tool_calls = parallel_tool_calls
        #: The resolved output mode (``"native"``, ``"tool"``, ``"prompted"``), or ``None``.
        self.output_mode: str | None = output.mode if output is not None else None
        self._request_system = output.system(system) if output is not None else system
        if output is not None:
            self._specs = output.tools(self._specs)
        self._value: Any = None
        # Toolboxes whose tool list can change (an MCP server's): looked at between turns.
        self._sources = tool_sources
        self._collect = collect_tools
        self._versions = _tool_versions(tool_sources)

    def _refresh_tools(self) -> None:
        """Between turns: take the new tool list of a toolbox that announced a change."""
        if self._collect is None or not self._versions:
            return
        versions = _tool_versions(self._sources)
        if versions == self._versions:
            return
        self._versions = versions
        tools = self._collect(self._sources)
        self.tools = self._runner.tools = tools
        specs = [t.spec for t in tools.values()]
        self._specs = self._output.tools(specs) if self._output is not None else specs

    #: A unique id of this chain (made when first read).
    id = LazyId()

    # --- consuming -------------------------------------------------------------------

    async def _replay(self) -> AsyncIterator[StreamChunk]:
        """After the chain ended: each turn's text, one chunk per turn."""
        for response in self.responses:
            async for chunk in response:
                yield chunk

    async def text(self) -> str:
        """Run the chain if needed and return its final answer: the last turn's text.

        Earlier turns' text ("Let me check.") is in ``chain.responses`` and in the
        chunks of iterating the chain; it is not part of the answer.
        """
        await self._run_to_end()
        return self.final_text

    async def output(self) -> Any:
        """Run the chain if needed and return its validated output.

        Without ``output_type=`` this is the final answer text, as :meth:`text`.

        Raises:
            OutputValidationError: every allowed answer failed validation (``.attempts``).
            OutputRefusedError: the model refused.
            CancelChain: a tool or ``before_call`` ended the chain before the output.
            UsageError: the chain was cancelled before the model gave its output.
        """
        await self._run_to_end()
        if self._output is None:
            return self.final_text
        if self.status != "completed":
            if isinstance(self.error, CancelChain):
                raise self.error
            # A cancellation is not re-raised outside the scope that cancelled it.
            raise UsageError(
                "this chain was cancelled before the model gave its output "
                "(chain.status == 'cancelled'); there is no value to return"
            )
        return self._value

    @property
    def output_value(self) -> Any:
        """The validated output once the chain completed with ``output_type=``, else ``None``."""
        return self._value

    @property
    def final_text(self) -> str:
        """The last turn's text so far (``""`` before the first turn)."""
        return self.responses[-1].text_so_far if self.responses else ""

    @property
    def truncated(self) -> bool:
        """Whether the final answer was cut by the token limit (``finish_reason "length"``)."""
        return bool(self.responses) and self.responses[-1].finish_reason == "length"

    @property
    def usage(self) -> Usage | None:
        """The usage of every turn added up; ``None`` if no turn reported any."""
        usages = [r.usage for r in self.responses if r.usage is not None]
        return sum(usages[1:], usages[0]) if usages else None

    @property
    def tool_results(self) -> list[ToolResult]:
        """Every tool result of the chain so far, in order."""
        return [result for r in self.responses for result in r.tool_results]

    # --- the loop --------------------------------------------------------------------

    async def _run(self, *, chunks: bool = True) -> AsyncGenerator[StreamChunk, None]:
        """Run the chain, yielding its chunks (none when ``chunks`` is false)."""
        self.status = "running"
        started = time.perf_counter()
        self.started_at = time.time()
        hooks = self._hooks
        # The conversation as it is now (an earlier chain of it may have ended since this
        # one was made).
        self.messages = messages = list(self._history)
        self.history_length = len(messages)
        if hooks.on_chain_start:
            await hooks.emit("on_chain_start", self)
        messages.extend(self.prompt)
        response: Any = None
        unanswered: list[ToolCall] = []
        ended_with: BaseException | None = None
        wire_cache: dict[Any, Any] = {}  # providers' encodings of this chain's messages
        output = self._output
        # A forcing choice ("required", a tool's name) holds until the model called a tool,
        # then turns are "auto" again: forced on every turn, the model could never answer.
        tool_choice = self._tool_choice
        last = self.max_turns - 1
        try:
            for turn in range(self.max_turns):
                if turn:
                    self._refresh_tools()  # never mid-turn: only before a request
                response = AsyncResponse(
                    self._provider,
                    TurnRequest(
                        list(messages),
                        self._request_system,
                        self._specs,
                        self._options,
                        wire_cache,
                        output=output.request if output is not None else None,
                        tool_choice=tool_choice,
                        parallel_tool_calls=self._parallel_tool_calls,
                    ),
                    model=self.model,
                    stream=self._stream,
                    hooks=hooks,
                    turn=turn,
                    chain=self,
                    output=output,
                )
                self.responses.append(response)
                if chunks:
                    async with aclosing(response._run()) as turn_run:
                        async for chunk in turn_run:
                            yield chunk
                else:
                    await response._run_quietly()
                messages.append(response.message)
                calls = response._tool_calls
                if output is not None:
                    verdict = judge_turn(output, response)
                    if isinstance(verdict, Done):
                        self._value = verdict.value
                        response._outcome = ("value", verdict.value)
                        if verdict.results:
                            response.tool_results = verdict.results
                            messages.extend(tool_messages(verdict.results))
                        self.status = "completed"
                        return
                    if isinstance(verdict, Retry):
                        response._outcome = ("error", exhausted(output.spec, [verdict.attempt]))
                        response.tool_results = verdict.results
                        messages.extend(tool_messages(verdict.results))
                        messages.extend(verdict.messages)
                        if turn == last:
                            raise exhausted(output.spec, output.attempts)
                        continue
                    response._outcome = ("error", UsageError(_NO_OUTPUT.format(turn=turn)))
                if calls and tool_choice not in (None, "auto", "none"):
                    tool_choice = None
                if not calls:
                    self.status = "completed"
                    if response.finish_reason == "length":
                        _warn_truncated(self)
                    return
                if turn == last:
                    # No turn is left to read these calls' results: do not run them.
                    response.tool_results = not_run_results(calls)
                    messages.extend(tool_messages(response.tool_results))
                    raise ChainLimitError(limit_message(self.max_turns, len(calls)), self.responses)
                unanswered = calls
                results = await self._runner.run(calls, hooks, response)
                response.tool_results = results
                messages.extend(tool_messages(results))
                unanswered = []
                if self._runner.cancelled_by is not None:
                    self.status, self.error = "cancelled", self._runner.cancelled_by
                    return
        except BaseException as exc:
            ended_with = exc
            # CancelChain raised outside a tool (e.g. by an after_call hook): a clean end.
            self._ended(exc)
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
        named = f" {self.name!r}" if self.name else ""
        return f"<AsyncChain{named} {self.model} turns={len(self.responses)} status={self.status}>"


_NO_OUTPUT = (
    "turn {turn} of its chain asked for tools and gave no output: the chain's output is "
    "await chain.output()"
)


def _warn_truncated(chain: AsyncChain) -> None:
    logger.warning(
        "agentrt chain %s (%s): the final answer was cut by the token limit "
        "(finish_reason 'length'); pass a larger max_tokens= (chain.truncated is True)",
        chain.name or chain.id,
        chain.model,
    )


def _tool_versions(sources: Sequence[Any]) -> list[Any]:
    """The ``tools_version`` of each source that has one (toolboxes that can change)."""
    return [getattr(s, "tools_version", None) for s in sources if hasattr(s, "tools_version")]
