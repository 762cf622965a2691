"""The chain loop and single turns through the public async API."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from typing import Any

import anyio
import pytest

from agentrt import CallbackHandler, Message, UsageError, get_async_model, tool
from agentrt._chain import cancelled_results, prompt_messages, tool_messages
from agentrt._response import ToolCallAssembler, parse_arguments
from agentrt.messages import ToolCall, ToolCallDelta
from agentrt.testing import FunctionModel, ModelTurn, call

pytestmark = pytest.mark.anyio


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def script(messages: list[Message], tools: Any) -> ModelTurn:
    if messages[-1].role == "user":
        return ModelTurn(text="Adding. ", tool_calls=[call("add", a=2, b=3)])
    return ModelTurn(text=f"The answer is {messages[-1].content}.")


async def test_chain_streams_every_turn_with_turn_numbers() -> None:
    chain = FunctionModel(script).chain("2+3?", tools=[add])
    chunks = [c async for c in chain]
    assert "".join(c.content for c in chunks) == "Adding. The answer is 5."
    assert [c.finish_reason for c in chunks if c.finish_reason] == ["tool_calls", "stop"]
    assert {c.turn for c in chunks if "Adding" in c.content} == {0}
    assert {c.turn for c in chunks if "answer" in c.content} == {1}
    assert len(chain.responses) == 2
    assert chain.responses[0].finish_reason == "tool_calls"
    assert chain.responses[1].finish_reason == "stop"
    assert await chain.text() == "The answer is 5."  # the final answer: the last turn's text
    assert [c.content async for c in chain] == ["Adding. ", "The answer is 5."]


async def test_prompt_parses_tool_calls_without_running_them() -> None:
    ran: list[int] = []

    @tool
    def record(x: int) -> int:
        ran.append(x)
        return x

    response = FunctionModel(lambda m, t: ModelTurn(tool_calls=[call("record", x=1)])).prompt(
        "go", tools=[record]
    )
    calls = await response.tool_calls()
    assert [(c.name, c.arguments, c.raw_arguments) for c in calls] == [
        ("record", {"x": 1}, '{"x": 1}')
    ]
    assert ran == []
    assert response.finish_reason == "tool_calls"
    assert response.model == "function:function"


async def test_prompt_from_message_history_and_system() -> None:
    seen: dict[str, Any] = {}

    def capture(messages: list[Message], tools: Any) -> str:
        seen["roles"] = [m.role for m in messages]
        return "ok"

    history = [
        Message(role="user", content="hi"),
        Message(role="assistant", content="hello"),
        {"role": "user", "content": "again"},
    ]
    response = FunctionModel(capture).prompt(history, system="be brief")
    assert await response.text() == "ok"
    assert seen["roles"] == ["user", "assistant", "user"]
    assert response.request.system == "be brief"


async def test_conversation_continues_history() -> None:
    conv = FunctionModel(script).conversation(system="sys")
    await conv.chain("first", tools=[add]).text()
    await conv.chain("second", tools=[add]).text()
    assert [m.role for m in conv.messages] == [
        "user",
        "assistant",
        "tool",
        "assistant",
        "user",
        "assistant",
        "tool",
        "assistant",
    ]
    response = conv.prompt("third")
    await response.text()
    # prompt() does not run tools: the call it asked for is answered "not run".
    assert conv.messages[-3].content == "third"
    assert [m.role for m in conv.messages[-3:]] == ["user", "assistant", "tool"]
    assert conv.messages[-1].is_error and "not run" in conv.messages[-1].content


async def test_stream_false_gives_identical_results() -> None:
    model = get_async_model("offline")
    streamed = model.chain("sum", tools=[add])
    whole = model.chain("sum", tools=[add], stream=False)
    assert await streamed.text() == await whole.text()
    assert [m.model_dump() for m in streamed.messages] == [m.model_dump() for m in whole.messages]
    assert streamed.usage == whole.usage
    assert len(streamed.responses[1].text_so_far.split()) > 1
    plain = get_async_model("offline", stream=False).prompt("a b c")
    assert [c.content async for c in plain][0] == await model.prompt("a b c").text()


async def test_breaking_out_early_closes_the_chain() -> None:
    chain = get_async_model("offline").chain("one two three four five")
    seen: list[str] = []
    chain.on_done(lambda c: seen.append(c.status))
    async with anyio.create_task_group():
        iterator = chain.__aiter__()
        await iterator.__anext__()
        await iterator.aclose()
    assert seen == ["cancelled"]
    assert chain.responses[0].status == "cancelled"


async def test_bad_arguments_are_clear() -> None:
    model = get_async_model("offline")
    with pytest.raises(UsageError, match="prompt must be"):
        model.chain([])
    with pytest.raises(UsageError, match="max_turns"):
        model.chain("x", max_turns=0)


async def test_consuming_a_failed_chain_again_reraises() -> None:
    def broken(messages: list[Message], tools: Any) -> str:
        raise ValueError("script bug")

    chain = FunctionModel(broken).chain("go")
    with pytest.raises(ValueError, match="script bug"):
        await chain.text()
    with pytest.raises(ValueError, match="script bug"):
        await chain.text()


def test_io_free_helpers() -> None:
    assert prompt_messages("hi") == [Message(role="user", content="hi")]
    assert parse_arguments("") == {}
    assert parse_arguments("  ") == {}
    assert parse_arguments('{"a": 1}') == {"a": 1}
    assert parse_arguments("[1]") is None
    assert parse_arguments('{"a": ') is None
    calls = [ToolCall(id="c1", name="f", arguments={}, raw_arguments="")]
    msgs = tool_messages(cancelled_results(calls))
    assert msgs[0].role == "tool" and msgs[0].tool_call_id == "c1" and msgs[0].is_error


def test_tool_call_assembler_groups_fragments_by_index() -> None:
    asm = ToolCallAssembler()
    asm.add(ToolCallDelta(1, "id1", "second", '{"b"'))
    asm.add(ToolCallDelta(0, "id0", "first", '{"a": '))
    asm.add(ToolCallDelta(1, None, None, ": 2}"))
    asm.add(ToolCallDelta(0, "id0", "first", "1}"))  # a compat server repeating id and name
    asm.add(ToolCallDelta(2, None, "third", ""))
    calls = asm.calls()
    assert [(c.id, c.name, c.arguments) for c in calls[:2]] == [
        ("id0", "first", {"a": 1}),
        ("id1", "second", {"b": 2}),
    ]
    assert calls[2].name == "third" and calls[2].arguments == {}
    assert calls[2].id.startswith("call_")


@pytest.fixture
def no_cyclic_gc() -> Iterator[None]:
    """Turn the cyclic collector off: what is freed then was freed by refcounting."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


class EveryHook(CallbackHandler):
    def on_chain_start(self, chain: Any) -> None:
        chain.on_done(lambda c: None)

    async def on_turn_start(self, response: Any) -> None:
        @response.on_done
        async def done(r: Any) -> None:
            assert r.chain is not None

    def on_chunk(self, response: Any, chunk: Any) -> None: ...
    def on_turn_end(self, response: Any) -> None: ...
    def on_tool_start(self, response: Any, call: Any) -> None: ...
    def on_tool_end(self, response: Any, call: Any, result: Any) -> None: ...
    def on_chain_end(self, chain: Any) -> None: ...


@pytest.mark.parametrize("how", ["text", "iterate", "hooks"])
async def test_a_finished_chain_is_freed_by_refcounting(no_cyclic_gc: None, how: str) -> None:
    @tool
    async def add_async(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    def two_tools(messages: list[Message], tools: Any) -> ModelTurn:
        if messages[-1].role == "user":
            return ModelTurn(
                text="Adding. ", tool_calls=[call("add", a=2, b=3), call("add_async", a=1, b=1)]
            )
        return ModelTurn(text="Done.")

    model = FunctionModel(two_tools)
    callbacks = [EveryHook()] if how == "hooks" else []
    chain = model.chain("2+3?", tools=[add, add_async], callbacks=callbacks)
    if how == "iterate":
        assert "".join([c.content async for c in chain]) == "Adding. Done."
    else:
        assert await chain.text() == "Done."
    first = chain.responses[0]
    assert first.chain is chain
    chain_ref, response_ref = weakref.ref(chain), weakref.ref(first)
    del chain, first
    assert chain_ref() is None
    assert response_ref() is None


async def test_a_response_kept_after_its_chain_was_freed(no_cyclic_gc: None) -> None:
    chain = FunctionModel(script).chain("2+3?", tools=[add])
    await chain.text()
    response = chain.responses[1]
    assert response.chain is chain
    del chain
    assert response.chain is None  # held weakly
    assert response.status == "completed" and await response.text() == "The answer is 5."
