"""The Anthropic provider's I/O-free parts: request translation and stream parsing."""

from __future__ import annotations

import json
from typing import Any

import pytest
from _anthropic_events import assemble, request

from agentrt.errors import APIConnectionError, ProviderError, ServerError
from agentrt.messages import (
    Message,
    StreamEvent,
    ToolCall,
    ToolSpec,
    TurnRequest,
    Usage,
    UsageEvent,
)
from agentrt.providers.anthropic import (
    DEFAULT_MAX_TOKENS,
    AnthropicDecoder,
    build_request_body,
    events_from_message,
    normalise_stop_reason,
)
from tools.fakeserver import anthropic_wire
from tools.fakeserver.script import ScriptedToolCall, Turn


def sse_events(turn: Turn) -> list[tuple[str, dict[str, Any]]]:
    """Decode the fake server's rendered SSE events (each one complete)."""
    decoded = []
    for raw in anthropic_wire.render_sse(turn, "claude-x"):
        lines = raw.decode().strip().split("\n")
        decoded.append((lines[0].removeprefix("event: "), json.loads(lines[1][len("data: ") :])))
    return decoded


def parse_all(items: list[tuple[str, dict[str, Any]]]) -> list[StreamEvent]:
    parser = AnthropicDecoder()
    events: list[StreamEvent] = []
    for name, data in items:
        events.extend(parser.feed_data(data, name))
    parser.close()
    return events


# --- request translation (no I/O) -------------------------------------------------------


def test_request_body_system_messages_tools_and_options() -> None:
    req = TurnRequest(
        messages=[
            Message(role="system", content="Be terse."),
            Message(role="user", content="Weather in Paris and Rome?"),
        ],
        system="You are a weather bot.",
        tools=[
            ToolSpec("weather", "Look up the weather.", {"type": "object", "properties": {}}),
            ToolSpec("nodesc", "", {"type": "object"}),
        ],
        options={"temperature": 0.2, "top_p": 0.9, "stop": "END", "top_k": 5},
    )
    body = build_request_body("claude-x", req, stream=True)
    assert body["model"] == "claude-x"
    assert body["system"] == "You are a weather bot.\n\nBe terse."
    assert body["messages"] == [{"role": "user", "content": "Weather in Paris and Rome?"}]
    assert body["tools"] == [
        {
            "name": "weather",
            "description": "Look up the weather.",
            "input_schema": {"type": "object", "properties": {}},
        },
        {"name": "nodesc", "input_schema": {"type": "object"}},
    ]
    assert body["max_tokens"] == DEFAULT_MAX_TOKENS
    assert body["temperature"] == 0.2
    assert body["top_p"] == 0.9
    assert body["top_k"] == 5
    assert body["stop_sequences"] == ["END"]
    assert "stop" not in body
    assert body["stream"] is True
    assert "stream" not in build_request_body("claude-x", req, stream=False)


def test_request_body_max_tokens_option_and_no_system() -> None:
    body = build_request_body(
        "claude-x", request(options={"max_tokens": 50, "stop": ["a", "b"]}), stream=False
    )
    assert body["max_tokens"] == 50
    assert body["stop_sequences"] == ["a", "b"]
    assert "system" not in body
    assert "tools" not in body


def test_request_body_tool_use_and_grouped_tool_results() -> None:
    history = [
        Message(role="user", content="go"),
        Message(
            role="assistant",
            content="Calling tools.",
            tool_calls=[
                ToolCall(id="toolu_a", name="add", arguments={"a": 1, "b": 2}, raw_arguments=""),
                ToolCall(id="toolu_b", name="broken", arguments=None, raw_arguments="{oops"),
            ],
        ),
        Message(role="tool", tool_call_id="toolu_a", name="add", content="3"),
        Message(
            role="tool",
            tool_call_id="toolu_b",
            name="broken",
            content="arguments are not valid JSON",
            is_error=True,
        ),
        Message(role="user", content="thanks"),
        Message(role="assistant", content="", tool_calls=[]),  # nothing to send: dropped
    ]
    body = build_request_body("claude-x", request(*history), stream=False)
    assert body["messages"] == [
        {"role": "user", "content": "go"},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Calling tools."},
                {"type": "tool_use", "id": "toolu_a", "name": "add", "input": {"a": 1, "b": 2}},
                {"type": "tool_use", "id": "toolu_b", "name": "broken", "input": {}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_a", "content": "3"},
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_b",
                    "content": "arguments are not valid JSON",
                    "is_error": True,
                },
                {"type": "text", "text": "thanks"},
            ],
        },
    ]


def test_request_body_replays_kept_content_blocks_verbatim() -> None:
    kept = [
        {"type": "thinking", "thinking": "hmm", "signature": "sig=="},
        {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"x": 1}},
    ]
    assistant = Message(
        role="assistant",
        content="",
        tool_calls=[ToolCall(id="toolu_1", name="f", arguments={"x": 1})],
        provider_data={"anthropic": {"content": kept}, "other": 1},
    )
    body = build_request_body(
        "claude-x", request(Message(role="user", content="q"), assistant), stream=False
    )
    assert body["messages"][1] == {"role": "assistant", "content": kept}


@pytest.mark.parametrize(
    ("raw", "has_tools", "expected"),
    [
        ("end_turn", False, "stop"),
        ("stop_sequence", False, "stop"),
        ("pause_turn", False, "stop"),
        ("tool_use", True, "tool_calls"),
        ("max_tokens", False, "length"),
        ("model_context_window_exceeded", False, "length"),
        ("refusal", False, "content_filter"),
        ("something_new", True, "tool_calls"),
        ("something_new", False, "stop"),
        (None, False, "stop"),
    ],
)
def test_normalise_stop_reason(raw: str | None, has_tools: bool, expected: str) -> None:
    assert normalise_stop_reason(raw, has_tool_calls=has_tools) == expected


# --- stream parsing (no I/O) ------------------------------------------------------------


def test_parser_usage_is_cumulative_and_counts_cached_prompt_tokens() -> None:
    turn = Turn(
        text="hi",
        usage=(7, 30),
        extra={"partial_usage": True, "cache_read_input_tokens": 100},
    )
    events = parse_all(sse_events(turn))
    usages = [e.usage for e in events if isinstance(e, UsageEvent)]
    # message_start (1 output token), the partial message_delta, the final one.
    assert [u.output_tokens for u in usages] == [1, 15, 30]
    assert usages[-1] == Usage.of(107, 30, cache_read_input_tokens=100)


def test_parser_error_event_maps_type_to_status() -> None:
    statuses = {}
    for error_type in (
        "overloaded_error",
        "rate_limit_error",
        "api_error",
        "invalid_request_error",
    ):
        parser = AnthropicDecoder()
        parser.feed_data({"type": "message_start", "message": {}})
        with pytest.raises(ProviderError) as info:
            parser.feed_data(
                {
                    "type": "error",
                    "error": {"type": error_type, "message": "nope"},
                    "request_id": "req_9",
                },
                "error",
            )
        assert info.value.message == "nope"
        assert info.value.request_id == "req_9"
        statuses[error_type] = info.value.status
        assert isinstance(info.value, ServerError) == (info.value.status >= 500)
    assert statuses == {
        "overloaded_error": 529,
        "rate_limit_error": 429,
        "api_error": 500,
        "invalid_request_error": 400,
    }


def test_parser_stream_without_message_stop_is_a_connection_error() -> None:
    items = sse_events(Turn(text="abcdefgh", text_chunk_chars=2))
    parser = AnthropicDecoder()
    for name, data in items[:-3]:  # cut before message_delta
        parser.feed_data(data, name)
    with pytest.raises(APIConnectionError, match=r"before message_stop.*8 characters"):
        parser.close()


def test_parser_ignores_unknown_events_and_server_tool_blocks() -> None:
    items: list[tuple[str, dict[str, Any]]] = [
        ("message_start", {"type": "message_start", "message": {"usage": {"input_tokens": 3}}}),
        ("brand_new", {"type": "brand_new", "whatever": 1}),
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "server_tool_use", "id": "srv_1", "name": "web_search"},
            },
        ),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "input_json_delta", "partial_json": '{"query": "x"}'},
            },
        ),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 1,
                "content_block": {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}},
            },
        ),
        ("content_block_stop", {"type": "content_block_stop", "index": 1}),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "tool_use"},
                "usage": {"output_tokens": 9},
            },
        ),
        ("message_stop", {"type": "message_stop"}),
        ("ping", {"type": "ping"}),
    ]
    result = assemble(parse_all(items))
    # The server tool is not a client tool call; the client tool keeps ordinal 0.
    assert result.tool_calls() == [{"id": "toolu_1", "name": "f", "arguments": "{}"}]
    assert result.usage == Usage.of(3, 9)
    assert result.reason == "tool_calls"
    # A server tool block cannot be rebuilt from a plain message: kept for verbatim replay.
    assert result.provider_data is not None
    kept = result.provider_data["anthropic"]["content"]
    assert kept[0] == {
        "type": "server_tool_use",
        "id": "srv_1",
        "name": "web_search",
        "input": {"query": "x"},
    }
    assert kept[1] == {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}


def test_plain_turns_keep_no_provider_data() -> None:
    turn = Turn(text="hello", tool_calls=[ScriptedToolCall("f", '{"a": 1}', id="t1")])
    assert assemble(parse_all(sse_events(turn))).provider_data is None
    assert (
        assemble(events_from_message(anthropic_wire.render_json(turn, "m"))).provider_data is None
    )


def test_thinking_block_is_kept_with_its_signature_in_both_modes() -> None:
    turn = Turn(
        text="The answer.",
        tool_calls=[ScriptedToolCall("f", '{"a": 1}', id="t1")],
        extra={"thinking": {"thinking": "Let me think about this.", "signature": "c2lnbmF0dXJl"}},
    )
    streamed = assemble(parse_all(sse_events(turn)))
    whole = assemble(events_from_message(anthropic_wire.render_json(turn, "m")))
    expected = [
        {"type": "thinking", "thinking": "Let me think about this.", "signature": "c2lnbmF0dXJl"},
        {"type": "text", "text": "The answer."},
        {"type": "tool_use", "id": "t1", "name": "f", "input": {"a": 1}},
    ]
    assert streamed.provider_data == {"anthropic": {"content": expected}}
    assert streamed.comparable() == whole.comparable()
    # The thinking text is not answer text.
    assert streamed.text == "The answer."
