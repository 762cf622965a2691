"""The Gemini provider's I/O-free parts: request translation and response assembly."""

from __future__ import annotations

import json

import pytest
from _gemini_events import NOW, WEATHER, assemble

from agentrt.messages import Message, ToolCall, TurnRequest
from agentrt.providers.gemini import (
    PROVIDER_DATA_KEY,
    TurnAssembler,
    build_request_body,
    normalise_finish,
    retry_delay,
)
from tools.fakeserver import gemini_wire


def test_request_roles_system_and_function_responses() -> None:
    history = [
        Message(role="system", content="Be brief."),
        Message(role="user", content="weather in Oslo and Rome?"),
        Message(
            role="assistant",
            content="Checking.",
            tool_calls=[
                ToolCall(id="c1", name="weather", arguments={"city": "Oslo"}),
                ToolCall(id="c2", name="weather", arguments=None, raw_arguments="{oops"),
            ],
        ),
        Message(role="tool", tool_call_id="c1", name="weather", content="sunny"),
        Message(role="tool", tool_call_id="c2", content="bad arguments", is_error=True),
        Message(role="user", content="thanks"),
    ]
    request = TurnRequest(history, system="You are a weather bot.", tools=[WEATHER, NOW])
    body = build_request_body(request)

    assert body["systemInstruction"] == {
        "parts": [{"text": "You are a weather bot."}, {"text": "Be brief."}]
    }
    assert [c["role"] for c in body["contents"]] == ["user", "model", "user"]
    assert body["contents"][1]["parts"] == [
        {"text": "Checking."},
        {"functionCall": {"name": "weather", "args": {"city": "Oslo"}}},
        {"functionCall": {"name": "weather", "args": {}}},
    ]
    # Consecutive tool results (and the next user text) share one "user" content.
    assert body["contents"][2]["parts"] == [
        {"functionResponse": {"name": "weather", "response": {"result": "sunny"}}},
        {"functionResponse": {"name": "weather", "response": {"error": "bad arguments"}}},
        {"text": "thanks"},
    ]
    # Full JSON Schema goes to parametersJsonSchema untouched; no-arg tools send none.
    assert body["tools"] == [
        {
            "functionDeclarations": [
                {
                    "name": "weather",
                    "description": "Get the weather.",
                    "parametersJsonSchema": WEATHER.parameters,
                },
                {"name": "now"},
            ]
        }
    ]
    assert "generationConfig" not in body


def test_request_replays_provider_parts_verbatim_with_gemini_ids() -> None:
    parts = [
        {"text": "thinking out loud", "thought": True},
        {"functionCall": {"id": "g-1", "name": "now", "args": {}}, "thoughtSignature": "c2ln"},
    ]
    assistant = Message(
        role="assistant",
        tool_calls=[ToolCall(id="g-1", name="now", arguments={})],
        provider_data={PROVIDER_DATA_KEY: parts, "other_provider": {"x": 1}},
    )
    snapshot = json.loads(json.dumps(parts))
    request = TurnRequest(
        [
            Message(role="user", content="time?"),
            assistant,
            Message(role="tool", tool_call_id="g-1", name="now", content="12:00"),
        ]
    )
    body = build_request_body(request)
    assert body["contents"][1] == {"role": "model", "parts": snapshot}
    assert body["contents"][2]["parts"] == [
        {"functionResponse": {"id": "g-1", "name": "now", "response": {"result": "12:00"}}}
    ]
    build_request_body(TurnRequest([*request.messages, Message(role="user", content="more")]))
    assert parts == snapshot, "building a request must not mutate the history"


def test_request_generation_options() -> None:
    options = {
        "temperature": 0.2,
        "max_tokens": 50,
        "top_p": 0.9,
        "top_k": 3,
        "stop": "END",
        "seed": None,
        "thinking_config": {"thinkingBudget": 0},
    }
    body = build_request_body(TurnRequest([Message(role="user", content="x")], options=options))
    assert body["generationConfig"] == {
        "temperature": 0.2,
        "maxOutputTokens": 50,
        "topP": 0.9,
        "topK": 3,
        "stopSequences": ["END"],
        "thinkingConfig": {"thinkingBudget": 0},
    }


@pytest.mark.parametrize(
    ("raw", "has_calls", "expected"),
    [
        ("STOP", False, "stop"),
        ("STOP", True, "tool_calls"),
        ("MAX_TOKENS", False, "length"),
        ("MAX_TOKENS", True, "length"),
        ("SAFETY", False, "content_filter"),
        ("RECITATION", False, "content_filter"),
        ("BLOCKLIST", False, "content_filter"),
        ("PROHIBITED_CONTENT", False, "content_filter"),
        ("SPII", False, "content_filter"),
        ("IMAGE_SAFETY", False, "content_filter"),
        ("OTHER", False, "stop"),
        ("MALFORMED_FUNCTION_CALL", False, "stop"),
        (None, True, "tool_calls"),
    ],
)
def test_normalise_finish(raw: str | None, has_calls: bool, expected: str) -> None:
    assert normalise_finish(raw, has_calls) == expected


@pytest.mark.parametrize(
    ("delay", "expected"),
    [("1.5s", 1.5), ("32s", 32.0), ("0.000001s", 0.000001), ("oops", None), ("5", None)],
)
def test_retry_delay_parsing(delay: str, expected: float | None) -> None:
    assert retry_delay(gemini_wire.render_error(429, "slow down", {"x-retry-delay": delay})) == (
        expected
    )
    assert retry_delay(gemini_wire.render_error(429, "slow down")) is None
    assert retry_delay("not json") is None


def test_assembler_coalesces_text_and_keeps_the_signature() -> None:
    assembler = TurnAssembler()
    chunks = [
        {"candidates": [{"content": {"parts": [{"text": "plan", "thought": True}]}}]},
        {"candidates": [{"content": {"parts": [{"text": "Hel"}]}}]},
        {"candidates": [{"content": {"parts": [{"text": "lo", "thoughtSignature": "U0lH"}]}}]},
        {"candidates": [{"content": {"parts": [{"text": "!"}]}}]},
        {"candidates": [{"content": {"parts": [{"text": "?", "partMetadata": {"k": 1}}]}}]},
        {"candidates": [{"content": {"parts": [{"text": ""}]}, "finishReason": "STOP"}]},
    ]
    events = [e for chunk in chunks for e in assembler.feed(chunk)]
    events.extend(assembler.finish())
    result = assemble(events)
    assert result.text == "Hello!?"  # the thought summary is not answer text
    assert result.provider_data == {
        PROVIDER_DATA_KEY: [
            {"text": "plan", "thought": True},
            {"text": "Hello", "thoughtSignature": "U0lH"},
            {"text": "!"},
            {"text": "?", "partMetadata": {"k": 1}},
        ]
    }
    assert (result.raw_reason, result.reason, result.usage) == ("STOP", "stop", None)
