"""on_done, CallbackHandler and track_usage."""

from __future__ import annotations

import contextvars
import logging
from typing import Any

import anyio
import pytest

from agentrt import CallbackHandler, Usage, UsageError, get_async_model, tool, track_usage
from agentrt.errors import ServerError
from agentrt.testing import FunctionModel, ModelTurn, call

pytestmark = pytest.mark.anyio

tenant: contextvars.ContextVar[str] = contextvars.ContextVar("tenant", default="none")


@tool
def add(a: int, b: int) -> int:
    return a + b


def two_turns(messages: list[Any], tools: Any) -> ModelTurn:
    if messages[-1].role == "user":
        return ModelTurn(tool_calls=[call("add", a=1, b=2)], usage=Usage.of(10, 2))
    return ModelTurn(text="sum is " + messages[-1].content, usage=Usage.of(20, 3))


def failing(messages: list[Any], tools: Any) -> ModelTurn:
    raise ServerError("model exploded", provider="function", status=500)


async def test_on_done_runs_once_on_success_in_order_and_isolated(
    caplog: pytest.LogCaptureFixture,
) -> None:
    model = FunctionModel(two_turns)
    chain = model.chain("go", tools=[add])
    order: list[str] = []

    @chain.on_done
    def first(c: Any) -> None:
        order.append(f"first:{c.status}")
        raise ValueError("callback bug")

    async def second(c: Any) -> None:
        await anyio.sleep(0.01)  # awaited before the chain's result returns
        order.append(f"second:{tenant.get()}")

    assert chain.on_done(second) is second
    tenant.set("acme")
    with caplog.at_level(logging.ERROR, logger="agentrt"):
        text = await chain.text()
    assert text == "sum is 3"
    assert order == ["first:completed", "second:acme"]
    assert "callback bug" in caplog.text
    await chain.text()  # consuming again runs nothing twice
    assert len(order) == 2


async def test_on_done_on_failure() -> None:
    chain = FunctionModel(failing).chain("go")
    seen: list[Any] = []
    chain.on_done(lambda c: seen.append((c.status, c.error)))
    with pytest.raises(ServerError, match="model exploded"):
        await chain.text()
    assert seen == [("failed", chain.error)]
    assert isinstance(chain.error, ServerError)
    assert chain.responses[0].status == "failed"


async def test_on_done_on_cancellation_runs_async_callbacks_shielded() -> None:
    started = anyio.Event()

    @tool
    async def hang() -> str:
        started.set()
        await anyio.sleep(60)
        return "never"

    model = FunctionModel(lambda m, t: ModelTurn(tool_calls=[call("hang")]))
    chain = model.chain("go", tools=[hang])
    seen: list[str] = []
    turn_seen: list[str] = []

    async def cb(c: Any) -> None:
        await anyio.sleep(0.01)  # would raise if not shielded
        seen.append(c.status)

    chain.on_done(cb)
    async with anyio.create_task_group() as tg:

        async def run() -> None:
            await chain.text()

        tg.start_soon(run)
        await started.wait()
        chain.responses[0].on_done(lambda r: turn_seen.append(r.status))
        tg.cancel_scope.cancel()
    assert seen == ["cancelled"]
    assert chain.status == "cancelled"
    assert turn_seen == ["completed"]  # the turn itself had finished; registered late
    # history stays valid: the unfinished call got a synthetic result
    assert chain.messages[-1].role == "tool"
    assert "cancelled" in chain.messages[-1].content


async def test_late_registration_runs_at_once() -> None:
    chain = FunctionModel(lambda m, t: "hi").chain("go")
    await chain.text()
    seen: list[str] = []
    chain.on_done(lambda c: seen.append("sync"))
    assert seen == ["sync"]
    done = anyio.Event()

    async def late(c: Any) -> None:
        seen.append("async")
        done.set()

    chain.on_done(late)
    with anyio.fail_after(2):
        await done.wait()
    assert seen == ["sync", "async"]


async def test_response_on_done_for_prompt() -> None:
    response = get_async_model("offline").prompt("hello")
    seen: list[Any] = []
    response.on_done(lambda r: seen.append((r.status, r.usage)))
    assert "hello" in await response.text()
    assert seen == [("completed", response.usage)]
    assert response.usage is not None and response.usage.input_tokens == 1


class Recorder(CallbackHandler):
    def __init__(self) -> None:
        self.events: list[str] = []

    def on_chain_start(self, chain: Any) -> None:
        self.events.append("chain_start")

    async def on_turn_start(self, response: Any) -> None:
        self.events.append(f"turn_start:{response.turn}")

    def on_chunk(self, response: Any, chunk: Any) -> None:
        if chunk.finish_reason:
            self.events.append(f"finish:{chunk.finish_reason}")

    def on_turn_end(self, response: Any) -> None:
        self.events.append(f"turn_end:{response.turn}:{response.status}")

    async def on_tool_start(self, response: Any, call: Any) -> None:
        self.events.append(f"tool_start:{call.name}")

    def on_tool_end(self, response: Any, call: Any, result: Any) -> None:
        self.events.append(f"tool_end:{result.content}")

    def on_tool_error(self, response: Any, call: Any, result: Any) -> None:
        self.events.append(f"tool_error:{type(result.error).__name__}")

    def on_chain_end(self, chain: Any) -> None:
        self.events.append(f"chain_end:{chain.status}")

    def on_error(self, owner: Any, error: BaseException) -> None:
        self.events.append(f"error:{type(owner).__name__}")


class Broken(CallbackHandler):
    def on_turn_start(self, response: Any) -> None:
        raise RuntimeError("handler bug")


async def test_callback_handler_sees_every_event_and_is_isolated() -> None:
    def script(messages: list[Any], tools: Any) -> ModelTurn:
        if messages[-1].role == "user":
            return ModelTurn(tool_calls=[call("add", a=1, b=2), call("nope")])
        return ModelTurn(text="done")

    rec = Recorder()
    chain = FunctionModel(script).chain("go", tools=[add], callbacks=[Broken(), rec])
    assert await chain.text() == "done"
    # the two calls run concurrently: their events interleave in any order, but each
    # call's start comes before its end
    tool_events = rec.events[4:8]
    assert sorted(tool_events) == sorted(
        ["tool_start:add", "tool_start:nope", "tool_end:3", "tool_error:UnknownToolError"]
    )
    assert tool_events.index("tool_start:add") < tool_events.index("tool_end:3")
    assert tool_events.index("tool_start:nope") < tool_events.index("tool_error:UnknownToolError")
    del rec.events[4:8]
    assert rec.events == [
        "chain_start",
        "turn_start:0",
        "finish:tool_calls",
        "turn_end:0:completed",
        "turn_start:1",
        "finish:stop",
        "turn_end:1:completed",
        "chain_end:completed",
    ]


async def test_callback_handler_on_error_and_model_level_handlers() -> None:
    rec = Recorder()
    model = FunctionModel(failing, callbacks=[rec])
    with pytest.raises(ServerError):
        await model.chain("go").text()
    assert rec.events == [
        "chain_start",
        "turn_start:0",
        "error:AsyncResponse",
        "turn_end:0:failed",
        "error:AsyncChain",
        "chain_end:failed",
    ]


async def test_on_chunk_receives_every_chunk() -> None:
    chunks: list[str] = []

    async def on_chunk(chunk: Any) -> None:
        chunks.append(chunk.content)

    chain = get_async_model("offline").chain("one two three", on_chunk=on_chunk)
    text = await chain.text()
    assert "".join(chunks) == text
    assert len(chunks) >= 5


async def test_track_usage_sums_100_concurrent_chains_and_nests() -> None:
    model = FunctionModel(two_turns)
    other = FunctionModel(lambda m, t: ModelTurn(text="x", usage=Usage.of(1, 1)), name="other")
    chains: list[Any] = []
    with track_usage() as outer:

        async def run_one() -> None:
            chain = model.chain("go", tools=[add])
            chains.append(chain)
            await chain.text()

        async with anyio.create_task_group() as tg:
            for _ in range(100):
                tg.start_soon(run_one)
        with track_usage() as inner:
            await other.prompt("hi").text()
    expected = sum((c.usage for c in chains), Usage())
    assert expected == Usage.of(3000, 500)
    assert outer.usage == expected + Usage.of(1, 1)
    assert inner.usage == Usage.of(1, 1)
    assert outer.by_model == {"function:function": expected, "function:other": Usage.of(1, 1)}
    assert (outer.input_tokens, outer.output_tokens, outer.total_tokens) == (3001, 501, 3502)


async def test_usage_none_when_not_reported() -> None:
    chain = FunctionModel(lambda m, t: "x").chain("go")
    await chain.text()
    assert chain.responses[0].usage is None
    assert chain.usage is None


def test_wrong_callback_object_is_a_clear_error() -> None:
    with pytest.raises(UsageError, match="CallbackHandler"):
        get_async_model("offline", callbacks=[object()])
