"""Running tool calls: threads, concurrency, limiter, error results, CancelChain."""

from __future__ import annotations

import contextvars
import json
import threading
import time
from typing import Any

import anyio
import pytest

from agentrt import CancelChain, ChainLimitError, Message, ToolError, tool
from agentrt.testing import FunctionModel, ModelTurn, call

pytestmark = pytest.mark.anyio

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


def calls_then_answer(*calls: Any) -> FunctionModel:
    """A model that makes ``calls`` in its first turn, then answers with the results."""

    def script(messages: list[Message], tools: Any) -> ModelTurn | str:
        if messages[-1].role == "user":
            return ModelTurn(tool_calls=list(calls))
        results = [m for m in messages if m.role == "tool"]
        return " | ".join(f"{m.name}:{m.is_error}:{m.content}" for m in results)

    return FunctionModel(script)


async def test_sync_tool_runs_in_worker_thread_while_loop_keeps_ticking() -> None:
    loop_thread = threading.get_ident()
    seen: dict[str, Any] = {}

    @tool
    def blocking(x: int) -> int:
        seen["thread"] = threading.get_ident()
        seen["request_id"] = request_id.get()
        time.sleep(0.2)
        return x * 2

    ticks = 0
    done = anyio.Event()

    async def heartbeat() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await anyio.sleep(0.01)

    request_id.set("req-42")
    model = calls_then_answer(call("blocking", x=21))
    async with anyio.create_task_group() as tg:
        tg.start_soon(heartbeat)
        chain = model.chain("go", tools=[blocking])
        text = await chain.text()
        done.set()
    assert text == "blocking:False:42"
    assert seen["thread"] != loop_thread
    assert seen["request_id"] == "req-42"
    assert ticks >= 5  # the loop was free during the 0.2 s the tool blocked


async def test_async_tools_of_one_turn_run_concurrently_and_keep_order() -> None:
    @tool
    async def slow_a() -> str:
        await anyio.sleep(0.2)
        return "a"

    @tool
    async def slow_b() -> str:
        await anyio.sleep(0.2)
        return "b"

    @tool
    async def fast() -> str:
        return "f"

    model = calls_then_answer(call("slow_a"), call("fast"), call("slow_b"))
    start = time.perf_counter()
    text = await model.chain("go", tools=[slow_a, slow_b, fast]).text()
    elapsed = time.perf_counter() - start
    assert text == "slow_a:False:a | fast:False:f | slow_b:False:b"
    assert elapsed < 0.35  # parallel, not serial (serial would be >= 0.4 s)


async def test_limiter_bounds_sync_tool_threads() -> None:
    active = 0
    peak = 0
    lock = threading.Lock()

    @tool
    def work(i: int) -> int:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        time.sleep(0.02)
        with lock:
            active -= 1
        return i

    model = calls_then_answer(*(call("work", i=i) for i in range(12)))
    limiter = anyio.CapacityLimiter(3)
    chain = model.chain("go", tools=[work], limiter=limiter)
    await chain.text()
    assert peak == 3
    assert [r.content for r in chain.tool_results] == [str(i) for i in range(12)]


async def test_every_error_path_becomes_an_error_result_and_the_chain_completes() -> None:
    @tool
    def add(a: int, b: int) -> int:
        return a + b

    @tool
    def boom() -> None:
        raise RuntimeError("disk on fire")

    @tool
    def polite() -> None:
        raise ToolError("try again with a smaller number")

    @tool(timeout=0.05)
    async def sleepy() -> str:
        await anyio.sleep(5)
        return "never"

    @tool(timeout=0.05)
    def sleepy_sync() -> str:
        time.sleep(0.3)
        return "never"

    model = calls_then_answer(
        call("add", '{"a": 1, "b": '),  # invalid JSON
        call("add", a="one", b=2),  # failed validation
        call("nope"),  # unknown tool
        call("boom"),  # raises
        call("polite"),  # ToolError: message passed as is
        call("sleepy"),  # async timeout
        call("sleepy_sync"),  # sync timeout (thread abandoned)
        call("add", "[1, 2]"),  # JSON but not an object
        call("add", a=1, b=2),  # fine
    )
    chain = model.chain("go", tools=[add, boom, polite, sleepy, sleepy_sync])
    await chain.text()
    assert chain.status == "completed"
    results = chain.tool_results
    assert [r.is_error for r in results] == [True] * 8 + [False]
    contents = [r.content for r in results]
    assert "not valid JSON" in contents[0] and '{"a": 1, "b": ' in contents[0]
    assert "invalid arguments for tool 'add'" in contents[1] and "JSON Schema" in contents[1]
    assert "no tool named 'nope'" in contents[2] and "add" in contents[2]
    assert "RuntimeError: disk on fire" in contents[3]
    assert contents[4] == "Error: try again with a smaller number"
    assert "timeout of 0.05 s" in contents[5]
    assert "timeout of 0.05 s" in contents[6]
    assert "not an object" in contents[7]
    assert contents[8] == "3"
    assert isinstance(results[3].error, RuntimeError)
    # the errors went back to the model, in order, as tool messages
    tool_msgs = [m for m in chain.messages if m.role == "tool"]
    assert [m.is_error for m in tool_msgs] == [r.is_error for r in results]
    assert chain.responses[0].tool_results == results
    first_call = (await chain.responses[0].tool_calls())[0]
    assert first_call.arguments is None
    assert first_call.raw_arguments == '{"a": 1, "b": '


async def test_non_string_results_are_serialised_as_json() -> None:
    from pydantic import BaseModel

    class Point(BaseModel):
        x: int
        y: int

    @tool
    def point() -> Point:
        return Point(x=1, y=2)

    @tool
    def data() -> dict[str, Any]:
        return {"a": [1, 2], "b": None}

    model = calls_then_answer(call("point"), call("data"))
    chain = model.chain("go", tools=[point, data])
    await chain.text()
    assert [json.loads(r.content) for r in chain.tool_results] == [
        {"x": 1, "y": 2},
        {"a": [1, 2], "b": None},
    ]


async def test_cancel_chain_from_a_tool_ends_the_chain_cleanly() -> None:
    @tool
    def stop() -> None:
        raise CancelChain("user said stop")

    @tool
    async def other() -> str:
        return "fine"

    model = calls_then_answer(call("stop"), call("other"))
    chain = model.chain("go", tools=[stop, other])
    text = await chain.text()
    assert text == ""
    assert chain.status == "cancelled"
    assert isinstance(chain.error, CancelChain)
    assert len(chain.responses) == 1
    # the sibling still ran and every call has a result: history stays valid
    assert [r.content for r in chain.tool_results] == [
        "Error: chain cancelled: user said stop",
        "fine",
    ]
    assert [m.role for m in chain.messages] == ["user", "assistant", "tool", "tool"]


async def test_cancel_chain_from_before_call() -> None:
    ran = []

    @tool
    def guarded() -> str:
        ran.append(1)
        return "x"

    async def before(t: Any, c: Any) -> None:
        raise CancelChain("not allowed")

    chain = calls_then_answer(call("guarded")).chain("go", tools=[guarded], before_call=before)
    await chain.text()
    assert chain.status == "cancelled"
    assert ran == []


async def test_before_and_after_call_sync_or_async() -> None:
    seen: list[Any] = []

    @tool
    def add(a: int, b: int) -> int:
        return a + b

    def before(t: Any, c: Any) -> None:
        seen.append(("before", t.name, c.arguments))

    async def after(t: Any, c: Any, r: Any) -> None:
        seen.append(("after", t.name, r.content))

    chain = calls_then_answer(call("add", a=1, b=2)).chain(
        "go", tools=[add], before_call=before, after_call=after
    )
    await chain.text()
    assert seen == [("before", "add", {"a": 1, "b": 2}), ("after", "add", "3")]


async def test_max_turns_raises_chain_limit_error_with_responses() -> None:
    @tool
    def again() -> str:
        return "more"

    model = FunctionModel(lambda messages, tools: ModelTurn(tool_calls=[call("again")]))
    chain = model.chain("loop", tools=[again], max_turns=3)
    with pytest.raises(ChainLimitError, match="max_turns=3") as info:
        await chain.text()
    assert len(info.value.responses) == 3
    assert chain.status == "failed"
    # every call of the last turn still got its result
    assert chain.messages[-1].role == "tool"


async def test_tool_output_is_capped_with_a_marker() -> None:
    @tool
    def big() -> str:
        return "x" * 10_000

    chain = calls_then_answer(call("big")).chain("go", tools=[big], max_tool_output=100)
    await chain.text()
    content = chain.tool_results[0].content
    assert content.startswith("x" * 100)
    assert "truncated by agentrt" in content and "10000 characters" in content
