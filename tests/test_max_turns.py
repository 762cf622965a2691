"""``max_turns`` is the number of model calls; no tool runs whose result no turn reads.

Issue 10 point 19.
"""

from __future__ import annotations

from typing import Any

import pytest

from agentrt import CallbackHandler, ChainLimitError, Message, get_model, tool
from agentrt.testing import FunctionModel, ModelTurn, call

pytestmark = pytest.mark.anyio


class Counter:
    def __init__(self) -> None:
        self.model_calls = 0
        self.tool_runs = 0


def looping(counter: Counter) -> Any:
    def script(messages: list[Message], tools: Any) -> ModelTurn:
        counter.model_calls += 1
        return ModelTurn(text=f"turn {counter.model_calls}", tool_calls=[call("again")])

    return script


def again_tool(counter: Counter) -> Any:
    @tool
    def again() -> str:
        """Ask for another turn."""
        counter.tool_runs += 1
        return "ok"

    return again


class ToolEvents(CallbackHandler):
    def __init__(self) -> None:
        self.started = 0

    def on_tool_start(self, response: Any, call: Any) -> None:
        self.started += 1


@pytest.mark.parametrize("max_turns", [1, 2, 3])
async def test_the_limit_counts_model_calls_and_the_last_turns_tools_do_not_run(
    max_turns: int,
) -> None:
    counter, events = Counter(), ToolEvents()
    chain = FunctionModel(looping(counter)).chain(
        "go", tools=[again_tool(counter)], max_turns=max_turns, callbacks=[events]
    )
    with pytest.raises(ChainLimitError) as caught:
        await chain.text()
    assert counter.model_calls == max_turns
    assert counter.tool_runs == events.started == max_turns - 1  # the last turn's: not run
    error = caught.value
    assert error.responses == chain.responses and len(error.responses) == max_turns
    assert f"max_turns={max_turns}" in str(error)
    assert "the last turn's 1 tool call was not run" in str(error)
    last = error.responses[-1]
    assert [r.content for r in last.tool_results] == [
        "Error: not run: the chain reached its max_turns limit"
    ]
    # The chain's messages stay a valid history: every call has a result.
    calls = [c.id for m in chain.messages for c in m.tool_calls]
    answered = [m.tool_call_id for m in chain.messages if m.role == "tool"]
    assert calls == answered


async def test_a_chain_that_answers_on_its_last_allowed_turn_completes() -> None:
    def script(messages: list[Message], tools: Any) -> ModelTurn:
        if messages[-1].role == "user":
            return ModelTurn(tool_calls=[call("again")])
        return ModelTurn(text="finished")

    counter = Counter()
    chain = FunctionModel(script).chain("go", tools=[again_tool(counter)], max_turns=2)
    assert await chain.text() == "finished"
    assert chain.status == "completed" and counter.tool_runs == 1


def test_the_sync_chain_has_the_same_limit() -> None:
    counter = Counter()
    with get_model(FunctionModel(looping(counter))) as model:
        with pytest.raises(ChainLimitError):
            model.chain("go", tools=[again_tool(counter)], max_turns=2).text()
    assert (counter.model_calls, counter.tool_runs) == (2, 1)
