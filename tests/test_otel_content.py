"""Content capture: off by default, on when asked, in the conventions' JSON, capped, no keys."""

from __future__ import annotations

import json
from typing import Any

import pytest
from test_otel_kit import (
    KEY,
    Telemetry,
    all_values,
    fake,
    remote_model,
    server,
    telemetry,
    tool_turn,
)

import agentrt
from agentrt.otel import CAPTURE_CONTENT_ENV, OTelHandler
from agentrt.otel import _semconv as sc
from tools.fakeserver.script import Fault, Turn
from tools.fakeserver.server import FakeServer

__all__ = ["fake", "server", "telemetry"]  # fixtures, used by name

pytestmark = pytest.mark.anyio

CONTENT = {
    sc.INPUT_MESSAGES,
    sc.OUTPUT_MESSAGES,
    sc.SYSTEM_INSTRUCTIONS,
    sc.TOOL_DEFINITIONS,
    sc.TOOL_CALL_ARGUMENTS,
    sc.TOOL_CALL_RESULT,
}


@agentrt.tool
def add(a: int, b: int) -> dict[str, int]:
    """Add two integers."""
    return {"sum": a + b}


@agentrt.tool
async def mul(a: int, b: int) -> int:
    """Multiply two integers."""
    return a * b


async def run(fake: FakeServer, telemetry: Telemetry, prompt: str = "compute") -> None:
    fake.push(tool_turn(0), Turn(text="3 and 6"))
    model = remote_model(fake, "openai")
    chain = model.chain(prompt, system="be brief", tools=[add, mul], callbacks=[telemetry.handler])
    assert await chain.text() == "3 and 6"
    await model.aclose()


def content_keys(telemetry: Telemetry) -> set[str]:
    return {k for s in telemetry.spans() for k in (s.attributes or {}) if k in CONTENT}


async def test_content_is_off_by_default(fake: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CAPTURE_CONTENT_ENV, raising=False)
    telemetry = Telemetry()
    await run(fake, telemetry, prompt="my secret diagnosis")
    assert content_keys(telemetry) == set()
    assert not any("secret diagnosis" in v for v in all_values(telemetry.spans()))


@pytest.mark.parametrize(("value", "on"), [("true", True), ("TRUE", True), ("false", False)])
async def test_the_environment_variable_turns_it_on(
    fake: FakeServer, monkeypatch: pytest.MonkeyPatch, value: str, on: bool
) -> None:
    monkeypatch.setenv(CAPTURE_CONTENT_ENV, value)
    telemetry = Telemetry()
    await run(fake, telemetry)
    assert bool(content_keys(telemetry)) is on
    # an explicit argument wins over the variable
    assert Telemetry(capture_content=not on).handler.capture_content is (not on)


def test_an_unknown_environment_value_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CAPTURE_CONTENT_ENV, "ture")
    with pytest.raises(agentrt.UsageError, match="OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE"):
        OTelHandler()


async def test_captured_content_follows_the_conventions_json(fake: FakeServer) -> None:
    telemetry = Telemetry(capture_content=True)
    await run(fake, telemetry)
    first, second = telemetry.named("chat")
    first_attributes: dict[str, Any] = dict(first.attributes or {})
    assert json.loads(first_attributes[sc.SYSTEM_INSTRUCTIONS]) == [
        {"type": "text", "content": "be brief"}
    ]
    assert json.loads(first_attributes[sc.INPUT_MESSAGES]) == [
        {"role": "user", "parts": [{"type": "text", "content": "compute"}]}
    ]
    definitions = json.loads(first_attributes[sc.TOOL_DEFINITIONS])
    assert [(d["type"], d["name"], d["description"]) for d in definitions] == [
        ("function", "add", "Add two integers."),
        ("function", "mul", "Multiply two integers."),
    ]
    assert definitions[0]["parameters"]["required"] == ["a", "b"]
    assert json.loads(first_attributes[sc.OUTPUT_MESSAGES]) == [
        {
            "role": "assistant",
            "parts": [
                {
                    "type": "tool_call",
                    "id": "call_add_0",
                    "name": "add",
                    "arguments": {"a": 1, "b": 2},
                },
                {
                    "type": "tool_call",
                    "id": "call_mul_0",
                    "name": "mul",
                    "arguments": {"a": 2, "b": 3},
                },
            ],
            "finish_reason": "tool_call",
        }
    ]
    second_attributes: dict[str, Any] = dict(second.attributes or {})
    history = json.loads(second_attributes[sc.INPUT_MESSAGES])
    assert [m["role"] for m in history] == ["user", "assistant", "tool", "tool"]
    assert history[2] == {
        "role": "tool",
        "name": "add",
        "parts": [{"type": "tool_call_response", "id": "call_add_0", "response": '{"sum":3}'}],
    }
    assert json.loads(second_attributes[sc.OUTPUT_MESSAGES]) == [
        {
            "role": "assistant",
            "parts": [{"type": "text", "content": "3 and 6"}],
            "finish_reason": "stop",
        }
    ]
    tools = {s.name: dict(s.attributes or {}) for s in telemetry.named("execute_tool")}
    assert json.loads(tools["execute_tool add"][sc.TOOL_CALL_ARGUMENTS]) == {"a": 1, "b": 2}
    assert json.loads(tools["execute_tool add"][sc.TOOL_CALL_RESULT]) == {"sum": 3}
    assert json.loads(tools["execute_tool mul"][sc.TOOL_CALL_RESULT]) == "6"
    assert sc.TRUNCATED not in first_attributes
    # still no content on the agent span, and no tokens off the chat spans
    (agent,) = telemetry.named("invoke_agent")
    assert not set(agent.attributes or {}) & CONTENT


async def test_each_attribute_is_capped_and_still_json(fake: FakeServer) -> None:
    telemetry = Telemetry(capture_content=True, max_content_chars=300)
    long_prompt = "tell me about " + "very " * 2000 + "long things"
    await run(fake, telemetry, prompt=long_prompt)
    first, second = telemetry.named("chat")
    for span in (first, second):
        attributes: dict[str, Any] = dict(span.attributes or {})
        for key in CONTENT & set(attributes):
            assert len(attributes[key]) <= 300, key
            json.loads(attributes[key])  # still valid JSON
        assert sc.INPUT_MESSAGES in attributes[sc.TRUNCATED]
        assert sc.TOOL_DEFINITIONS in attributes[sc.TRUNCATED]  # two schemas exceed 300 too
    cut = json.loads(dict(first.attributes or {})[sc.INPUT_MESSAGES])
    text = cut[0]["parts"][0]["content"]
    assert text.startswith("tell me about very")
    assert text.endswith(f"...[truncated by agentrt: {len(long_prompt)} characters in all]")
    # the second turn has the whole history: its structure survives, strings are cut
    history = json.loads(dict(second.attributes or {})[sc.INPUT_MESSAGES])
    assert history[0]["role"] in ("user", "truncated")


async def test_many_messages_drop_the_oldest_with_a_marker(fake: FakeServer) -> None:
    telemetry = Telemetry(capture_content=True, max_content_chars=200)
    history = [agentrt.Message(role="user", content=f"message {i}") for i in range(40)]
    fake.push(Turn(text="ok"))
    model = remote_model(fake, "openai")
    await model.prompt(history, callbacks=[telemetry.handler]).text()
    await model.aclose()
    (chat,) = telemetry.named("chat")
    value = dict(chat.attributes or {})[sc.INPUT_MESSAGES]
    assert isinstance(value, str) and len(value) <= 200
    messages = json.loads(value)
    assert messages[0]["role"] == "truncated"
    dropped = messages[0]["parts"][0]["dropped_messages"]
    assert dropped + len(messages) - 1 == 40


async def test_no_key_anywhere_even_with_content_on(fake: FakeServer) -> None:
    telemetry = Telemetry(capture_content=True)
    fake.push(Fault(status=401, message=f"invalid key {KEY}"), tool_turn(0), Turn(text="ok"))
    model = remote_model(fake, "openai")
    with pytest.raises(agentrt.AuthenticationError):
        await model.chain("hi", callbacks=[telemetry.handler]).text()
    # the user pasted the key in the prompt: it is redacted in what is captured
    chain = model.chain(f"my key is {KEY}", tools=[add, mul], callbacks=[telemetry.handler])
    await chain.text()
    await model.aclose()
    values = all_values(telemetry.spans())
    assert values and not any(KEY in v for v in values)
    assert any("[redacted]" in v for v in values)


async def test_input_and_output_both_cut_are_both_named(fake: FakeServer) -> None:
    telemetry = Telemetry(capture_content=True, max_content_chars=500)
    fake.push(Turn(text="x" * 5000))
    model = remote_model(fake, "gemini")
    await model.chain("y" * 5000, callbacks=[telemetry.handler]).text()
    await model.aclose()
    (chat,) = telemetry.named("chat")
    attributes = dict(chat.attributes or {})
    assert attributes[sc.TRUNCATED] == (sc.INPUT_MESSAGES, sc.OUTPUT_MESSAGES)
    for key in (sc.INPUT_MESSAGES, sc.OUTPUT_MESSAGES):
        value = attributes[key]
        assert isinstance(value, str) and len(value) <= 500
        assert "characters in all]" in json.dumps(json.loads(value))
