"""The sync facade runs the same async core: parity, guards, contextvars."""

from __future__ import annotations

import contextvars
import threading
from typing import Any

import anyio
import pytest

from agentrt import UsageError, async_tool_is, get_async_model, get_model, tool, track_usage
from agentrt.testing import FunctionModel, ModelTurn, call

user: contextvars.ContextVar[str] = contextvars.ContextVar("user", default="nobody")


async def _lookup_async(key: str) -> str:
    return f"async-{key}"


@async_tool_is(_lookup_async)
def lookup(key: str) -> str:
    """Look a key up."""
    return f"sync-{key}"


@tool
def add(a: int, b: int) -> int:
    """Add."""
    return a + b


@tool
async def shout(text: str) -> str:
    """Shout."""
    return text.upper()


def script(messages: list[Any], tools: Any) -> ModelTurn:
    turns = sum(1 for m in messages if m.role == "assistant")
    if turns == 0:
        return ModelTurn(
            text="Let me compute. ", tool_calls=[call("add", a=2, b=3), call("shout", text="hi")]
        )
    if turns == 1:
        return ModelTurn(tool_calls=[call("add", a=messages[-2].content, b=10), call("bad", x=1)])
    return ModelTurn(text=f"Result: {messages[-2].content}")


def transcript(chain: Any, chunks: list[Any]) -> dict[str, Any]:
    return {
        "chunks": [(c.content, c.finish_reason, c.turn) for c in chunks],
        "messages": [
            m.model_dump(exclude={"tool_calls": {"__all__": {"id"}}, "tool_call_id": True})
            for m in chain.messages
        ],
        "statuses": [r.status for r in chain.responses],
        "finish": [r.finish_reason for r in chain.responses],
        "results": [(r.name, r.content, r.is_error) for r in chain.tool_results],
        "status": chain.status,
    }


def test_sync_and_async_give_identical_transcripts() -> None:
    async def run_async() -> dict[str, Any]:
        chain = FunctionModel(script).chain("go", tools=[add, shout])
        chunks = [c async for c in chain]
        return transcript(chain, chunks)

    expected = anyio.run(run_async)
    with get_model(FunctionModel(script)) as model:
        chain = model.chain("go", tools=[add, shout])
        chunks = list(chain)
        got = transcript(chain, chunks)
    assert got == expected
    assert got["results"][0] == ("add", "5", False)
    assert got["results"][2] == ("add", "15", False)
    assert got["chunks"][-1] == ("", "stop", 2)
    assert got["status"] == "completed"


def test_dual_tool_uses_sync_impl_in_sync_chains_and_async_impl_in_async_chains() -> None:
    with get_model("offline") as model:
        chain = model.chain("look it up", tools=[lookup])
        assert "sync-example" in chain.text()

    async def run_async() -> str:
        return await get_async_model("offline").chain("look it up", tools=[lookup]).text()

    assert "async-example" in anyio.run(run_async)


def test_sync_facade_sees_callers_contextvars_and_usage_tracking() -> None:
    seen: list[str] = []

    @tool
    def whoami() -> str:
        seen.append(f"tool:{user.get()}")
        return user.get()

    user.set("alice")
    with get_model("offline") as model, track_usage() as usage:
        chain = model.chain("who", tools=[whoami])
        chain.on_done(lambda c: seen.append(f"done:{user.get()}:{type(c).__name__}"))
        text = chain.text()
    assert "alice" in text
    assert seen == ["tool:alice", "done:alice:Chain"]
    assert usage.usage == chain.usage
    assert usage.total_tokens > 0


def test_sync_prompt_response_and_tool_calls() -> None:
    with get_model("offline") as model:
        response = model.prompt("hello world")
        assert response.text() == 'The offline model (no network) received: "hello world"'
        assert response.status == "completed"
        calls = model.prompt('use {"a": 4, "b": 5}', tools=[add]).tool_calls()
        assert [(c.name, c.arguments) for c in calls] == [("add", {"a": 4, "b": 5})]


def test_sync_conversation_keeps_history() -> None:
    with get_model("offline") as model:
        conv = model.conversation()
        conv.chain("first", tools=[add]).text()
        conv.prompt("second").text()
        roles = [m.role for m in conv.messages]
    assert roles == ["user", "assistant", "tool", "assistant", "user", "assistant"]


def test_breaking_out_of_sync_iteration_cancels_the_chain_and_runs_callbacks() -> None:
    with get_model("offline") as model:
        chain = model.chain("one two three four five six")
        seen: list[str] = []
        chain.on_done(lambda c: seen.append(c.status))
        for _chunk in chain:
            break
        assert seen == ["cancelled"]
        assert chain.status == "cancelled"


@pytest.mark.anyio
async def test_sync_call_inside_event_loop_raises_usage_error() -> None:
    model = get_model("offline")
    with pytest.raises(UsageError, match=r"running .* event loop"):
        model.prompt("hi").text()
    with pytest.raises(UsageError, match="running"):
        list(model.chain("hi"))


@pytest.mark.anyio
async def test_sync_call_inside_sync_tool_raises_usage_error() -> None:
    inner = get_model("offline")
    errors: list[str] = []

    @tool
    def nested() -> str:
        try:
            inner.prompt("x").text()
        except UsageError as exc:
            errors.append(str(exc))
            raise
        return "no"

    chain = get_async_model("offline").chain("go", tools=[nested])
    await chain.text()
    assert "inside a sync tool" in errors[0]
    assert chain.tool_results[0].is_error
    assert "UsageError" in chain.tool_results[0].content


def test_close_stops_the_loop_thread() -> None:
    before = set(threading.enumerate())
    model = get_model("offline")
    model.prompt("hi").text()
    threads = [t for t in set(threading.enumerate()) - before if t.name == "agentrt-sync-loop"]
    assert len(threads) == 1
    model.close()
    assert not threads[0].is_alive()
