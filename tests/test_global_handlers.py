"""Global handlers, chain names, conversation ids, on_retry, tool_errors (contracts 4, 5)."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from agentrt import AsyncModel, CallbackHandler, Message, ToolResult, UsageError, tool
from agentrt._execute import ToolRunner
from agentrt.callbacks import add_global_handler, global_handlers, remove_global_handler
from agentrt.messages import FinishEvent, StreamEvent, TextDelta, TurnRequest
from agentrt.providers.base import Provider
from agentrt.testing import FunctionModel, ModelTurn, call

pytestmark = pytest.mark.anyio


class Seen(CallbackHandler):
    def __init__(self) -> None:
        self.events: list[str] = []

    def on_chain_start(self, chain: Any) -> None:
        self.events.append(f"chain:{chain.name}")

    def on_turn_end(self, response: Any) -> None:
        self.events.append(f"turn:{response.status}")


@pytest.fixture
def global_seen() -> Iterator[Seen]:
    seen = Seen()
    add_global_handler(seen)
    try:
        yield seen
    finally:
        remove_global_handler(seen)


async def test_a_global_handler_sees_every_chain_and_prompt(global_seen: Seen) -> None:
    model = FunctionModel(lambda m, t: "hi")
    await model.chain("a", name="first").text()
    await model.prompt("b").text()
    await FunctionModel(lambda m, t: "other model").chain("c").text()
    assert global_seen.events == [
        "chain:first",
        "turn:completed",
        "turn:completed",
        "chain:None",
        "turn:completed",
    ]
    remove_global_handler(global_seen)
    await model.chain("d").text()
    assert len(global_seen.events) == 5


def test_global_handlers_are_checked_and_kept_once() -> None:
    with pytest.raises(UsageError, match="CallbackHandler"):
        add_global_handler(print)  # type: ignore[arg-type]
    seen = Seen()
    add_global_handler(seen)
    add_global_handler(seen)
    try:
        assert global_handlers().count(seen) == 1
    finally:
        remove_global_handler(seen)
    assert seen not in global_handlers()
    remove_global_handler(seen)  # absent: no error


async def test_chain_name_and_conversation_id() -> None:
    model = FunctionModel(lambda m, t: "ok")
    chain = model.chain("x", name="triage")
    assert chain.name == "triage" and "triage" in repr(chain)
    assert chain.conversation_id is None
    conv = model.conversation()
    assert len(conv.id) == 32
    assert conv.chain("y").conversation_id == conv.id


def test_tool_result_carries_structured_data() -> None:
    result = ToolResult(tool_call_id="c", name="t", content="3", structured={"sum": 3})
    assert result.structured == {"sum": 3}
    assert ToolResult(tool_call_id="c", name="t", content="3").structured is None


HAS_ON_RETRY = any(f.name == "on_retry" for f in dataclasses.fields(TurnRequest))


class RetryingProvider(Provider):
    """Calls the request's on_retry as the HTTP layer does before a retry sleep."""

    name = "retrying"

    async def turn(self, request: TurnRequest, *, stream: bool) -> AsyncIterator[StreamEvent]:
        notify = request.on_retry  # type: ignore[attr-defined]
        if notify is not None:
            notify(1, ConnectionError("reset"), 0.5)
        yield TextDelta("ok")
        yield FinishEvent("stop", "stop")


@pytest.mark.skipif(not HAS_ON_RETRY, reason="needs the http helper's TurnRequest.on_retry")
async def test_on_retry_reaches_handlers_through_the_request() -> None:
    calls: list[tuple[Any, int, str, float]] = []

    class Retries(CallbackHandler):
        def on_retry(self, response: Any, attempt: int, error: BaseException, delay: float) -> None:
            calls.append((response, attempt, str(error), delay))

    model = AsyncModel(RetryingProvider("m"))
    response = model.prompt("x", callbacks=[Retries()])
    assert await response.text() == "ok"
    assert calls == [(response, 1, "reset", 0.5)]
    # Without an on_retry handler the request carries none.
    plain = model.prompt("x")
    await plain.text()
    assert plain.request.on_retry is None  # type: ignore[attr-defined]


@tool
def boom() -> str:
    """Fail."""
    raise ValueError("kaput")


def boom_script(messages: list[Message], tools: Any) -> ModelTurn:
    if messages[-1].role == "user":
        return ModelTurn(tool_calls=[call("boom")])
    return ModelTurn(text="recovered")


async def test_tool_errors_model_is_the_default() -> None:
    chain = FunctionModel(boom_script).chain("go", tools=[boom])
    assert await chain.text() == "recovered"


@pytest.mark.skipif(
    "tool_errors" not in inspect.signature(ToolRunner).parameters,
    reason="needs the core-tools helper's ToolRunner(tool_errors=...)",
)
async def test_tool_errors_raise_reraises_the_tools_exception() -> None:
    chain = FunctionModel(boom_script).chain("go", tools=[boom], tool_errors="raise")
    with pytest.raises(ValueError, match="kaput"):
        await chain.text()
    assert chain.status == "failed"
