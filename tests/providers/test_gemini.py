"""The Gemini provider over real loopback HTTP, and full chains through the public API."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from _gemini_events import WEATHER, Assembled, assemble
from anyio.lowlevel import checkpoint

import agentrt
from agentrt.errors import (
    APIConnectionError,
    AuthenticationError,
    BadRequestError,
    MissingAPIKeyError,
    ProviderError,
    RateLimitError,
    ServerError,
)
from agentrt.messages import Message, StreamEvent, TurnRequest, Usage
from agentrt.providers.gemini import PROVIDER_DATA_KEY
from agentrt.providers.http import GeminiProvider
from tools.fakeserver import gemini_wire
from tools.fakeserver.script import Fault, ScriptedToolCall, Turn

KEY = "AIza-test-gemini-key-0123456789"
MODEL = "gemini-x"


@asynccontextmanager
async def gemini(server: Any, **options: Any) -> AsyncIterator[GeminiProvider]:
    options.setdefault("api_key", KEY)
    options.setdefault("base_url", server.gemini_base_url)
    provider = GeminiProvider(MODEL, **options)
    provider.retry = dataclasses.replace(
        provider.retry, initial_delay=0.01
    )  # keep backoff short; Retry tests set it explicitly
    try:
        yield provider
    finally:
        await provider.aclose()


async def run(
    provider: GeminiProvider, request: TurnRequest | None = None, *, stream: bool = True
) -> list[StreamEvent]:
    request = request or TurnRequest([Message(role="user", content="hi")])
    return [event async for event in provider.turn(request, stream=stream)]


async def turn_events(server: Any, item: Turn | Fault, *, stream: bool = True) -> Assembled:
    server.push(item)
    async with gemini(server) as provider:
        return assemble(await run(provider, stream=stream))


# --- streaming over loopback HTTP -------------------------------------------------------


@pytest.mark.anyio
async def test_streamed_utf8_split_into_single_bytes(fake_server: Any) -> None:
    text = "héllo wörld — 日本語 🎉 ok"
    result = await turn_events(fake_server, Fault(split_bytes=1, turn=Turn(text=text)))
    assert result.text == text
    assert result.text_pieces > 3
    assert (result.raw_reason, result.reason) == ("STOP", "stop")
    request = fake_server.requests[0]
    assert request.path == f"/v1beta/models/{MODEL}:streamGenerateContent"
    assert request.query == {"alt": "sse"}


@pytest.mark.anyio
async def test_one_tool_call_with_whole_args(fake_server: Any) -> None:
    args = {"city": {"name": "Zürich"}, "days": [1, 2], "metric": True}
    call = ScriptedToolCall(name="weather", arguments=json.dumps(args))
    result = await turn_events(fake_server, Turn(tool_calls=[call]))
    [only] = result.tool_calls()
    assert only["name"] == "weather"
    assert json.loads(only["arguments"]) == args
    assert only["id"].startswith("call_0_")
    # Gemini says STOP for a tool-call turn; agentrt normalises it, keeping the raw value.
    assert (result.raw_reason, result.reason) == ("STOP", "tool_calls")


@pytest.mark.anyio
async def test_three_parallel_function_calls_keep_order_and_ids(fake_server: Any) -> None:
    calls = [
        ScriptedToolCall(name="weather", arguments='{"city": "Oslo"}', id="gem-a"),
        ScriptedToolCall(name="weather", arguments='{"city": "Rome"}'),
        ScriptedToolCall(name="now", arguments="{}"),
    ]
    result = await turn_events(fake_server, Turn(tool_calls=calls))
    got = result.tool_calls()
    assert [c["name"] for c in got] == ["weather", "weather", "now"]
    assert [json.loads(c["arguments"]) for c in got] == [{"city": "Oslo"}, {"city": "Rome"}, {}]
    assert got[0]["id"] == "gem-a"  # Gemini's own id is kept
    assert got[1]["id"].startswith("call_1_")
    assert got[2]["id"].startswith("call_2_")
    assert len({c["id"] for c in got}) == 3
    assert result.reason == "tool_calls"


@pytest.mark.anyio
async def test_text_then_function_call_in_one_turn(fake_server: Any) -> None:
    turn = Turn(text="Let me check that.", tool_calls=[ScriptedToolCall("now", "{}")])
    result = await turn_events(fake_server, turn)
    assert result.text == "Let me check that."
    assert [c["name"] for c in result.tool_calls()] == ["now"]
    assert result.reason == "tool_calls"
    assert result.provider_data == {
        PROVIDER_DATA_KEY: [
            {"text": "Let me check that."},
            {"functionCall": {"name": "now", "args": {}}},
        ]
    }


@pytest.mark.anyio
@pytest.mark.parametrize("arguments", ["{}", ""], ids=["empty-object", "no-args-field"])
async def test_empty_args(fake_server: Any, arguments: str) -> None:
    result = await turn_events(fake_server, Turn(tool_calls=[ScriptedToolCall("now", arguments)]))
    [only] = result.tool_calls()
    # Both become arguments the core parses to {}.
    assert json.loads(only["arguments"] or "{}") == {}


@pytest.mark.anyio
async def test_usage_counts_thoughts_as_output(fake_server: Any) -> None:
    result = await turn_events(
        fake_server, Turn(text="hi", usage=(7, 3), extra={"thoughts_tokens": 4})
    )
    assert result.usage == Usage(
        input_tokens=7, output_tokens=7, total_tokens=14, reasoning_output_tokens=4
    )
    silent = await turn_events(fake_server, Turn(text="hi", usage=None))
    assert silent.usage is None  # never a silent zero
    cached = await turn_events(
        fake_server, Turn(text="hi", usage=(70, 3), extra={"cached_tokens": 64})
    )
    assert cached.usage is not None and cached.usage.cache_read_input_tokens == 64
    assert cached.usage.input_tokens == 70  # cached input is part of the prompt count


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("turn", "raw", "reason"),
    [
        (Turn(text="done"), "STOP", "stop"),
        (Turn(tool_calls=[ScriptedToolCall("now")]), "STOP", "tool_calls"),
        (Turn(text="cut", finish_reason="length"), "MAX_TOKENS", "length"),
        (Turn(text="", finish_reason="content_filter"), "SAFETY", "content_filter"),
        (Turn(text="quote", extra={"finish_reason": "RECITATION"}), "RECITATION", "content_filter"),
        (Turn(text="x", extra={"finish_reason": "BLOCKLIST"}), "BLOCKLIST", "content_filter"),
        (
            Turn(text="x", extra={"finish_reason": "PROHIBITED_CONTENT"}),
            "PROHIBITED_CONTENT",
            "content_filter",
        ),
        (Turn(text="x", extra={"finish_reason": "SPII"}), "SPII", "content_filter"),
        (Turn(text="x", extra={"finish_reason": "OTHER"}), "OTHER", "stop"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
async def test_finish_reasons(fake_server: Any, turn: Turn, raw: str, reason: str) -> None:
    result = await turn_events(fake_server, turn)
    assert (result.raw_reason, result.reason) == (raw, reason)


@pytest.mark.anyio
@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
async def test_blocked_prompt_raises_bad_request(fake_server: Any, stream: bool) -> None:
    fake_server.push(Turn(extra={"block_reason": "SAFETY"}))
    async with gemini(fake_server) as provider:
        with pytest.raises(BadRequestError) as info:
            await run(provider, stream=stream)
    assert "blockReason SAFETY" in str(info.value)
    assert info.value.provider == "gemini"
    assert json.loads(info.value.body or "") == {"blockReason": "SAFETY"}


# --- failures -----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_429_then_success_honours_retry_info(fake_server: Any) -> None:
    fake_server.push(gemini_wire.rate_limit_fault("0.3s"), Turn(text="finally"))
    async with gemini(fake_server) as provider:
        provider.retry = dataclasses.replace(
            provider.retry, initial_delay=30.0
        )  # the backoff would blow the bound below
        started = time.monotonic()
        result = assemble(await run(provider))
        elapsed = time.monotonic() - started
    assert result.text == "finally"
    assert len(fake_server.requests) == 2
    gap = fake_server.requests[1].time - fake_server.requests[0].time
    assert gap >= 0.25
    assert elapsed < 5.0


@pytest.mark.anyio
async def test_retry_info_delay_is_capped(fake_server: Any) -> None:
    fake_server.push(gemini_wire.rate_limit_fault("3600s"), Turn(text="ok"))
    async with gemini(fake_server) as provider:
        provider.retry = dataclasses.replace(provider.retry, max_retry_after=0.05)
        started = time.monotonic()
        result = assemble(await run(provider, stream=False))
    assert result.text == "ok"
    assert time.monotonic() - started < 5.0


@pytest.mark.anyio
async def test_429_exhausted_is_rate_limit_error(fake_server: Any) -> None:
    fake_server.push(*[gemini_wire.rate_limit_fault("0.01s", "Quota exceeded")] * 2)
    async with gemini(fake_server, max_retries=1) as provider:
        with pytest.raises(RateLimitError) as info:
            await run(provider)
    assert info.value.status == 429
    assert "Quota exceeded" in info.value.message
    assert "RESOURCE_EXHAUSTED" in info.value.message


@pytest.mark.anyio
@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
async def test_500_exhausted_is_server_error(fake_server: Any, stream: bool) -> None:
    fake_server.push(*[Fault(status=500, message="backend on fire")] * 3)
    async with gemini(fake_server, max_retries=2) as provider:
        with pytest.raises(ServerError) as info:
            await run(provider, stream=stream)
    assert info.value.status == 500
    assert info.value.message == "backend on fire (INTERNAL)"
    assert len(fake_server.requests) == 3


@pytest.mark.anyio
async def test_non_json_error_body_is_readable(fake_server: Any) -> None:
    fake_server.push(Fault(status=400, raw_body=b"<html><b>Bad</b> request</html>"))
    async with gemini(fake_server) as provider:
        with pytest.raises(BadRequestError) as info:
            await run(provider)
    assert info.value.status == 400
    assert "Bad" in info.value.message


async def run_until_error(provider: GeminiProvider) -> tuple[list[StreamEvent], ProviderError]:
    """Consume a turn that must fail; return what arrived before the failure and the error."""
    received: list[StreamEvent] = []
    request = TurnRequest([Message(role="user", content="x")])
    try:
        async for event in provider.turn(request, stream=True):
            received.append(event)  # noqa: PERF401 - the events before the failure matter
    except ProviderError as exc:
        return received, exc
    raise AssertionError("the turn did not fail")


@pytest.mark.anyio
async def test_dropped_stream_is_connection_error(fake_server: Any) -> None:
    turn = Turn(text="a fairly long answer that will not arrive in full", text_chunk_chars=5)
    first_event = len(gemini_wire.render_sse(turn, MODEL)[0])
    fake_server.push(Fault(drop_after_bytes=first_event + 10, turn=turn))
    async with gemini(fake_server) as provider:
        received, error = await run_until_error(provider)
    assert type(error) is APIConnectionError
    assert "1 event" in str(error)  # says what had arrived
    assert assemble(received).text == turn.text[:5]
    assert len(fake_server.requests) == 1  # never retried once a chunk reached the caller


@pytest.mark.anyio
async def test_error_object_mid_stream(fake_server: Any) -> None:
    turn = Turn(text="abcdefgh")
    fake_server.push(Fault(error_event=True, message="model overloaded", turn=turn))
    async with gemini(fake_server) as provider:
        received, error = await run_until_error(provider)
    assert isinstance(error, ServerError)
    assert "model overloaded" in error.message
    assert assemble(received).text == "abcd"
    assert len(fake_server.requests) == 1


@pytest.mark.anyio
async def test_stream_event_that_is_not_json(fake_server: Any) -> None:
    # The fake server only speaks valid Gemini, so this odd body comes from a mock transport.
    def answer(request: httpx.Request) -> httpx.Response:
        body = f'data: {{"candidates": []}}\n\ndata: oops {KEY}\n\n'.encode()
        return httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as client:
        provider = GeminiProvider(MODEL, api_key=KEY, http_client=client)
        _, error = await run_until_error(provider)
    assert isinstance(error, ServerError)
    assert "could not be interpreted" in error.message
    assert KEY not in str(error)
    assert KEY not in (error.body or "")


# --- streaming and non-streaming agree ----------------------------------------------------


PARITY_TURNS = {
    "text": Turn(text="a longer answer, in pieces: ünïcødé ✓", usage=(12, 9)),
    "calls": Turn(
        tool_calls=[
            ScriptedToolCall("weather", '{"city": "Oslo"}', id="g-1"),
            ScriptedToolCall("now", "{}", id="g-2"),
        ]
    ),
    "text+call+signature": Turn(
        text="Checking.",
        tool_calls=[ScriptedToolCall("now", "{}", id="g-3")],
        extra={"thought_signature": "c2lnbmF0dXJl", "thought": "I should call now"},
    ),
    "text+signature": Turn(text="plain answer", extra={"thought_signature": "U0lH"}),
    "length": Turn(text="cut", finish_reason="length", usage=None),
}


@pytest.mark.anyio
@pytest.mark.parametrize("name", list(PARITY_TURNS))
async def test_stream_false_is_identical(fake_server: Any, name: str) -> None:
    turn = PARITY_TURNS[name]
    streamed = await turn_events(fake_server, turn, stream=True)
    whole = await turn_events(fake_server, turn, stream=False)
    assert streamed.comparable() == whole.comparable()
    assert fake_server.requests[1].path == f"/v1beta/models/{MODEL}:generateContent"
    assert fake_server.requests[1].query == {}


# --- what goes over the wire --------------------------------------------------------------


@pytest.mark.anyio
async def test_history_replays_thought_signature_verbatim(fake_server: Any) -> None:
    first = Turn(
        text="Let me look.",
        tool_calls=[ScriptedToolCall("weather", '{"city": "Oslo"}'), ScriptedToolCall("now")],
        extra={"thought_signature": "b3BhcXVl", "thought": "two tools"},
    )
    fake_server.push(first, Turn(text="Sunny at noon."))
    async with gemini(fake_server) as provider:
        prompt = Message(role="user", content="weather?")
        one = assemble(await run(provider, TurnRequest([prompt], system="Be kind.")))
        assistant = one.assistant_message()
        ids = [c.id for c in assistant.tool_calls]
        history = [
            prompt,
            assistant,
            Message(role="tool", tool_call_id=ids[0], name="weather", content="sunny"),
            Message(role="tool", tool_call_id=ids[1], name="now", content="boom", is_error=True),
        ]
        two = assemble(
            await run(provider, TurnRequest(history, system="Be kind.", tools=[WEATHER]))
        )
    assert two.text == "Sunny at noon."

    body = fake_server.requests[1].json
    assert body["systemInstruction"] == {"parts": [{"text": "Be kind."}]}
    assert [c["role"] for c in body["contents"]] == ["user", "model", "user"]
    replayed = body["contents"][1]["parts"]
    assert replayed == gemini_wire.render_json(first, MODEL)["candidates"][0]["content"]["parts"]
    assert replayed[2]["thoughtSignature"] == "b3BhcXVl"
    assert body["contents"][2]["parts"] == [
        {"functionResponse": {"name": "weather", "response": {"result": "sunny"}}},
        {"functionResponse": {"name": "now", "response": {"error": "boom"}}},
    ]
    assert body["tools"][0]["functionDeclarations"][0]["parametersJsonSchema"] == (
        WEATHER.parameters
    )


@pytest.mark.anyio
async def test_key_only_in_header(fake_server: Any) -> None:
    fake_server.push(Turn(text="ok"), Fault(status=401, message=f"API key {KEY} not valid"))
    async with gemini(fake_server) as provider:
        await run(provider)
        with pytest.raises(AuthenticationError) as info:
            await run(provider, stream=False)
        assert KEY not in repr(provider)
    for request in fake_server.requests:
        assert request.headers["x-goog-api-key"] == KEY
        assert KEY not in str(request.path)
        assert KEY not in json.dumps(request.query)
        assert "key" not in request.query
        assert "authorization" not in request.headers
    error = info.value
    assert error.status == 401
    for text in (str(error), repr(error), error.message, error.body or ""):
        assert KEY not in text


def test_missing_key_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    with pytest.raises(MissingAPIKeyError) as info:
        GeminiProvider(MODEL)
    assert "GEMINI_API_KEY" in str(info.value)


def test_base_url_defaults_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    monkeypatch.delenv("GOOGLE_GEMINI_BASE_URL", raising=False)
    assert GeminiProvider(MODEL).base_url == "https://generativelanguage.googleapis.com"
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", "http://proxy.local/")
    assert GeminiProvider(MODEL).base_url == "http://proxy.local"


# --- full chains through the public API ---------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
async def test_multi_turn_chain_with_sync_async_and_dual_tools(
    fake_server: Any, stream: bool
) -> None:
    calls: list[str] = []

    @agentrt.tool
    def add(a: int, b: int) -> int:
        """Add two numbers."""
        calls.append("add:sync")
        return a + b

    @agentrt.tool
    async def shout(word: str) -> str:
        """Upper-case a word."""
        await checkpoint()
        calls.append("shout:async")
        return word.upper()

    async def city_async(name: str) -> str:
        calls.append("city:async")
        return f"{name} (async)"

    @agentrt.async_tool_is(city_async)
    def city(name: str) -> str:
        """Describe a city."""
        calls.append("city:sync")
        return f"{name} (sync)"

    fake_server.push(
        Turn(
            text="Working on it.",
            tool_calls=[
                ScriptedToolCall("add", '{"a": 2, "b": 3}'),
                ScriptedToolCall("shout", '{"word": "hey"}', id="gem-shout"),
                ScriptedToolCall("city", '{"name": "Oslo"}'),
            ],
            usage=(20, 10),
            extra={"thought_signature": "Zmlyc3Q="},
        ),
        Turn(tool_calls=[ScriptedToolCall("add", '{"a": 5, "b": 5}')], usage=(40, 5)),
        Turn(text="All done: 5, HEY, Oslo, 10.", usage=(60, 8)),
    )
    model = agentrt.get_async_model(
        f"gemini:{MODEL}", base_url=fake_server.gemini_base_url, api_key=KEY, stream=stream
    )
    async with model:
        chain = model.chain("do things", system="Use tools.", tools=[add, shout, city])
        text = await chain.text()

    assert text == "All done: 5, HEY, Oslo, 10."  # the final answer: the last turn's text
    assert sorted(calls) == ["add:sync", "add:sync", "city:async", "shout:async"]
    assert [r.finish_reason for r in chain.responses] == ["tool_calls", "tool_calls", "stop"]
    assert [r.raw_finish_reason for r in chain.responses] == ["STOP", "STOP", "STOP"]
    assert chain.usage == Usage(input_tokens=120, output_tokens=23, total_tokens=143)
    assert len(fake_server.requests) == 3

    second = fake_server.requests[1].json
    assert second["systemInstruction"] == {"parts": [{"text": "Use tools."}]}
    assert [c["role"] for c in second["contents"]] == ["user", "model", "user"]
    model_parts = second["contents"][1]["parts"]
    assert model_parts[1]["thoughtSignature"] == "Zmlyc3Q="  # replayed verbatim
    responses = [p["functionResponse"] for p in second["contents"][2]["parts"]]
    assert [r["name"] for r in responses] == ["add", "shout", "city"]
    assert [r.get("id") for r in responses] == [None, "gem-shout", None]
    assert [r["response"] for r in responses] == [
        {"result": "5"},
        {"result": "HEY"},
        {"result": "Oslo (async)"},
    ]
    declared = second["tools"][0]["functionDeclarations"]
    assert [d["name"] for d in declared] == ["add", "shout", "city"]
    assert declared[0]["parametersJsonSchema"]["required"] == ["a", "b"]

    third = fake_server.requests[2].json
    assert [c["role"] for c in third["contents"]] == ["user", "model", "user", "model", "user"]
    assert third["contents"][4]["parts"] == [
        {"functionResponse": {"name": "add", "response": {"result": "10"}}}
    ]


@pytest.mark.anyio
async def test_odd_arguments_never_crash_the_chain(fake_server: Any) -> None:
    seen: list[int] = []

    @agentrt.tool
    def count(n: int) -> int:
        """Count to n."""
        seen.append(n)
        return n

    fake_server.push(
        Turn(
            tool_calls=[
                ScriptedToolCall("count", "this is not json"),  # args arrives as a string
                ScriptedToolCall("count", "[1, 2]"),  # args is not an object
                ScriptedToolCall("count", '{"n": "many"}'),  # fails validation
                ScriptedToolCall("missing_tool", "{}"),  # unknown tool
                ScriptedToolCall("count", ""),  # no args field: a required one is missing
                ScriptedToolCall("count", '{"n": 3}'),  # the one good call
            ]
        ),
        Turn(text="recovered"),
    )
    model = agentrt.get_async_model(
        f"gemini:{MODEL}", base_url=fake_server.gemini_base_url, api_key=KEY
    )
    async with model:
        chain = model.chain("count", tools=[count])
        assert await chain.text() == "recovered"

    assert seen == [3]
    assert chain.status == "completed"
    parts = fake_server.requests[1].json["contents"][2]["parts"]
    results = [p["functionResponse"]["response"] for p in parts]
    assert [next(iter(r)) for r in results] == ["error"] * 5 + ["result"]
    assert results[-1] == {"result": "3"}
    assert all(isinstance(r.get("error", ""), str) for r in results)
