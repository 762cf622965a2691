"""Running tools: awaitables, encoding failures, hook misuse, tool_errors, context, order."""

from __future__ import annotations

import contextvars
import functools
import json
import logging
import threading
import time
from typing import Any

import anyio
import anyio.lowlevel
import pytest

import agentrt
from agentrt import (
    CallbackHandler,
    CancelChain,
    Message,
    ToolCall,
    ToolError,
    ToolResult,
    UsageError,
    tool,
)
from agentrt._execute import ToolRunner
from agentrt.callbacks import NO_HOOKS
from agentrt.testing import FunctionModel, ModelTurn, call
from agentrt.tools import collect_tools

pytestmark = pytest.mark.anyio


def calls_then_answer(*calls: Any) -> FunctionModel:
    """A model that makes ``calls`` in its first turn, then answers with the results."""

    def script(messages: list[Message], tools: Any) -> ModelTurn | str:
        if messages[-1].role == "user":
            return ModelTurn(tool_calls=list(calls))
        results = [m for m in messages if m.role == "tool"]
        return " | ".join(f"{m.name}:{m.is_error}:{m.content}" for m in results)

    return FunctionModel(script)


# --- point 7: an awaitable returned by a sync tool is awaited, never stringified ---------


def logged(fn: Any) -> Any:
    """The decorator users write: a plain def around whatever it wraps."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)

    return wrapper


@tool
@logged
async def lookup(key: str) -> str:
    """Look a key up."""
    await anyio.lowlevel.checkpoint()
    return key.upper()


async def test_a_sync_wrapper_around_an_async_def_is_awaited() -> None:
    chain = calls_then_answer(call("lookup", key="ab"), call("lookup", key="cd")).chain(
        "go", tools=[lookup]
    )
    assert await chain.text() == "lookup:False:AB | lookup:False:CD"
    assert "coroutine" not in chain.tool_results[0].content


async def test_an_awaited_result_obeys_the_tool_timeout() -> None:
    @tool(timeout=0.05)
    @logged
    async def slow() -> str:
        await anyio.sleep(10)
        return "never"

    text = await calls_then_answer(call("slow")).chain("go", tools=[slow]).text()
    assert text == "slow:True:Error: tool 'slow' did not finish within its timeout of 0.05 s"


# --- point 10: a result that cannot be encoded is not "raised" ----------------------------


async def test_a_result_that_cannot_be_encoded_says_so() -> None:
    ran: list[str] = []

    @tool
    def raw_bytes() -> bytes:
        ran.append("bytes")
        return b"\xff\xfe"

    @tool
    def circular() -> dict[str, Any]:
        ran.append("circular")
        loop: dict[str, Any] = {}
        loop["self"] = loop
        return loop

    @tool
    def surrogate() -> str:
        ran.append("surrogate")
        return "bad \udcff"

    chain = calls_then_answer(call("raw_bytes"), call("circular"), call("surrogate")).chain(
        "go", tools=[raw_bytes, circular, surrogate]
    )
    await chain.text()
    assert sorted(ran) == ["bytes", "circular", "surrogate"]
    for result in chain.tool_results:
        assert result.is_error
        assert result.content.startswith(
            f"Error: tool {result.name!r} ran but its result could not be encoded: "
        ), result.content
        assert "raised" not in result.content
    assert "utf-8" in chain.tool_results[0].content.lower()
    assert "circular" in chain.tool_results[1].content.lower()


# --- point 11: misuse of before_call / after_call / limiter fails at once ----------------


def two(tool: Any, call: Any) -> None: ...


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"before_call": "print"}, "before_call= takes a function called as before_call"),
        ({"before_call": lambda t: None}, r"cannot be called as before_call\(tool, call\)"),
        ({"before_call": lambda a, b, c: None}, "cannot be called as before_call"),
        ({"after_call": two}, r"after_call=two.* cannot be called as after_call\(tool, call, r"),
        ({"after_call": 42}, "after_call= takes a function"),
        ({"limiter": 5}, r"limiter= takes an anyio.CapacityLimiter, .* got 5"),
    ],
)
async def test_misused_chain_parameters_raise_usage_error_at_once(
    options: dict[str, Any], message: str
) -> None:
    ran: list[int] = []

    @tool
    def add(a: int, b: int) -> int:
        ran.append(a + b)
        return a + b

    model = calls_then_answer(call("add", a=1, b=2))
    with pytest.raises(UsageError, match=message):
        model.chain("go", tools=[add], **options)
    assert ran == []


async def test_hooks_with_defaults_or_varargs_are_accepted() -> None:
    seen: list[str] = []

    async def before(tool: Any, call: Any, *, extra: int = 0) -> None:
        seen.append(f"before {call.name}")

    def after(*args: Any) -> None:
        seen.append(f"after {args[2].content}")

    @tool
    def add(a: int, b: int) -> int:
        return a + b

    model = calls_then_answer(call("add", a=1, b=2))
    assert await model.chain("go", tools=[add], before_call=before, after_call=after).text()
    assert seen == ["before add", "after 3"]


@pytest.mark.parametrize("calls", [1, 2, 3])
async def test_an_after_call_exception_fails_the_chain_plainly(calls: int) -> None:
    """One call or several: the chain fails with the plain exception, never a group."""

    @tool
    async def add(a: int, b: int) -> int:
        await anyio.sleep(0.01 * a)
        return a + b

    def after(tool: Any, call: ToolCall, result: ToolResult) -> None:
        raise LookupError(f"audit log down for call {call.id}")

    model = calls_then_answer(*(call("add", a=i, b=1, id=f"c{i}") for i in range(calls)))
    chain = model.chain("go", tools=[add], after_call=after)
    with pytest.raises(LookupError, match="audit log down for call c0"):
        await chain.text()
    assert chain.status == "failed"
    assert isinstance(chain.error, LookupError)
    # History stays valid: every call of the failed turn has a result.
    tool_messages = [m for m in chain.messages if m.role == "tool"]
    assert [m.tool_call_id for m in tool_messages] == [f"c{i}" for i in range(calls)]


async def test_before_call_refuses_a_call_by_raising() -> None:
    """Tool approval: raising in before_call refuses the call; the model reads why."""
    ran: list[str] = []

    @tool
    def delete(path: str) -> str:
        ran.append(path)
        return "deleted"

    def approve(tool: Any, call: ToolCall) -> None:
        if call.arguments and call.arguments["path"].startswith("/etc"):
            raise PermissionError("not under /etc")

    model = calls_then_answer(call("delete", path="/etc/passwd"), call("delete", path="/tmp/x"))
    text = await model.chain("go", tools=[delete], before_call=approve).text()
    assert text == (
        "delete:True:Error: tool 'delete' was not run: before_call raised PermissionError: "
        "not under /etc | delete:False:deleted"
    )
    assert ran == ["/tmp/x"]


# --- point 21: tool failures are logged; tool_errors="raise" -----------------------------


async def test_a_failing_tool_is_logged_with_its_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    @tool
    def divide(a: int, b: int) -> float:
        return a / b

    # No level set on purpose: what logging.basicConfig() shows (WARNING and above).
    text = await calls_then_answer(call("divide", a=1, b=0)).chain("go", tools=[divide]).text()
    assert text == "divide:True:Error: tool 'divide' raised ZeroDivisionError: division by zero"
    [record] = [r for r in caplog.records if r.name == "agentrt.tools"]
    assert record.levelno == logging.WARNING
    assert "tool 'divide' raised ZeroDivisionError" in record.getMessage()
    assert record.exc_info is not None and record.exc_info[0] is ZeroDivisionError
    assert "return a / b" in caplog.text  # the traceback reaches the tool's own line


async def run_turn(tools: list[Any], calls: list[ToolCall], **settings: Any) -> Any:
    """Run one turn's calls through the chain's tool runner."""
    runner = ToolRunner(collect_tools(tools), **settings)
    return runner, await runner.run(calls, NO_HOOKS, None)


def tool_call(name: str, id: str, **arguments: Any) -> ToolCall:
    return ToolCall(id=id, name=name, arguments=arguments, raw_arguments=json.dumps(arguments))


def failing_work(finished: list[int]) -> Any:
    @tool
    async def work(i: int) -> int:
        if i == 0:
            raise KeyError("missing row")
        await anyio.sleep(5)  # a sibling still running when the failure comes: cancelled
        finished.append(i)
        return i

    return work


@pytest.mark.parametrize("calls", [1, 3])
async def test_tool_errors_raise_reraises_the_tool_exception_from_the_runner(calls: int) -> None:
    finished: list[int] = []
    work = failing_work(finished)
    start = time.perf_counter()
    with pytest.raises(KeyError, match="missing row"):
        await run_turn(
            [work], [tool_call("work", f"c{i}", i=i) for i in range(calls)], tool_errors="raise"
        )
    assert time.perf_counter() - start < 2  # the siblings were cancelled, not waited for
    assert finished == []


async def test_tool_errors_raise_starts_no_queued_sync_call() -> None:
    started: list[int] = []

    @tool
    def work(i: int) -> int:
        started.append(i)
        if i == 0:
            raise KeyError("missing row")
        return i

    calls = [tool_call("work", f"c{i}", i=i) for i in range(20)]
    with pytest.raises(KeyError):
        await run_turn([work], calls, tool_errors="raise", limiter=anyio.CapacityLimiter(1))
    assert started == [0]  # one thread token: the queued calls were never started


async def test_tool_errors_raise_keeps_the_failed_result_for_history() -> None:
    runner = ToolRunner(collect_tools([failing_work([])]), tool_errors="raise")
    with pytest.raises(KeyError):
        await runner.run([tool_call("work", f"c{i}", i=i) for i in range(3)], NO_HOOKS, None)
    first, *rest = runner.results_so_far
    assert first is not None
    assert first.content == "Error: tool 'work' raised KeyError: 'missing row'"
    assert rest == [None, None]  # the chain gives cancelled calls their "cancelled" results


@pytest.mark.parametrize("calls", [1, 3])
async def test_tool_errors_raise_fails_the_chain_with_the_tool_exception(calls: int) -> None:
    finished: list[int] = []
    model = calls_then_answer(*(call("work", i=i, id=f"c{i}") for i in range(calls)))
    chain = model.chain("go", tools=[failing_work(finished)], tool_errors="raise")
    with pytest.raises(KeyError, match="missing row"):
        await chain.text()
    assert finished == []
    assert chain.status == "failed" and isinstance(chain.error, KeyError)
    results = [m for m in chain.messages if m.role == "tool"]
    assert [m.tool_call_id for m in results] == [f"c{i}" for i in range(calls)]
    assert results[0].content == "Error: tool 'work' raised KeyError: 'missing row'"
    assert all("cancelled" in m.content for m in results[1:])


async def test_tool_errors_raise_keeps_model_errors_as_results() -> None:
    """Bad arguments, unknown tools and a ToolError raised on purpose are for the model."""

    @tool
    def check(n: int) -> int:
        raise ToolError("n must be even")

    calls = [tool_call("check", "a", n="x"), tool_call("nope", "b"), tool_call("check", "c", n=1)]
    _, results = await run_turn([check], calls, tool_errors="raise")
    assert [r.is_error for r in results] == [True, True, True]
    assert results[2].content == "Error: n must be even"


async def test_tool_errors_is_validated() -> None:
    with pytest.raises(UsageError, match='tool_errors= takes "model" or "raise", got \'strict\''):
        ToolRunner({}, tool_errors="strict")  # type: ignore[arg-type]


async def test_chain_tool_errors_is_validated() -> None:
    with pytest.raises(UsageError, match="tool_errors="):
        calls_then_answer().chain("go", tool_errors="strict")


# --- contract 5: one call's hooks and tool share a task and a context --------------------


span: contextvars.ContextVar[str] = contextvars.ContextVar("span", default="none")


class Tracer(CallbackHandler):
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str, Any]] = []

    def on_tool_start(self, response: Any, call: ToolCall) -> None:
        assert span.get() == "none", "a previous call's context leaked into this one"
        span.set(f"span-{call.id}")
        self.events.append(("start", call.id, span.get(), _task()))

    async def on_tool_end(self, response: Any, call: ToolCall, result: ToolResult) -> None:
        self.events.append(("end", call.id, span.get(), _task()))

    def on_tool_error(self, response: Any, call: ToolCall, result: ToolResult) -> None:
        self.events.append(("error", call.id, span.get(), _task()))


def _task() -> Any:
    return anyio.get_current_task().id


@pytest.mark.parametrize("calls", [1, 5])
async def test_on_tool_start_context_reaches_the_tool_and_nothing_else(calls: int) -> None:
    inside: dict[str, tuple[str, Any]] = {}

    @tool
    def sync_tool(n: int) -> str:
        inside[f"s{n}"] = (span.get(), threading.get_ident())
        return span.get()

    @tool
    async def async_tool(n: int) -> str:
        inside[f"a{n}"] = (span.get(), _task())
        await anyio.sleep(0.01)
        return span.get()

    @tool
    def failing(n: int) -> str:
        raise RuntimeError(span.get())

    scripted = []
    for n in range(calls):
        scripted += [
            call("sync_tool", n=n, id=f"s{n}"),
            call("async_tool", n=n, id=f"a{n}"),
            call("failing", n=n, id=f"f{n}"),
        ]
    tracer = Tracer()
    limiter = anyio.CapacityLimiter(2)  # several sync calls fed through one task
    model = calls_then_answer(*scripted)
    chain = model.chain(
        "go", tools=[sync_tool, async_tool, failing], callbacks=[tracer], limiter=limiter
    )
    await chain.text()
    assert span.get() == "none"  # nothing leaked into the chain's own context
    for result in chain.tool_results:
        expected = f"span-{result.tool_call_id}"
        assert expected in result.content, result
    for key, (seen, _) in inside.items():
        assert seen == f"span-{key}"
    by_call: dict[str, list[tuple[str, str, Any]]] = {}
    for kind, call_id, seen, task in tracer.events:
        by_call.setdefault(call_id, []).append((kind, seen, task))
    for call_id, events in by_call.items():
        kinds = [k for k, _, _ in events]
        assert kinds == ["start", "error" if call_id.startswith("f") else "end"], call_id
        assert {seen for _, seen, _ in events} == {f"span-{call_id}"}
        assert len({task for _, _, task in events}) == 1  # one task per call
        if call_id.startswith("a"):
            assert inside[call_id][1] == events[0][2]  # the async tool ran in that task


# --- issue 12: @tool(sequential=True) --------------------------------------------------------


async def test_a_sequential_tool_runs_alone_after_the_others() -> None:
    timeline: list[tuple[str, str]] = []
    running = 0
    overlap: list[str] = []

    async def enter(name: str) -> None:
        nonlocal running
        running += 1
        timeline.append(("start", name))
        await anyio.sleep(0.05)
        timeline.append(("end", name))
        running -= 1

    @tool(sequential=True)
    async def write(key: str) -> str:
        if running:
            overlap.append(key)
        await enter(f"write {key}")
        return f"wrote {key}"

    @tool
    async def read(key: str) -> str:
        await enter(f"read {key}")
        return f"read {key}"

    @tool
    def read_sync(key: str) -> str:
        time.sleep(0.05)
        timeline.append(("sync", key))
        return f"sync {key}"

    model = calls_then_answer(
        call("write", key="a"),
        call("read", key="b"),
        call("write", key="c"),
        call("read_sync", key="d"),
        call("read", key="e"),
    )
    text = await model.chain("go", tools=[write, read, read_sync]).text()
    assert text == (  # results in the model's order
        "write:False:wrote a | read:False:read b | write:False:wrote c | "
        "read_sync:False:sync d | read:False:read e"
    )
    assert overlap == []
    writes = [i for i, (_, name) in enumerate(timeline) if name.startswith("write")]
    others = [i for i, (_, name) in enumerate(timeline) if not name.startswith("write")]
    assert max(others) < min(writes)  # every other call finished before the first write
    assert [name for kind, name in timeline if kind == "start" and "write" in name] == [
        "write a",
        "write c",
    ]


async def test_sequential_calls_do_not_run_after_cancel_chain() -> None:
    ran: list[str] = []

    @tool(sequential=True)
    def send_email(to: str) -> str:
        ran.append(to)
        return "sent"

    @tool
    def check(to: str) -> str:
        raise CancelChain("user is blocked")

    model = calls_then_answer(call("send_email", to="x"), call("check", to="x"))
    chain = model.chain("go", tools=[send_email, check])
    await chain.text()
    assert chain.status == "cancelled"
    assert ran == []
    first = chain.tool_results[0]
    assert first.is_error
    assert first.content == (
        "Error: tool 'send_email' was not run: the chain was cancelled: user is blocked"
    )


async def test_a_tool_output_gives_the_model_its_text_and_the_application_its_data() -> None:
    @tool
    def lookup(city: str) -> agentrt.ToolOutput:
        """Look a city up."""
        return agentrt.ToolOutput(
            f"{city}: 2.1 million people",
            structured={"city": city, "population": 2_100_000},
            media=({"type": "image", "mimeType": "image/png", "data": "iVBORw0K"},),
        )

    seen: list[agentrt.ToolResult] = []

    class Keep(agentrt.CallbackHandler):
        def on_tool_end(self, response: Any, call: Any, result: agentrt.ToolResult) -> None:
            seen.append(result)

    model = FunctionModel(
        lambda messages, tools: (
            ModelTurn(tool_calls=[call("lookup", city="Paris")])
            if messages[-1].role == "user"
            else f"read: {messages[-1].content}"
        )
    )
    chain = model.chain("go", tools=[lookup], callbacks=[Keep()])
    assert await chain.text() == "read: Paris: 2.1 million people"
    (result,) = chain.tool_results
    assert result.structured == {"city": "Paris", "population": 2_100_000}
    assert result.media == [{"type": "image", "mimeType": "image/png", "data": "iVBORw0K"}]
    assert seen == [result]
