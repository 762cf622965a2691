"""Running one turn's tool calls.

Guarantees:
- every call of a turn runs concurrently in one task group, and a failing call never
  cancels its siblings; sync calls, which cannot run more at once than the limiter has
  tokens, are taken in order by that many tasks;
- async tools run on the event loop, sync tools in worker threads (``_threads``: a cheap
  hop on asyncio, ``anyio.to_thread.run_sync`` on trio) under a ``CapacityLimiter``, with
  the caller's contextvars;
- every call yields exactly one :class:`ToolResult`, in the model's order: bad JSON, failed
  validation, an unknown tool, an exception and a timeout become error results the model
  can read and correct itself from;
- ``CancelChain`` raised by a tool or by ``before_call`` is reported to the chain, which
  ends cleanly after the turn.

Abandon policy: a sync tool that times out or is cancelled is abandoned: its thread runs
to completion in the background, holding its limiter token until then, and its result is
discarded (Python cannot kill threads).
"""

from __future__ import annotations

import contextvars
import json
import math
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
import pydantic
from pydantic_core import to_json

from ._threads import run_in_thread
from .errors import CancelChain, ToolArgumentsError, ToolError, ToolTimeoutError, UnknownToolError
from .messages import ToolCall, ToolResult
from .tools import Tool

if TYPE_CHECKING:
    from .callbacks import Hooks

__all__ = ["ToolRunner", "serialise_result"]

#: Set while a sync tool runs in its worker thread: the sync facade refuses to block there.
in_sync_tool: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "agentrt_in_sync_tool", default=False
)


def serialise_result(value: Any) -> str:
    """Turn a tool's return value into the text sent to the model (JSON unless a string)."""
    if isinstance(value, str):
        return value
    if isinstance(value, pydantic.BaseModel):
        return value.model_dump_json()
    return to_json(value, fallback=str).decode()


BeforeCall = Callable[[Tool, ToolCall], Awaitable[Any]]
AfterCall = Callable[[Tool, ToolCall, ToolResult], Awaitable[Any]]


@dataclass
class ToolRunner:
    """Runs the tool calls of one chain's turns with the chain's settings."""

    tools: Mapping[str, Tool]
    prefer_sync: bool = False
    limiter: anyio.CapacityLimiter | None = None
    before_call: BeforeCall | None = None
    after_call: AfterCall | None = None
    max_result_chars: int | None = None
    cancelled_by: CancelChain | None = field(default=None, init=False)
    #: The results of the turn being run (``None`` for calls not finished yet), so that a
    #: cancelled turn keeps the results of the calls that did finish.
    results_so_far: list[ToolResult | None] = field(default_factory=list, init=False)

    async def run(self, calls: Sequence[ToolCall], hooks: Hooks, owner: Any) -> list[ToolResult]:
        """Run ``calls`` concurrently and return one result per call, in order."""
        results: list[ToolResult | None] = [None] * len(calls)
        self.results_so_far = results
        if len(calls) == 1:
            results[0] = await self._run_one(calls[0], hooks, owner)
        else:
            threaded: list[int] = []
            async with anyio.create_task_group() as tg:
                for index, call in enumerate(calls):
                    if self._threaded(call):
                        threaded.append(index)
                    else:
                        tg.start_soon(self._feed, iter((index,)), results, calls, hooks, owner)
                # Sync calls cannot run more at once than the limiter has tokens, so they are
                # fed to that many tasks rather than given one each: starting a task is
                # costly, and a turn of a thousand calls would wait for all to start.
                pending = iter(threaded)
                for _ in range(min(len(threaded), self._thread_tokens())):
                    tg.start_soon(self._feed, pending, results, calls, hooks, owner)
        return [r for r in results if r is not None]

    async def _feed(
        self,
        pending: Iterator[int],
        results: list[ToolResult | None],
        calls: Sequence[ToolCall],
        hooks: Hooks,
        owner: Any,
    ) -> None:
        for index in pending:  # may be shared by several tasks: each takes the next call
            results[index] = await self._run_one(calls[index], hooks, owner)

    def _threaded(self, call: ToolCall) -> bool:
        tool = self.tools.get(call.name)
        return tool is not None and not tool.implementation(prefer_sync=self.prefer_sync)[1]

    def _thread_tokens(self) -> int:
        limiter = self.limiter or anyio.to_thread.current_default_thread_limiter()
        tokens = limiter.total_tokens
        return int(tokens) if tokens != math.inf else 1 << 30

    async def _run_one(self, call: ToolCall, hooks: Hooks, owner: Any) -> ToolResult:
        started = time.perf_counter()
        if hooks.on_tool_start:
            await hooks.emit("on_tool_start", owner, call)
        tool = self.tools.get(call.name)
        try:
            if tool is None:
                raise UnknownToolError(_unknown_tool_message(call.name, self.tools), call=call)
            kwargs = self._arguments(tool, call)
            if self.before_call is not None:
                await self.before_call(tool, call)
            value = await self._invoke(tool, kwargs)
            content = serialise_result(value)
        except CancelChain as exc:
            if self.cancelled_by is None:
                self.cancelled_by = exc
            result = self._error(call, exc, started, f"chain cancelled: {exc}" if str(exc) else "")
        except Exception as exc:
            result = self._error(call, exc, started)
        else:
            result = ToolResult(
                tool_call_id=call.id,
                name=call.name,
                content=self._cap(content),
                duration=time.perf_counter() - started,
            )
        if self.after_call is not None and tool is not None:
            try:
                await self.after_call(tool, call, result)
            except CancelChain as exc:
                if self.cancelled_by is None:
                    self.cancelled_by = exc
        if result.is_error:
            if hooks.on_tool_error:
                await hooks.emit("on_tool_error", owner, call, result)
        elif hooks.on_tool_end:
            await hooks.emit("on_tool_end", owner, call, result)
        return result

    def _arguments(self, tool: Tool, call: ToolCall) -> dict[str, Any]:
        if call.arguments is None:
            raise ToolArgumentsError(_bad_json_message(call), call=call)
        try:
            return tool.validate(call.arguments)
        except pydantic.ValidationError as exc:
            details = json.dumps(exc.errors(include_url=False, include_context=False), default=str)
            raise ToolArgumentsError(
                f"invalid arguments for tool {tool.name!r}: {details}. "
                f"Expected arguments matching this JSON Schema: {json.dumps(tool.parameters)}",
                call=call,
            ) from exc

    async def _invoke(self, tool: Tool, kwargs: dict[str, Any]) -> Any:
        fn, is_async = tool.implementation(prefer_sync=self.prefer_sync)
        if is_async:
            running = fn(**kwargs)
        else:  # limiter None: anyio's per-loop default (40 threads)
            running = run_in_thread(partial(_run_sync_tool, fn, kwargs), limiter=self.limiter)
        if tool.timeout is None:  # no scope needed: the common case costs nothing extra
            return await running
        try:
            with anyio.fail_after(tool.timeout):
                return await running
        except TimeoutError as exc:
            raise ToolTimeoutError(
                f"tool {tool.name!r} did not finish within its timeout of {tool.timeout} s"
            ) from exc

    def _error(
        self, call: ToolCall, exc: Exception, started: float, message: str = ""
    ) -> ToolResult:
        if not message:
            if isinstance(exc, ToolError):
                message = str(exc)
            else:
                message = f"tool {call.name!r} raised {type(exc).__name__}: {exc}"
        return ToolResult(
            tool_call_id=call.id,
            name=call.name,
            content=f"Error: {message}",
            is_error=True,
            duration=time.perf_counter() - started,
            error=exc,
        )

    def _cap(self, content: str) -> str:
        limit = self.max_result_chars
        if limit is None or len(content) <= limit:
            return content
        return (
            f"{content[:limit]}\n[truncated by agentrt: the tool returned {len(content)} "
            f"characters, only the first {limit} are shown]"
        )


def _run_sync_tool(fn: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
    token = in_sync_tool.set(True)
    try:
        return fn(**kwargs)
    finally:
        in_sync_tool.reset(token)


def _unknown_tool_message(name: str, tools: Mapping[str, Tool]) -> str:
    available = ", ".join(sorted(tools)) or "none"
    return f"there is no tool named {name!r}; the available tools are: {available}"


def _bad_json_message(call: ToolCall) -> str:
    try:
        value = json.loads(call.raw_arguments)
    except json.JSONDecodeError as exc:
        problem = f"they are not valid JSON ({exc})"
    else:
        if isinstance(value, dict):  # parse_arguments refused NaN, Infinity or 1e999
            problem = "they hold NaN, Infinity or an out-of-range number, which JSON does not allow"
        else:
            problem = f"they are JSON {type(value).__name__}, not an object"
    return (
        f"the arguments for tool {call.name!r} could not be parsed: {problem}. "
        f"Received: {call.raw_arguments[:500]!r}. Send a JSON object."
    )
