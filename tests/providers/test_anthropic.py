"""The Anthropic provider over real HTTP against the loopback fake server."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from _anthropic_events import assemble, request

from agentrt.errors import (
    APIConnectionError,
    AuthenticationError,
    BadRequestError,
    MissingAPIKeyError,
    ProviderError,
    RateLimitError,
    ServerError,
)
from agentrt.messages import (
    Message,
    StreamEvent,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    ToolSpec,
    TurnRequest,
    Usage,
)
from agentrt.providers.anthropic import ANTHROPIC_VERSION, DEFAULT_MAX_TOKENS
from agentrt.providers.http import AnthropicProvider
from tools.fakeserver.script import Fault, ScriptedToolCall, Turn

KEY = "sk-ant-test-0123456789-secret"


# --- helpers ----------------------------------------------------------------------------


@asynccontextmanager
async def anthropic(server: Any, **options: Any) -> AsyncIterator[AnthropicProvider]:
    options.setdefault("api_key", KEY)
    provider = AnthropicProvider("claude-x", base_url=server.anthropic_base_url, **options)
    # Keep failed-attempt backoff short; Retry-After tests set their own values.
    provider.retry = dataclasses.replace(provider.retry, initial_delay=0.01)
    provider.retry = dataclasses.replace(provider.retry, max_delay=0.02)
    try:
        yield provider
    finally:
        await provider.aclose()


async def run_turn(provider: AnthropicProvider, req: TurnRequest, *, stream: bool = True) -> Any:
    return assemble([event async for event in provider.turn(req, stream=stream)])


# --- real HTTP over loopback --------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
async def test_text_with_multibyte_utf8_split_across_reads(fake_server: Any, stream: bool) -> None:
    text = "Grüße aus Zürich 🌍 — ça va? 日本語 ✓"
    fake_server.push(Fault(split_bytes=1, turn=Turn(text=text, text_chunk_chars=3)))
    async with anthropic(fake_server) as provider:
        result = await run_turn(provider, request(), stream=stream)
    assert result.text == text
    assert result.reason == "stop"
    assert result.raw_reason == "end_turn"
    if stream:
        assert result.text_pieces > 5


@pytest.mark.anyio
async def test_one_tool_call_with_arguments_in_many_fragments(fake_server: Any) -> None:
    arguments = json.dumps({"city": "Zürich", "days": 3, "units": "metric", "details": [1, 2]})
    call = ScriptedToolCall("forecast", arguments, id="toolu_forecast")
    fake_server.push(Turn(tool_calls=[call], arg_fragments=12))
    async with anthropic(fake_server) as provider:
        result = await run_turn(provider, request())
    assert result.tool_calls() == [
        {"id": "toolu_forecast", "name": "forecast", "arguments": arguments}
    ]
    assert result.arg_fragments[0] >= 10
    assert result.reason == "tool_calls"
    assert result.raw_reason == "tool_use"


@pytest.mark.anyio
@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
async def test_three_parallel_tool_calls(fake_server: Any, stream: bool) -> None:
    calls = [
        ScriptedToolCall("add", '{"a": 1, "b": 2}', id="toolu_0"),
        ScriptedToolCall("mul", '{"a": 3, "b": 4}', id="toolu_1"),
        ScriptedToolCall("neg", '{"a": 5}', id="toolu_2"),
    ]
    fake_server.push(Turn(tool_calls=calls, arg_fragments=4))
    async with anthropic(fake_server) as provider:
        result = await run_turn(provider, request(), stream=stream)
    assert result.tool_calls() == [
        {"id": c.id, "name": c.name, "arguments": c.arguments} for c in calls
    ]
    assert sorted(result.calls) == [0, 1, 2]
    assert result.text == ""


@pytest.mark.anyio
async def test_text_then_tool_call_in_one_turn(fake_server: Any) -> None:
    call = ScriptedToolCall("lookup", '{"q": "anyio"}', id="toolu_x")
    fake_server.push(Turn(text="Let me look that up.", tool_calls=[call]))
    async with anthropic(fake_server) as provider:
        events = [e async for e in provider.turn(request(), stream=True)]
    result = assemble(events)
    assert result.text == "Let me look that up."
    # The tool call is ordinal 0 although it is content block 1.
    assert result.tool_calls() == [
        {"id": "toolu_x", "name": "lookup", "arguments": '{"q": "anyio"}'}
    ]
    first_tool = next(i for i, e in enumerate(events) if isinstance(e, ToolCallDelta))
    last_text = max(i for i, e in enumerate(events) if isinstance(e, TextDelta))
    assert last_text < first_tool


@pytest.mark.anyio
@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
@pytest.mark.parametrize("arguments", ["", "{}"], ids=["no-delta", "empty-object"])
async def test_empty_arguments_become_empty_object(
    fake_server: Any, stream: bool, arguments: str
) -> None:
    fake_server.push(Turn(tool_calls=[ScriptedToolCall("now", arguments, id="toolu_now")]))
    async with anthropic(fake_server) as provider:
        result = await run_turn(provider, request(), stream=stream)
    assert result.tool_calls() == [{"id": "toolu_now", "name": "now", "arguments": "{}"}]


@pytest.mark.anyio
@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
async def test_usage_reported_and_cumulative(fake_server: Any, stream: bool) -> None:
    fake_server.push(
        Turn(
            text="counted",
            usage=(21, 40),
            extra={"partial_usage": True, "cache_creation_input_tokens": 4},
        )
    )
    fake_server.push(Turn(text="uncounted", usage=None))
    async with anthropic(fake_server) as provider:
        counted = await run_turn(provider, request(), stream=stream)
        uncounted = await run_turn(provider, request(), stream=stream)
    assert counted.usage == Usage.of(25, 40, cache_creation_input_tokens=4)
    assert counted.usage.total_tokens == 65
    assert uncounted.usage is None


@pytest.mark.anyio
@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("pause_turn", "stop"),
        ("tool_use", "tool_calls"),
        ("max_tokens", "length"),
        ("refusal", "content_filter"),
    ],
)
async def test_finish_reasons(fake_server: Any, stream: bool, raw: str, expected: str) -> None:
    calls = [ScriptedToolCall("f", "{}", id="toolu_f")] if raw == "tool_use" else []
    fake_server.push(Turn(text="partial", tool_calls=calls, extra={"stop_reason": raw}))
    async with anthropic(fake_server) as provider:
        result = await run_turn(provider, request(), stream=stream)
    assert (result.raw_reason, result.reason) == (raw, expected)


@pytest.mark.anyio
@pytest.mark.parametrize("neutral", ["stop", "tool_calls", "length", "content_filter"])
async def test_neutral_finish_reasons_round_trip(fake_server: Any, neutral: Any) -> None:
    calls = [ScriptedToolCall("f", "{}", id="toolu_f")] if neutral == "tool_calls" else []
    fake_server.push(Turn(text="x", tool_calls=calls, finish_reason=neutral))
    async with anthropic(fake_server) as provider:
        result = await run_turn(provider, request())
    assert result.reason == neutral


@pytest.mark.anyio
async def test_429_then_success_honours_retry_after(fake_server: Any) -> None:
    fake_server.push(Fault(status=429, message="slow down", headers={"retry-after": "0.3"}))
    fake_server.push(Turn(text="ok"))
    async with anthropic(fake_server) as provider:
        # Backoff alone would wait ~0.01 s: only Retry-After explains a longer wait.
        started = time.monotonic()
        result = await run_turn(provider, request())
        elapsed = time.monotonic() - started
    assert result.text == "ok"
    assert 0.25 <= elapsed < 5  # coarse: event-loop timers may fire a hair early
    assert len(fake_server.requests) == 2


@pytest.mark.anyio
async def test_429_exhausted_is_rate_limit_error(fake_server: Any) -> None:
    for _ in range(2):
        fake_server.push(Fault(status=429, message="slow down", headers={"retry-after": "0"}))
    async with anthropic(fake_server, max_retries=1) as provider:
        with pytest.raises(RateLimitError) as info:
            await run_turn(provider, request())
    assert info.value.status == 429
    assert info.value.message == "slow down"


@pytest.mark.anyio
@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
async def test_500_exhausted_into_server_error(fake_server: Any, stream: bool) -> None:
    for _ in range(3):
        fake_server.push(
            Fault(status=500, message="internal trouble", headers={"request-id": "req_0042"})
        )
    async with anthropic(fake_server, max_retries=2) as provider:
        with pytest.raises(ServerError) as info:
            await run_turn(provider, request(), stream=stream)
    error = info.value
    assert error.status == 500
    assert error.message == "internal trouble"
    assert error.request_id == "req_0042"
    assert error.provider == "anthropic"
    assert "internal trouble" in str(error)
    assert len(fake_server.requests) == 3


@pytest.mark.anyio
async def test_529_overloaded_is_retried(fake_server: Any) -> None:
    fake_server.push(Fault(status=529, message="Overloaded"))
    fake_server.push(Turn(text="back"))
    async with anthropic(fake_server) as provider:
        result = await run_turn(provider, request())
    assert result.text == "back"
    assert len(fake_server.requests) == 2


@pytest.mark.anyio
async def test_400_is_not_retried(fake_server: Any) -> None:
    fake_server.push(Fault(status=400, message="messages: field required"))
    fake_server.push(Turn(text="never"))
    async with anthropic(fake_server) as provider:
        with pytest.raises(BadRequestError, match="messages: field required"):
            await run_turn(provider, request())
    assert len(fake_server.requests) == 1


@pytest.mark.anyio
async def test_non_json_error_body_still_readable(fake_server: Any) -> None:
    fake_server.push(Fault(status=502, raw_body=b"<html><body>Bad gateway</body></html>"))
    async with anthropic(fake_server, max_retries=0) as provider:
        with pytest.raises(ServerError, match="Bad gateway") as info:
            await run_turn(provider, request())
    assert info.value.status == 502


@pytest.mark.anyio
async def test_dropped_stream_is_connection_error_and_not_retried(fake_server: Any) -> None:
    turn = Turn(text="x" * 400, text_chunk_chars=10)
    fake_server.push(Fault(drop_after_bytes=900, turn=turn))
    fake_server.push(Turn(text="a retry would get this"))
    received: list[StreamEvent] = []

    async def consume(provider: AnthropicProvider) -> None:
        async for event in provider.turn(request(), stream=True):
            received.append(event)  # noqa: PERF401 - keep what arrived before the drop

    async with anthropic(fake_server) as provider:
        with pytest.raises(APIConnectionError, match="broke"):
            await consume(provider)
    assert any(isinstance(e, TextDelta) for e in received)
    assert len(fake_server.requests) == 1


@pytest.mark.anyio
async def test_mid_stream_overloaded_error_event(fake_server: Any) -> None:
    fake_server.push(Fault(error_event=True, message="Overloaded", turn=Turn(text="abc" * 20)))
    async with anthropic(fake_server) as provider:
        with pytest.raises(ServerError) as info:
            await run_turn(provider, request())
    assert info.value.status == 529
    assert info.value.message == "Overloaded"
    assert info.value.provider == "anthropic"
    assert len(fake_server.requests) == 1


@pytest.mark.anyio
async def test_stream_false_gives_identical_result(fake_server: Any) -> None:
    def scripted() -> Turn:
        return Turn(
            text="Two calls coming: ✓",
            tool_calls=[
                ScriptedToolCall("add", '{"a": 1, "b": 2}', id="toolu_a"),
                ScriptedToolCall("now", "", id="toolu_n"),
                ScriptedToolCall("bad", '{"a": ', id="toolu_b"),
            ],
            usage=(30, 12),
        )

    fake_server.push(scripted())
    fake_server.push(scripted())
    async with anthropic(fake_server) as provider:
        streamed = await run_turn(provider, request(), stream=True)
        whole = await run_turn(provider, request(), stream=False)
    assert streamed.comparable() == whole.comparable()
    assert streamed.tool_calls()[2]["arguments"] == '{"a": '  # malformed, kept as received
    assert [r.json.get("stream") for r in fake_server.requests] == [True, None]


@pytest.mark.anyio
async def test_request_sent_over_the_wire(fake_server: Any) -> None:
    fake_server.push(Turn(text="done"))
    history = [
        Message(role="system", content="Extra rules."),
        Message(role="user", content="add and fail"),
        Message(
            role="assistant",
            tool_calls=[
                ToolCall(id="toolu_1", name="add", arguments={"a": 1}),
                ToolCall(id="toolu_2", name="fail", arguments={}),
            ],
        ),
        Message(role="tool", tool_call_id="toolu_1", name="add", content="2"),
        Message(role="tool", tool_call_id="toolu_2", name="fail", content="boom", is_error=True),
    ]
    req = TurnRequest(
        messages=history,
        system="Main system.",
        tools=[
            ToolSpec("add", "Add.", {"type": "object", "properties": {"a": {"type": "integer"}}})
        ],
        options={"temperature": 0, "stop": ["###"]},
    )
    async with anthropic(fake_server) as provider:
        await run_turn(provider, req)
    (sent,) = fake_server.requests
    assert sent.path == "/v1/messages"
    headers = {k.lower(): v for k, v in sent.headers.items()}
    assert headers["x-api-key"] == KEY
    assert headers["anthropic-version"] == ANTHROPIC_VERSION
    assert "authorization" not in headers
    body = sent.json
    assert body["model"] == "claude-x"
    assert body["system"] == "Main system.\n\nExtra rules."
    assert body["max_tokens"] == DEFAULT_MAX_TOKENS
    assert body["temperature"] == 0
    assert body["stop_sequences"] == ["###"]
    assert body["stream"] is True
    assert body["tools"] == [
        {
            "name": "add",
            "description": "Add.",
            "input_schema": {"type": "object", "properties": {"a": {"type": "integer"}}},
        }
    ]
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert body["messages"][1]["content"] == [
        {"type": "tool_use", "id": "toolu_1", "name": "add", "input": {"a": 1}},
        {"type": "tool_use", "id": "toolu_2", "name": "fail", "input": {}},
    ]
    assert body["messages"][2]["content"] == [
        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "2"},
        {"type": "tool_result", "tool_use_id": "toolu_2", "content": "boom", "is_error": True},
    ]


@pytest.mark.anyio
async def test_key_never_leaks_into_errors(fake_server: Any) -> None:
    fake_server.push(Fault(status=401, message=f"invalid x-api-key {KEY}"))
    async with anthropic(fake_server) as provider:
        with pytest.raises(AuthenticationError) as info:
            await run_turn(provider, request())
        assert KEY not in repr(provider)
        assert KEY not in repr(provider.api_key)
    error = info.value
    assert error.status == 401
    for text in (str(error), repr(error), error.message, error.body or ""):
        assert KEY not in text
    assert isinstance(error, ProviderError)


def test_missing_key_names_the_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(MissingAPIKeyError, match="ANTHROPIC_API_KEY"):
        AnthropicProvider("claude-x")


def test_key_and_base_url_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    monkeypatch.delenv("ANTHROPIC_BASE_URL", raising=False)
    provider = AnthropicProvider("claude-x")
    assert provider.base_url == "https://api.anthropic.com"
    assert provider.api_key.get_secret_value() == KEY
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://127.0.0.1:9/")
    assert AnthropicProvider("claude-x").base_url == "http://127.0.0.1:9"


# --- full chains through the public API -----------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
async def test_full_chain_with_sync_async_and_dual_tools(fake_server: Any, stream: bool) -> None:
    import agentrt

    ran: list[str] = []

    @agentrt.tool
    def add(a: int, b: int) -> int:
        """Add two integers."""
        ran.append("add")
        return a + b

    @agentrt.tool
    async def shout(text: str) -> str:
        """Upper-case a text."""
        ran.append("shout")
        return text.upper()

    async def weather_async(city: str) -> str:
        ran.append("weather:async")
        return f"sunny in {city}"

    @agentrt.async_tool_is(weather_async)
    def weather(city: str) -> str:
        """Report the weather of a city."""
        ran.append("weather:sync")
        return f"rainy in {city}"

    fake_server.push(
        Turn(
            text="Working on it.",
            tool_calls=[
                ScriptedToolCall("add", '{"a": 2, "b": 40}', id="toolu_add"),
                ScriptedToolCall("shout", '{"text": "héllo"}', id="toolu_shout"),
                ScriptedToolCall("weather", '{"city": "Paris"}', id="toolu_weather"),
            ],
            usage=(100, 20),
        ),
        Turn(
            tool_calls=[ScriptedToolCall("add", '{"a": 1, "b": 1}', id="toolu_add2")],
            usage=(150, 10),
        ),
        Turn(text=" The answer is 42.", usage=(170, 8)),
    )
    model = agentrt.get_async_model(
        "anthropic:claude-x",
        base_url=fake_server.anthropic_base_url,
        api_key=KEY,
        stream=stream,
    )
    async with model:
        chain = model.chain(
            "What is 2 + 40, shouted, and the weather in Paris?",
            system="Use the tools.",
            tools=[add, shout, weather],
            max_tokens=256,
        )
        text = await chain.text()

    assert text == " The answer is 42."  # the final answer: the last turn's text
    assert sorted(ran) == ["add", "add", "shout", "weather:async"]
    assert len(chain.responses) == 3
    assert [r.finish_reason for r in chain.responses] == ["tool_calls", "tool_calls", "stop"]
    assert chain.usage == Usage.of(420, 38)

    first, second, third = (r.json for r in fake_server.requests)
    assert first["system"] == "Use the tools."
    assert first["max_tokens"] == 256
    assert {t["name"] for t in first["tools"]} == {"add", "shout", "weather"}
    assert first["tools"][0]["input_schema"]["properties"].keys() == {"a", "b"}
    assert first["messages"] == [
        {"role": "user", "content": "What is 2 + 40, shouted, and the weather in Paris?"}
    ]
    # Turn 2 replays the assistant turn and answers all three calls in ONE user message.
    assert second["messages"][1] == {
        "role": "assistant",
        "content": [
            {"type": "text", "text": "Working on it."},
            {"type": "tool_use", "id": "toolu_add", "name": "add", "input": {"a": 2, "b": 40}},
            {"type": "tool_use", "id": "toolu_shout", "name": "shout", "input": {"text": "héllo"}},
            {
                "type": "tool_use",
                "id": "toolu_weather",
                "name": "weather",
                "input": {"city": "Paris"},
            },
        ],
    }
    results = second["messages"][2]
    assert results["role"] == "user"
    assert [
        (b["type"], b["tool_use_id"], b["content"], b.get("is_error")) for b in results["content"]
    ] == [
        ("tool_result", "toolu_add", "42", None),
        ("tool_result", "toolu_shout", "HÉLLO", None),
        ("tool_result", "toolu_weather", "sunny in Paris", None),
    ]
    assert len(second["messages"]) == 3
    assert [m["role"] for m in third["messages"]] == [
        "user",
        "assistant",
        "user",
        "assistant",
        "user",
    ]
    assert third["messages"][4]["content"] == [
        {"type": "tool_result", "tool_use_id": "toolu_add2", "content": "2"}
    ]


@pytest.mark.anyio
async def test_malformed_tool_arguments_go_back_as_error_result(fake_server: Any) -> None:
    import agentrt

    ran: list[dict[str, int]] = []

    @agentrt.tool
    def add(a: int, b: int) -> int:
        """Add two integers."""
        ran.append({"a": a, "b": b})
        return a + b

    fake_server.push(
        Turn(tool_calls=[ScriptedToolCall("add", '{"a": 1, "b": ', id="toolu_bad")]),
        Turn(tool_calls=[ScriptedToolCall("add", '{"a": 1, "b": 2}', id="toolu_good")]),
        Turn(text="3"),
    )
    async with agentrt.get_async_model(
        "anthropic:claude-x", base_url=fake_server.anthropic_base_url, api_key=KEY
    ) as model:
        chain = model.chain("add 1 and 2", tools=[add])
        assert await chain.text() == "3"

    assert ran == [{"a": 1, "b": 2}]  # the malformed call never ran
    bad_call = (await chain.responses[0].tool_calls())[0]
    assert bad_call.arguments is None
    assert bad_call.raw_arguments == '{"a": 1, "b": '
    second = fake_server.requests[1].json
    # The replayed tool_use block must carry an object even though the JSON was broken.
    assert second["messages"][1]["content"] == [
        {"type": "tool_use", "id": "toolu_bad", "name": "add", "input": {}}
    ]
    (result,) = second["messages"][2]["content"]
    assert result["type"] == "tool_result"
    assert result["tool_use_id"] == "toolu_bad"
    assert result["is_error"] is True
    assert "JSON" in result["content"]
