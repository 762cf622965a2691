"""How spans end: failing and refused tools, cancellation, on_done, the sync facade, the
global ``instrument()``, and agentrt's other observers running at the same time."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import anyio
import pytest
from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode
from test_otel_kit import (
    KEY,
    Telemetry,
    base_url,
    children,
    fake,
    remote_model,
    server,
    telemetry,
    tool_turn,
)

import agentrt
import agentrt.otel
from agentrt.otel import _semconv as sc
from agentrt.testing import FunctionModel, ModelTurn, call
from tools.fakeserver.script import ScriptedToolCall, Turn
from tools.fakeserver.server import FakeServer

__all__ = ["fake", "server", "telemetry"]  # fixtures, used by name


def _error(span: Any) -> Any:
    return dict(span.attributes or {}).get(sc.ERROR_TYPE)


@agentrt.tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@agentrt.tool
async def mul(a: int, b: int) -> int:
    """Multiply two integers."""
    return a * b


@pytest.mark.anyio
async def test_failing_timed_out_refused_and_unknown_tools(
    fake: FakeServer, telemetry: Telemetry
) -> None:
    @agentrt.tool
    def broken() -> str:
        """Always fails."""
        raise ValueError("no such row")

    @agentrt.tool(timeout=0.05)
    async def slow() -> str:
        """Never finishes in time."""
        await anyio.sleep(30)
        return "late"

    fake.push(
        Turn(
            tool_calls=[
                ScriptedToolCall("broken", "{}", id="c1"),
                ScriptedToolCall("slow", "{}", id="c2"),
                ScriptedToolCall("add", '{"a": "x"}', id="c3"),
                ScriptedToolCall("nope", "{}", id="c4"),
                ScriptedToolCall("add", '{"a": 1, "b": 1}', id="c5"),
            ]
        ),
        Turn(text="handled"),
    )
    model = remote_model(fake, "openai")
    chain = model.chain("go", tools=[broken, slow, add], callbacks=[telemetry.handler])
    assert await chain.text() == "handled"
    await model.aclose()
    by_id = {str(dict(s.attributes or {})[sc.TOOL_CALL_ID]): s for s in telemetry.named("execute")}
    assert {k: _error(v) for k, v in by_id.items()} == {
        "c1": "ValueError",
        "c2": "ToolTimeoutError",
        "c3": "ToolArgumentsError",
        "c4": "UnknownToolError",
        "c5": None,
    }
    for key in ("c1", "c2", "c3", "c4"):
        assert by_id[key].status.status_code is StatusCode.ERROR
        # content is off: the status says what failed, never the error text (it may quote data)
        assert by_id[key].status.description == _error(by_id[key])
    assert by_id["c5"].status.status_code is StatusCode.UNSET
    (agent,) = telemetry.named("invoke_agent")
    assert agent.status.status_code is StatusCode.UNSET  # the chain itself went on and ended well


@pytest.mark.anyio
async def test_cancelled_chain_ends_every_open_span(fake: FakeServer, telemetry: Telemetry) -> None:
    started = anyio.Event()

    @agentrt.tool
    async def wait_forever() -> str:
        """Waits until cancelled."""
        started.set()
        await anyio.sleep_forever()
        return "never"

    @agentrt.tool
    def quick() -> str:
        """Returns at once."""
        return "ok"

    fake.push(
        Turn(
            tool_calls=[
                ScriptedToolCall("wait_forever", "{}", id="w"),
                ScriptedToolCall("quick", "{}", id="q"),
            ]
        )
    )
    quick_done = anyio.Event()

    def after_call(tool: Any, _call: Any, _result: Any) -> None:
        if tool.name == "quick":  # on_tool_end follows at once, in the same task
            quick_done.set()

    model = remote_model(fake, "gemini")
    chain = model.chain(
        "go", tools=[wait_forever, quick], callbacks=[telemetry.handler], after_call=after_call
    )
    async with anyio.create_task_group() as tg:
        tg.start_soon(chain.text)
        await started.wait()
        await quick_done.wait()
        tg.cancel_scope.cancel()
    await model.aclose()
    assert chain.status == "cancelled"
    spans = telemetry.spans()
    names = sorted(s.name for s in spans)
    assert names == ["chat m-1", "execute_tool quick", "execute_tool wait_forever", "invoke_agent"]
    by_name = {s.name: s for s in spans}
    for name in ("invoke_agent", "execute_tool wait_forever"):
        assert _error(by_name[name]) == "cancelled"
        assert by_name[name].status.status_code is StatusCode.ERROR
    assert _error(by_name["execute_tool quick"]) is None
    assert _error(by_name["chat m-1"]) is None


@pytest.mark.anyio
async def test_cancelled_during_the_model_call_ends_the_chat_span(
    fake: FakeServer, telemetry: Telemetry
) -> None:
    fake.push(Turn(text="an answer nobody reads"))
    model = remote_model(fake, "anthropic")
    with anyio.CancelScope() as scope:

        class CancelOnStart(agentrt.CallbackHandler):
            def on_turn_start(self, response: Any) -> None:
                scope.cancel()  # the request that follows is the next checkpoint

        chain = model.chain("go", callbacks=[telemetry.handler, CancelOnStart()])
        await chain.text()
    # the chain ran in this task: nothing of ours stays current after it
    assert not trace.get_current_span().get_span_context().is_valid
    await model.aclose()
    assert chain.status == "cancelled"
    (chat,) = telemetry.named("chat")
    (agent,) = telemetry.named("invoke_agent")
    assert _error(chat) == _error(agent) == "cancelled"
    assert chat.status.status_code is agent.status.status_code is StatusCode.ERROR
    (duration,) = telemetry.points(sc.OPERATION_DURATION)
    assert dict(duration.attributes or {})[sc.ERROR_TYPE] == "cancelled"


@pytest.mark.anyio
async def test_cancel_chain_is_a_clean_end(telemetry: Telemetry) -> None:
    @agentrt.tool
    def stop() -> str:
        """Ends the chain."""
        raise agentrt.CancelChain("enough")

    model = FunctionModel(lambda messages, tools: ModelTurn(tool_calls=[call("stop")]))
    chain = model.chain("go", tools=[stop], callbacks=[telemetry.handler])
    await chain.text()
    assert chain.status == "cancelled"
    (agent,) = telemetry.named("invoke_agent")
    assert agent.status.status_code is StatusCode.UNSET
    assert _error(agent) is None


@pytest.mark.anyio
async def test_on_done_callbacks_and_nested_chains_run_inside_the_chain_span(
    telemetry: Telemetry,
) -> None:
    tracer = telemetry.tracer_provider.get_tracer("test")
    inner_model = FunctionModel(lambda messages, tools: "inner answer")

    @agentrt.tool
    async def ask_expert(question: str) -> str:
        """Asks another agent."""
        return await inner_model.chain(question, callbacks=[telemetry.handler]).text()

    def script(messages: list[Any], tools: Any) -> Any:
        if not any(m.role == "tool" for m in messages):
            return ModelTurn(tool_calls=[call("ask_expert", question="why?")])
        return "outer answer"

    chain = FunctionModel(script).chain("go", tools=[ask_expert], callbacks=[telemetry.handler])

    @chain.on_done
    def before_start(_chain: Any) -> None:
        with tracer.start_as_current_span("on_done registered before the start"):
            pass

    with tracer.start_as_current_span("application"):
        async for chunk in chain:
            if chunk.turn == 0 and not chunk.content:
                chain.on_done(
                    lambda _c: tracer.start_span("on_done registered while running").end()
                )
    spans = telemetry.spans()
    by_name = {s.name: s for s in spans}
    (outer, inner) = sorted(
        (s for s in spans if s.name == "invoke_agent"), key=lambda s: s.start_time or 0
    )
    assert (
        outer.parent is not None and outer.parent.span_id == by_name["application"].context.span_id
    )
    done = [s.name for s in children(spans, outer) if s.name.startswith("on_done")]
    assert sorted(done) == [
        "on_done registered before the start",
        "on_done registered while running",
    ]
    # the inner chain is a child of the tool call that ran it
    tool_span = by_name["execute_tool ask_expert"]
    assert inner.parent is not None and inner.parent.span_id == tool_span.context.span_id
    # the outer span ended after its on_done callbacks
    last_done = max(s.end_time or 0 for s in spans if s.name.startswith("on_done"))
    assert (outer.end_time or 0) >= last_done


def test_sync_facade_with_track_usage_and_sqlite_logger(
    fake: FakeServer, telemetry: Telemetry, tmp_path: Path
) -> None:
    fake.push(tool_turn(0), Turn(text="done"))
    database = tmp_path / "logs.db"
    tracer = telemetry.tracer_provider.get_tracer("test")
    with agentrt.SQLiteLogger(database) as logger:
        model = agentrt.get_model(
            "openai:m-1",
            api_key=KEY,
            base_url=base_url(fake, "openai"),
            callbacks=[logger, telemetry.handler],
        )
        with agentrt.track_usage() as usage, tracer.start_as_current_span("request handler"):
            chain = model.chain("go", tools=[add, mul])
            assert chain.text() == "done"
        model.close()
    assert chain.usage is not None and usage.usage == chain.usage
    spans = telemetry.spans()
    by_name = {s.name: s for s in spans}
    agent = by_name["invoke_agent"]
    assert (
        agent.parent is not None
        and agent.parent.span_id == by_name["request handler"].context.span_id
    )
    assert sorted(s.name for s in children(spans, agent)) == [
        "chat m-1",
        "chat m-1",
        "execute_tool add",
        "execute_tool mul",
    ]
    chats = [s for s in spans if s.name == "chat m-1"]
    assert sum(int(dict(c.attributes or {})[sc.USAGE_INPUT_TOKENS]) for c in chats) == (
        usage.input_tokens
    )
    with sqlite3.connect(database) as db:
        assert db.execute("select count(*) from responses").fetchone() == (2,)
        assert db.execute("select count(*) from tool_calls").fetchone() == (2,)


@pytest.mark.anyio
async def test_instrument_traces_every_model_until_uninstrument(telemetry: Telemetry) -> None:
    model = FunctionModel(lambda messages, tools: "hi")
    assert agentrt.otel.instrumented() is None
    handler = agentrt.otel.instrument(
        tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider
    )
    try:
        assert agentrt.otel.instrumented() is handler
        # instrumenting again replaces the handler: never two spans per turn
        handler = agentrt.otel.instrument(tracer_provider=telemetry.tracer_provider)
        await model.chain("one").text()
        await model.prompt("two").text()
        await FunctionModel(lambda messages, tools: "x", name="other").chain("three").text()
    finally:
        agentrt.otel.uninstrument()
    assert agentrt.otel.instrumented() is None
    await model.chain("after").text()
    agentrt.otel.uninstrument()  # a second call is a no-op
    assert sorted(s.name for s in telemetry.spans()) == [
        "chat function",
        "chat function",
        "chat other",
        "invoke_agent",
        "invoke_agent",
    ]
    prompt_chat = [s for s in telemetry.spans() if s.parent is None and s.name.startswith("chat")]
    assert len(prompt_chat) == 1  # model.prompt() has no chain: its chat span is a root
    assert prompt_chat[0].kind is SpanKind.CLIENT


@pytest.mark.anyio
async def test_agent_name_and_conversation_id(telemetry: Telemetry) -> None:
    model = FunctionModel(lambda messages, tools: "hi")
    conversation = model.conversation()
    await conversation.chain("one", name="support bot", callbacks=[telemetry.handler]).text()
    (agent,) = telemetry.named("invoke_agent")
    (chat,) = telemetry.named("chat")
    assert agent.name == "invoke_agent support bot"
    attributes = dict(agent.attributes or {})
    assert attributes[sc.AGENT_NAME] == "support bot"
    assert attributes[sc.CONVERSATION_ID] == conversation.id
    assert dict(chat.attributes or {})[sc.CONVERSATION_ID] == conversation.id


@pytest.mark.anyio
async def test_concurrent_chains_get_separate_trees(telemetry: Telemetry) -> None:
    def script(messages: list[Any], tools: Any) -> Any:
        if not any(m.role == "tool" for m in messages):
            return ModelTurn(tool_calls=[call("mul", a=2, b=3)])
        return f"answer to {messages[0].content}"

    model = FunctionModel(script)
    answers: dict[int, str] = {}

    async def one(index: int) -> None:
        chain = model.chain(f"q{index}", tools=[mul], callbacks=[telemetry.handler])
        answers[index] = await chain.text()

    async with anyio.create_task_group() as tg:
        for index in range(20):
            tg.start_soon(one, index)
    assert answers == {i: f"answer to q{i}" for i in range(20)}
    spans = telemetry.spans()
    roots = [s for s in spans if s.parent is None]
    assert len(roots) == 20 and {s.name for s in roots} == {"invoke_agent"}
    for root in roots:
        assert sorted(s.name for s in children(spans, root)) == [
            "chat function",
            "chat function",
            "execute_tool mul",
        ]
        assert all(s.context.trace_id == root.context.trace_id for s in children(spans, root))
    assert len(spans) == 80


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"tracer_provider": "console"}, "tracer_provider must be an opentelemetry TracerProvider"),
        ({"meter_provider": object()}, "meter_provider must be an opentelemetry MeterProvider"),
        ({"capture_content": "yes"}, "capture_content must be True, False or None"),
        ({"max_content_chars": 10}, "max_content_chars must be an int of at least 64"),
        ({"max_content_chars": True}, "max_content_chars must be an int of at least 64"),
    ],
)
def test_wrong_arguments_are_refused_at_the_call(options: dict[str, Any], message: str) -> None:
    with pytest.raises(agentrt.UsageError, match=message):
        agentrt.otel.instrument(**options)
    with pytest.raises(agentrt.UsageError, match=message):
        agentrt.otel.OTelHandler(**options)
    assert agentrt.otel.instrumented() is None  # a refused instrument() installs nothing


@pytest.mark.anyio
async def test_a_prompt_is_one_chat_span_under_the_callers_span(telemetry: Telemetry) -> None:
    tracer = telemetry.tracer_provider.get_tracer("test")
    model = FunctionModel(lambda messages, tools: "hello", count_usage=True)
    with tracer.start_as_current_span("request") as request:
        response = model.prompt("hi", callbacks=[telemetry.handler])
        assert await response.text() == "hello"
    (chat,) = telemetry.named("chat")
    assert chat.parent is not None and chat.parent.span_id == request.get_span_context().span_id
    assert response.usage is not None
    assert dict(chat.attributes or {})[sc.USAGE_OUTPUT_TOKENS] == response.usage.output_tokens
    assert telemetry.named("invoke_agent") == []  # no chain, no agent span
