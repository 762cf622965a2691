"""What a conversation keeps of a chain or a prompt that ended (issue 10 point 6).

A completed call adds its prompt and its turns; a cancelled chain adds its prompt and the
turns that completed (or nothing when none did); a failed call adds nothing, so a retry
sends the question once.
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from agentrt import CancelChain, ChainLimitError, Message, get_model, tool
from agentrt.testing import FunctionModel, ModelTurn, call

pytestmark = pytest.mark.anyio


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


class Script:
    """A model function that records what it was sent and can fail on chosen calls."""

    def __init__(self, *, fail_calls: frozenset[int] = frozenset(), tools: bool = True) -> None:
        self.sent: list[list[Message]] = []
        self.fail_calls = fail_calls
        self.tools = tools

    def __call__(self, messages: list[Message], tools: Any) -> ModelTurn:
        self.sent.append(list(messages))
        if len(self.sent) - 1 in self.fail_calls:
            raise RuntimeError("provider down")
        if messages[-1].role == "user" and self.tools:
            return ModelTurn(text="Adding.", tool_calls=[call("add", a=2, b=3)])
        return ModelTurn(text=f"Done: {messages[-1].content}")


def user_texts(messages: list[Message]) -> list[str]:
    return [m.content for m in messages if m.role == "user"]


async def test_a_chain_failing_on_its_first_turn_leaves_no_prompt_and_a_retry_asks_once() -> None:
    script = Script(fail_calls=frozenset({0}))
    conv = FunctionModel(script).conversation()
    with pytest.raises(RuntimeError):
        await conv.chain("what is 2+3?", tools=[add]).text()
    assert conv.messages == []
    assert await conv.chain("what is 2+3?", tools=[add]).text() == "Done: 5"
    assert user_texts(script.sent[-1]) == ["what is 2+3?"]
    assert [m.role for m in conv.messages] == ["user", "assistant", "tool", "assistant"]


async def test_a_chain_failing_after_its_tools_ran_leaves_nothing() -> None:
    script = Script(fail_calls=frozenset({1}))  # the second model call fails
    conv = FunctionModel(script).conversation()
    with pytest.raises(RuntimeError):
        await conv.chain("what is 2+3?", tools=[add]).text()
    assert conv.messages == []
    await conv.chain("what is 2+3?", tools=[add]).text()
    assert user_texts(script.sent[-1]) == ["what is 2+3?"]


async def test_a_chain_over_its_turn_limit_leaves_nothing() -> None:
    script = Script()
    conv = FunctionModel(script).conversation()
    with pytest.raises(ChainLimitError):
        await conv.chain("what is 2+3?", tools=[add], max_turns=1).text()
    assert conv.messages == []


async def test_a_chain_cancelled_in_its_first_turn_leaves_nothing() -> None:
    entered = anyio.Event()

    async def slow(messages: list[Message], tools: Any) -> str:
        entered.set()
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    conv = FunctionModel(slow).conversation()
    chain = conv.chain("first question")
    async with anyio.create_task_group() as tg:
        tg.start_soon(chain.text)
        await entered.wait()
        tg.cancel_scope.cancel()
    assert chain.status == "cancelled"
    assert conv.messages == []


async def test_a_chain_cancelled_while_its_tools_run_keeps_a_valid_history() -> None:
    started = anyio.Event()

    @tool
    async def wait() -> str:
        """Wait forever."""
        started.set()
        await anyio.sleep_forever()
        return "never"

    def script(messages: list[Message], tools: Any) -> ModelTurn:
        if messages[-1].role == "user":
            return ModelTurn(text="Waiting.", tool_calls=[call("wait")])
        return ModelTurn(text="ok")

    conv = FunctionModel(script).conversation()
    chain = conv.chain("go", tools=[wait])
    async with anyio.create_task_group() as tg:
        tg.start_soon(chain.text)
        await started.wait()
        tg.cancel_scope.cancel()
    assert chain.status == "cancelled"
    assert [m.role for m in conv.messages] == ["user", "assistant", "tool"]
    assert conv.messages[2].is_error and "cancelled" in conv.messages[2].content
    assert await conv.chain("again").text() == "ok"
    assert user_texts(conv.messages) == ["go", "again"]


async def test_a_chain_ended_by_cancel_chain_keeps_its_completed_turns() -> None:
    @tool
    def stop_here() -> str:
        """End the chain."""
        raise CancelChain("enough")

    def script(messages: list[Message], tools: Any) -> ModelTurn:
        return ModelTurn(tool_calls=[call("stop_here")])

    conv = FunctionModel(script).conversation()
    chain = conv.chain("go", tools=[stop_here])
    await chain.text()
    assert chain.status == "cancelled"
    assert [m.role for m in conv.messages] == ["user", "assistant", "tool"]


async def test_a_failed_prompt_leaves_nothing_and_a_retry_asks_once() -> None:
    script = Script(fail_calls=frozenset({0}), tools=False)
    conv = FunctionModel(script).conversation()
    with pytest.raises(RuntimeError):
        await conv.prompt("hi").text()
    assert conv.messages == []
    assert await conv.prompt("hi").text() == "Done: hi"
    assert user_texts(script.sent[-1]) == ["hi"]
    assert [m.role for m in conv.messages] == ["user", "assistant"]


async def test_concurrent_chains_of_one_conversation_each_add_their_own_turns() -> None:
    conv = FunctionModel(Script()).conversation()
    async with anyio.create_task_group() as tg:
        tg.start_soon(conv.chain("a", tools=[add]).text)
        tg.start_soon(conv.chain("b", tools=[add]).text)
    assert sorted(user_texts(conv.messages)) == ["a", "b"]
    assert len(conv.messages) == 8


def test_the_sync_conversation_follows_the_same_rules() -> None:
    script = Script(fail_calls=frozenset({0}))
    with get_model(FunctionModel(script)) as model:
        conv = model.conversation()
        with pytest.raises(RuntimeError):
            conv.chain("what is 2+3?", tools=[add]).text()
        assert conv.messages == []
        assert conv.chain("what is 2+3?", tools=[add]).text() == "Done: 5"
    assert user_texts(script.sent[-1]) == ["what is 2+3?"]
