"""Running one turn's tool calls.

Guarantees:
- every call of a turn runs concurrently in one task group, and a failing call never
  cancels its siblings; sync calls, which cannot run more at once than the limiter has
  tokens, are taken in order by that many tasks. Calls of ``sequential`` tools run after
  the others, one at a time, in the model's order;
- async tools run on the event loop, sync tools in worker threads (``_threads``: a cheap
  hop on asyncio, ``anyio.to_thread.run_sync`` on trio) under a ``CapacityLimiter``, with
  the caller's contextvars; an awaitable a sync tool returns is awaited on the loop;
- one call runs in its own copy of the context, in one task: ``on_tool_start``,
  ``before_call``, the tool, ``after_call`` and then ``on_tool_end`` or ``on_tool_error``,
  in that order, so a contextvar set by ``on_tool_start`` (a tracing span, say) is seen by
  the tool (a sync tool's thread gets a copy made after ``on_tool_start``) and by the
  call's other hooks, and by nothing else: not by the turn's other calls, not by the chain;
- every call yields exactly one :class:`ToolResult`, in the model's order: bad JSON, failed
  validation, an unknown tool, a refusal by ``before_call``, an exception, a result that
  cannot be encoded and a timeout become error results the model can read and correct
  itself from (with ``tool_errors="raise"``, a tool's own exception fails the chain);
- ``CancelChain`` raised by a tool or by ``before_call`` is reported to the chain, which
  ends cleanly after the turn.

Abandon policy: a sync tool that times out or is cancelled is abandoned: its thread runs
to completion in the background, holding its limiter token until then, and its result is
discarded (Python cannot kill threads).
"""

from __future__ import annotations

import contextvars
import inspect
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable, Coroutine, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

import anyio
import anyio.from_thread
import anyio.to_thread
import pydantic
from pydantic_core import to_json

from ._backend import run_in_thread
from .callbacks import as_async
from .errors import (
    CancelChain,
    ToolArgumentsError,
    ToolError,
    ToolTimeoutError,
    UnknownToolError,
    UsageError,
)
from .messages import ToolCall, ToolOutput, ToolResult
from .tools import ArgumentsProblem, Tool

if TYPE_CHECKING:
    from .callbacks import Hooks

__all__ = ["TOOL_ERRORS", "ToolRunner", "logger", "serialise_result"]

#: Where tool failures are logged (WARNING, with the traceback of an exception). Shown by
#: any configured logging (``logging.basicConfig()``); a program that configures none does
#: not get them on stderr through logging's last-resort handler (a library's manners).
logger = logging.getLogger("agentrt.tools")
logger.addHandler(logging.NullHandler())

#: The values of ``tool_errors=``.
TOOL_ERRORS = ("model", "raise")

#: Set while a sync tool runs in its worker thread: the sync facade refuses to block there.
in_sync_tool: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "agentrt_in_sync_tool", default=False
)

T = TypeVar("T")


def serialise_result(value: Any) -> str:
    """Turn a tool's return value into the text sent to the model (JSON unless a string).

    Raises:
        ValueError: the value cannot be encoded (bytes that are not UTF-8, a circular
            structure, a string with lone surrogates, ...).
    """
    if isinstance(value, str):
        value.encode()  # a lone surrogate would fail later, in the provider's encoder
        return value
    if isinstance(value, pydantic.BaseModel):
        return value.model_dump_json()
    return to_json(value, fallback=str).decode()


BeforeCall = Callable[[Tool, ToolCall], Awaitable[Any]]
AfterCall = Callable[[Tool, ToolCall, ToolResult], Awaitable[Any]]


@dataclass
class ToolRunner:
    """Runs the tool calls of one chain's turns with the chain's settings.

    Misuse of the settings raises :class:`~agentrt.UsageError` when the runner (that is,
    the chain) is made, not when a tool is called.

    Args:
        tools: the chain's tools, by name.
        prefer_sync: use the sync implementation of dual tools (the sync facade).
        limiter: an ``anyio.CapacityLimiter`` bounding the sync tools running at once;
            ``None`` is anyio's default (40 threads).
        before_call: ``before_call(tool, call)``, ``def`` or ``async def``, called with the
            :class:`~agentrt.Tool` and the validated :class:`~agentrt.ToolCall` before the
            tool runs. Raising in it is how a call is refused (tool approval): a
            ``ToolError("why")`` sends its message to the model as the call's error result,
            any other exception the error result ``"tool 'x' was not run: before_call
            raised ..."``; the tool does not run and the chain goes on. ``CancelChain``
            ends the chain cleanly after the turn.
        after_call: ``after_call(tool, call, result)`` with the :class:`~agentrt.ToolResult`,
            called after the tool (also after a failure, with the error result). Raising
            ``CancelChain`` ends the chain cleanly after the turn. Any other exception is a
            bug in the hook and fails the chain with that very exception, never an
            ``ExceptionGroup``, however many calls the turn had: the first one raised wins,
            the turn's unfinished calls are cancelled, later ones are logged.
        max_result_chars: results longer than this are cut, with a marker; ``None``: no cap.
        tool_errors: ``"model"`` (default): an exception raised by a tool becomes an error
            result the model reads, and is logged on ``agentrt.tools`` at WARNING with its
            traceback. ``"raise"``: it fails the chain, re-raised as it is (the turn's
            unfinished calls are cancelled and get "cancelled" results, so history stays
            valid). Either way, a ``ToolError`` the tool raises on purpose, bad arguments,
            unknown tools and timeouts stay error results for the model.
    """

    tools: Mapping[str, Tool]
    prefer_sync: bool = False
    limiter: anyio.CapacityLimiter | None = None
    before_call: BeforeCall | None = None
    after_call: AfterCall | None = None
    max_result_chars: int | None = None
    tool_errors: Literal["model", "raise"] = "model"
    cancelled_by: CancelChain | None = field(default=None, init=False)
    #: The results of the turn being run (``None`` for calls not finished yet), so that a
    #: cancelled turn keeps the results of the calls that did finish.
    results_so_far: list[ToolResult | None] = field(default_factory=list, init=False)
    #: The exception failing the turn (``tool_errors="raise"``, or a failed ``after_call``).
    _failure: BaseException | None = field(default=None, init=False, repr=False)
    _scope: anyio.CancelScope | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.before_call = _check_hook("before_call", self.before_call, ("tool", "call"))
        self.after_call = _check_hook("after_call", self.after_call, ("tool", "call", "result"))
        if self.limiter is not None and not isinstance(self.limiter, anyio.CapacityLimiter):
            raise UsageError(
                "limiter= takes an anyio.CapacityLimiter, e.g. limiter=anyio.CapacityLimiter(4), "
                f"got {self.limiter!r}"
            )
        if self.tool_errors not in TOOL_ERRORS:
            raise UsageError(f'tool_errors= takes "model" or "raise", got {self.tool_errors!r}')

    async def run(self, calls: Sequence[ToolCall], hooks: Hooks, owner: Any) -> list[ToolResult]:
        """Run ``calls`` and return one result per call, in order.

        Raises:
            Exception: with ``tool_errors="raise"``, the first exception a tool raised;
                the first exception an ``after_call`` raised.
        """
        results: list[ToolResult | None] = [None] * len(calls)
        self.results_so_far = results
        self._failure = None
        together = [i for i, c in enumerate(calls) if not self._sequential(c)]
        if len(together) == 1:
            await self._one(together[0], results, calls, hooks, owner)
        elif together:
            await self._together(together, results, calls, hooks, owner)
        if len(together) < len(calls):
            for index, call in enumerate(calls):  # alone, after the others, in order
                if not self._sequential(call) or self._failure is not None:
                    continue
                if self.cancelled_by is not None:
                    results[index] = _not_run(call, self.cancelled_by)
                else:
                    await self._one(index, results, calls, hooks, owner)
        if self._failure is not None:
            raise self._failure
        return [r for r in results if r is not None]

    async def _together(
        self,
        indexes: list[int],
        results: list[ToolResult | None],
        calls: Sequence[ToolCall],
        hooks: Hooks,
        owner: Any,
    ) -> None:
        threaded: list[int] = []
        try:
            async with anyio.create_task_group() as tg:
                self._scope = tg.cancel_scope  # cancelled by _fail
                for index in indexes:
                    if self._threaded(calls[index]):
                        threaded.append(index)
                    else:
                        tg.start_soon(self._feed, iter((index,)), results, calls, hooks, owner)
                # Sync calls cannot run more at once than the limiter has tokens, so they
                # are fed to that many tasks rather than given one each: starting a task is
                # costly, and a turn of a thousand calls would wait for all to start.
                pending = iter(threaded)
                for _ in range(min(len(threaded), self._thread_tokens())):
                    tg.start_soon(self._feed, pending, results, calls, hooks, owner)
        finally:
            self._scope = None

    async def _feed(
        self,
        pending: Iterator[int],
        results: list[ToolResult | None],
        calls: Sequence[ToolCall],
        hooks: Hooks,
        owner: Any,
    ) -> None:
        for index in pending:  # may be shared by several tasks: each takes the next call
            if self._failure is not None:  # the turn is failing: start nothing more
                return
            await self._one(index, results, calls, hooks, owner)

    async def _one(
        self,
        index: int,
        results: list[ToolResult | None],
        calls: Sequence[ToolCall],
        hooks: Hooks,
        owner: Any,
    ) -> None:
        # Each call in its own context: what its hooks set stays with it.
        results[index], failure = await _InContext(self._run_one(calls[index], hooks, owner))
        if failure is not None:
            self._fail(failure)

    def _sequential(self, call: ToolCall) -> bool:
        tool = self.tools.get(call.name)
        return tool is not None and tool.sequential

    def _threaded(self, call: ToolCall) -> bool:
        tool = self.tools.get(call.name)
        return tool is not None and not tool.implementation(prefer_sync=self.prefer_sync)[1]

    def _thread_tokens(self) -> int:
        limiter = self.limiter or anyio.to_thread.current_default_thread_limiter()
        tokens = limiter.total_tokens
        return int(tokens) if tokens != math.inf else 1 << 30

    async def _run_one(
        self, call: ToolCall, hooks: Hooks, owner: Any
    ) -> tuple[ToolResult, BaseException | None]:
        """Run one call; return its result and the exception failing the turn, if any."""
        started = time.perf_counter()
        if hooks.on_tool_start:
            await hooks.emit("on_tool_start", owner, call)
        tool = self.tools.get(call.name)
        try:
            result, failure = await self._call(tool, call, started)
        except BaseException:
            # Cancelled: the call's span (if a handler opened one in on_tool_start) still
            # ends, with the result history will hold.
            if hooks.on_tool_error:
                with anyio.CancelScope(shield=True):
                    await hooks.emit("on_tool_error", owner, call, _cancelled(call, started))
            raise
        if self.after_call is not None and tool is not None:
            try:
                await self.after_call(tool, call, result)
            except CancelChain as exc:
                if self.cancelled_by is None:
                    self.cancelled_by = exc
            except Exception as exc:
                exc.add_note(f"raised by after_call for the call of tool {call.name!r}")
                failure = failure or exc
        if hooks.on_tool_error or hooks.on_tool_end:
            await self._end_hooks(hooks, owner, call, result)
        return result, failure

    async def _end_hooks(
        self, hooks: Hooks, owner: Any, call: ToolCall, result: ToolResult
    ) -> None:
        if result.is_error:
            if hooks.on_tool_error:
                await hooks.emit("on_tool_error", owner, call, result)
        elif hooks.on_tool_end:
            await hooks.emit("on_tool_end", owner, call, result)

    async def _call(
        self, tool: Tool | None, call: ToolCall, started: float
    ) -> tuple[ToolResult, BaseException | None]:
        """Validate, ask ``before_call``, run the tool and encode its result."""
        phase = "arguments"
        try:
            if tool is None:
                raise UnknownToolError(_unknown_tool_message(call.name, self.tools), call=call)
            kwargs = self._arguments(tool, call)
            if self.before_call is not None:
                phase = "before_call"
                await self.before_call(tool, call)
            phase = "tool"
            fn, is_async = tool.implementation(prefer_sync=self.prefer_sync)
            if is_async and tool.timeout is None:  # the common case, without a scope
                value = await fn(**kwargs)
                if type(value) not in _SETTLED and _unsettled(value):
                    value = await _settle(value)
            else:
                value = await self._invoke(tool, fn, is_async, kwargs)
            phase = "encode"
            extra: dict[str, Any] = {}
            if isinstance(value, ToolOutput):
                extra = {"structured": value.structured, "media": list(value.media)}
                value = value.content
            content = serialise_result(value)
        except CancelChain as exc:
            if self.cancelled_by is None:
                self.cancelled_by = exc
            message = f"chain cancelled: {exc}" if str(exc) else ""
            return self._error(call, exc, started, message), None
        except Exception as exc:
            return self._failed(call, exc, started, phase)
        result = ToolResult(
            tool_call_id=call.id,
            name=call.name,
            content=self._cap(content),
            duration=time.perf_counter() - started,
            **extra,
        )
        return result, None

    def _failed(
        self, call: ToolCall, exc: Exception, started: float, phase: str
    ) -> tuple[ToolResult, BaseException | None]:
        """Log a call that failed in ``phase``; return its error result and the failure.

        The failure is the exception that fails the turn (``tool_errors="raise"``), or None.
        """
        name = call.name
        failure: BaseException | None = None
        if isinstance(exc, ToolError):
            message = str(exc)
            if isinstance(exc, ToolTimeoutError):
                logger.warning("%s (call %s)", message, call.id)
            else:
                logger.info("tool %r: error result for the model: %s", name, message)
        elif phase == "before_call":
            message = f"tool {name!r} was not run: before_call raised {type(exc).__name__}: {exc}"
            logger.info("%s (call %s)", message, call.id)
        elif phase == "encode":
            message = f"tool {name!r} ran but its result could not be encoded: {exc}"
            if self.tool_errors == "raise":
                exc.add_note(f"while encoding the result of tool {name!r} for the model")
                failure = exc
            else:
                logger.warning("%s (call %s)", message, call.id, exc_info=exc)
        else:
            message = f"tool {name!r} raised {type(exc).__name__}: {exc}"
            if self.tool_errors == "raise":
                failure = exc
            else:
                logger.warning("%s (call %s)", message, call.id, exc_info=exc)
        return self._error(call, exc, started, message), failure

    def _fail(self, exc: BaseException) -> None:
        """Fail the turn with ``exc`` (the first one wins), cancelling its other calls."""
        if self._failure is None:
            self._failure = exc
            if self._scope is not None:
                self._scope.cancel()
        else:
            logger.warning(
                "also raised while the turn was failing (the chain fails with the first): %s: %s",
                type(exc).__name__,
                exc,
                exc_info=exc,
            )

    def _arguments(self, tool: Tool, call: ToolCall) -> dict[str, Any]:
        if call.arguments is None:
            raise ToolArgumentsError(_bad_json_message(call), call=call)
        try:
            return tool.validate(call.arguments)
        except ArgumentsProblem as exc:
            details = str(exc)
        except pydantic.ValidationError as exc:
            details = json.dumps(exc.errors(include_url=False, include_context=False), default=str)
        raise ToolArgumentsError(
            f"invalid arguments for tool {tool.name!r}: {details}. "
            f"Expected arguments matching this JSON Schema: {json.dumps(tool.parameters)}",
            call=call,
        )

    async def _invoke(
        self, tool: Tool, fn: Callable[..., Any], is_async: bool, kwargs: dict[str, Any]
    ) -> Any:
        if is_async:
            running = fn(**kwargs)
        else:  # limiter None: anyio's per-loop default (40 threads)
            running = run_in_thread(partial(_run_sync_tool, fn, kwargs), limiter=self.limiter)
        if tool.timeout is None:  # no scope needed: the common case costs nothing extra
            value = await running
            return await _settle(value) if _unsettled(value) else value
        try:
            with anyio.fail_after(tool.timeout):
                value = await running
                return await _settle(value) if _unsettled(value) else value
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
            error_type=type(exc).__name__,
            # An error that carries data for the application (an MCP isError result).
            structured=getattr(exc, "structured", None),
        )

    def _cap(self, content: str) -> str:
        limit = self.max_result_chars
        if limit is None or len(content) <= limit:
            return content
        return (
            f"{content[:limit]}\n[truncated by agentrt: the tool returned {len(content)} "
            f"characters, only the first {limit} are shown]"
        )


#: Types whose values are never awaitable: a result of one of them is settled at once.
_SETTLED = frozenset({str, int, float, bool, type(None), dict, list, tuple, ToolOutput})


def _unsettled(value: Any) -> bool:
    return type(value) is _Pending or inspect.isawaitable(value)


async def _settle(value: Any) -> Any:
    """Await what a tool returned until it is a value (a sync wrapper of an async def)."""
    if type(value) is _Pending:
        value = value.awaitable
    while inspect.isawaitable(value):
        value = await value
    return value


def _run_sync_tool(fn: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
    token = in_sync_tool.set(True)
    try:
        value = fn(**kwargs)
    finally:
        in_sync_tool.reset(token)
    if inspect.isawaitable(value):
        # It will be awaited on the loop, unless the call was abandoned meanwhile: then
        # close it, rather than leave a "never awaited" warning to the garbage collector.
        try:
            anyio.from_thread.check_cancelled()
        except BaseException:
            if inspect.iscoroutine(value):
                value.close()
            raise
        return _Pending(value)  # boxed: trio refuses a thread function returning a coroutine
    return value


class _Pending:
    """An awaitable a sync tool returned, carried out of its worker thread."""

    __slots__ = ("awaitable",)

    def __init__(self, awaitable: Awaitable[Any]) -> None:
        self.awaitable = awaitable


class _InContext(Generic[T]):
    """Await a coroutine with every step of it run in a copy of the current context.

    A coroutine awaited directly shares its task's context; this gives one tool call a
    context of its own (``asyncio.Task(context=...)`` does the same but exists on asyncio
    only, and starting a task per call would cost more than these steps).
    """

    __slots__ = ("_context", "_coro")

    def __init__(self, coro: Coroutine[Any, Any, T]) -> None:
        self._coro = coro
        self._context = contextvars.copy_context()

    def __await__(self) -> Generator[Any, Any, T]:
        coro, run = self._coro, self._context.run
        try:
            signal = run(coro.send, None)
            while True:
                try:
                    value = yield signal
                except GeneratorExit:  # noqa: PERF203 - one step of the coroutine per pass
                    run(coro.close)
                    raise
                except BaseException as exc:
                    signal = run(coro.throw, exc)
                else:
                    signal = run(coro.send, value)
        except StopIteration as stop:
            result: T = stop.value
            return result


def _cancelled(call: ToolCall, started: float) -> ToolResult:
    return ToolResult(
        tool_call_id=call.id,
        name=call.name,
        content="Error: the tool call was cancelled before it finished",
        is_error=True,
        duration=time.perf_counter() - started,
    )


def _not_run(call: ToolCall, cancelled_by: CancelChain) -> ToolResult:
    why = f": {cancelled_by}" if str(cancelled_by) else ""
    return ToolResult(
        tool_call_id=call.id,
        name=call.name,
        content=f"Error: tool {call.name!r} was not run: the chain was cancelled{why}",
        is_error=True,
    )


def _check_hook(
    name: str, cb: Callable[..., Any] | None, params: tuple[str, ...]
) -> Callable[..., Any] | None:
    """Check that ``cb`` can be called as ``name(*params)``; return its async form.

    Raises:
        UsageError: ``cb`` is not callable, or its signature does not take ``params``.
    """
    if cb is None:
        return None
    call = f"{name}({', '.join(params)})"
    if not callable(cb):
        raise UsageError(f"{name}= takes a function called as {call}, got {cb!r}")
    try:
        signature = inspect.signature(cb)
    except (TypeError, ValueError):  # no signature to read (some builtins): trust it
        return as_async(cb)
    try:
        signature.bind(*params)
    except TypeError as exc:
        shown = getattr(cb, "__qualname__", None) or repr(cb)
        raise UsageError(
            f"{name}={shown}{signature} cannot be called as {call} ({exc}); "
            f"define it as def {call}: ... (or async def)"
        ) from None
    return as_async(cb)


#: The code of the wrapper ``callbacks.as_async`` puts around a sync callable.
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
