"""The OpenAI provider over real loopback HTTP against the fake server."""

from __future__ import annotations

import dataclasses
import gc
import json
import weakref
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

import agentrt
from agentrt._response import ToolCallAssembler
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
    FinishEvent,
    Message,
    StreamEvent,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    ToolSpec,
    TurnRequest,
    Usage,
    UsageEvent,
)
from agentrt.providers.http import OpenAIProvider
from tools.fakeserver import openai_wire
from tools.fakeserver.script import Fault, ScriptedToolCall, Turn
from tools.fakeserver.server import FakeServer

KEY = "sk-openai-test-7c1e55d0b3"
ADD = ToolSpec(
    "add",
    "Add two numbers.",
    {
        "type": "object",
        "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
        "required": ["a", "b"],
    },
)
REQUEST = TurnRequest([Message(role="user", content="hi")], tools=[ADD])
UNICODE = "h\u00e9llo \u65e5\u672c\u8a9e \U0001f600\U0001f680 caf\u00e9 \u00fc\u00df"


@dataclass
class Assembled:
    """One turn's events as the core assembles them."""

    events: list[StreamEvent]
    text: str = ""
    calls: list[ToolCall] = field(default_factory=list)
    usage: Usage | None = None
    finish: FinishEvent | None = None

    @classmethod
    def of(cls, events: list[StreamEvent]) -> Assembled:
        result = cls(events)
        assembler = ToolCallAssembler()
        for event in events:
            if isinstance(event, TextDelta):
                result.text += event.text
            elif isinstance(event, ToolCallDelta):
                assembler.add(event)
            elif isinstance(event, UsageEvent):
                result.usage = event.usage
            elif isinstance(event, FinishEvent):
                result.finish = event
        result.calls = assembler.calls()
        return result

    def same_result(self) -> tuple[Any, ...]:
        return (self.text, self.calls, self.usage, self.finish)


@asynccontextmanager
async def provider_for(fake_server: FakeServer, **options: Any) -> AsyncIterator[OpenAIProvider]:
    options.setdefault("api_key", KEY)
    options.setdefault("base_url", fake_server.openai_base_url)
    provider = OpenAIProvider("gpt-test", **options)
    provider.retry = dataclasses.replace(provider.retry, initial_delay=0.01)
    async with provider:
        yield provider


async def run(
    fake_server: FakeServer, *, stream: bool = True, request: TurnRequest = REQUEST, **options: Any
) -> Assembled:
    async with provider_for(fake_server, **options) as provider:
        return Assembled.of([e async for e in provider.turn(request, stream=stream)])


def tool_call(name: str, arguments: str, id: str | None = None) -> ScriptedToolCall:
    return ScriptedToolCall(name=name, arguments=arguments, id=id)


# --- streamed content --------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("split", [1, 2, 3, 5, 7])
async def test_streamed_multibyte_text_split_across_reads(
    fake_server: FakeServer, split: int
) -> None:
    fake_server.push(Fault(turn=Turn(text=UNICODE, text_chunk_chars=3), split_bytes=split))
    result = await run(fake_server)
    assert result.text == UNICODE
    assert sum(isinstance(e, TextDelta) for e in result.events) == -(-len(UNICODE) // 3)
    assert result.finish == FinishEvent("stop", "stop")


@pytest.mark.anyio
async def test_one_tool_call_with_arguments_in_many_fragments(fake_server: FakeServer) -> None:
    arguments = json.dumps({"a": 123456, "b": 654321, "note": "f\u00fcr dich \U0001f600"})
    fake_server.push(Turn(tool_calls=[tool_call("add", arguments, "call_abc")], arg_fragments=12))
    result = await run(fake_server)
    deltas = [e for e in result.events if isinstance(e, ToolCallDelta)]
    assert len(deltas) == 13  # the header fragment and twelve argument pieces
    assert [d.id for d in deltas] == ["call_abc"] + [None] * 12
    assert [d.name for d in deltas] == ["add"] + [None] * 12
    assert result.calls == [
        ToolCall(
            id="call_abc", name="add", arguments=json.loads(arguments), raw_arguments=arguments
        )
    ]
    assert result.finish == FinishEvent("tool_calls", "tool_calls")


@pytest.mark.anyio
@pytest.mark.parametrize("interleave", [False, True], ids=["sequential", "interleaved"])
async def test_three_parallel_tool_calls(fake_server: FakeServer, interleave: bool) -> None:
    calls = [tool_call("add", json.dumps({"a": i, "b": 10 * i}), f"call_{i}") for i in range(3)]
    fake_server.push(
        Turn(tool_calls=calls, arg_fragments=4, extra={"openai_interleave": interleave})
    )
    result = await run(fake_server)
    assert [(c.id, c.name, c.arguments) for c in result.calls] == [
        ("call_0", "add", {"a": 0, "b": 0}),
        ("call_1", "add", {"a": 1, "b": 10}),
        ("call_2", "add", {"a": 2, "b": 20}),
    ]
    indices = [e.index for e in result.events if isinstance(e, ToolCallDelta)]
    if interleave:
        assert indices[:3] == [0, 1, 2]  # the three headers come first, then the pieces
        assert indices != sorted(indices)
    else:
        assert indices == sorted(indices)


@pytest.mark.anyio
async def test_text_then_tool_call_in_one_turn(fake_server: FakeServer) -> None:
    fake_server.push(
        Turn(text="Let me add those.", tool_calls=[tool_call("add", '{"a": 1, "b": 2}')])
    )
    result = await run(fake_server)
    assert result.text == "Let me add those."
    kinds = [type(e).__name__ for e in result.events]
    assert kinds.index("ToolCallDelta") > max(i for i, k in enumerate(kinds) if k == "TextDelta")
    assert [(c.name, c.arguments) for c in result.calls] == [("add", {"a": 1, "b": 2})]
    assert result.calls[0].id == "call_fake_0"


@pytest.mark.anyio
@pytest.mark.parametrize("stream", [True, False])
async def test_empty_arguments(fake_server: FakeServer, stream: bool) -> None:
    fake_server.push(Turn(tool_calls=[tool_call("now", "")]))
    result = await run(fake_server, stream=stream)
    assert [(c.name, c.arguments, c.raw_arguments) for c in result.calls] == [("now", {}, "")]


@pytest.mark.anyio
@pytest.mark.parametrize("stream", [True, False])
async def test_usage(fake_server: FakeServer, stream: bool) -> None:
    fake_server.push(Turn(text="a", usage=(321, 45)), Turn(text="b", usage=None))
    assert (await run(fake_server, stream=stream)).usage == Usage.of(321, 45, 366)
    assert (await run(fake_server, stream=stream)).usage is None
    if stream:
        assert fake_server.requests[0].json["stream_options"] == {"include_usage": True}


@pytest.mark.anyio
@pytest.mark.parametrize("stream", [True, False])
async def test_cached_and_reasoning_tokens_are_kept_and_add_up(
    fake_server: FakeServer, stream: bool
) -> None:
    details = {"cached_tokens": 200, "reasoning_tokens": 30}
    fake_server.push(Turn(text="a", usage=(321, 45), extra=details), Turn(text="b"))
    first = (await run(fake_server, stream=stream)).usage
    second = (await run(fake_server, stream=stream)).usage
    assert first == Usage.of(321, 45, cache_read_input_tokens=200, reasoning_output_tokens=30)
    assert second == Usage.of(10, 5) and second.cache_read_input_tokens is None
    # Summed, a detail one turn did not report counts as 0 there, not as unknown.
    total = first + second
    assert (total.input_tokens, total.cache_read_input_tokens) == (331, 200)
    assert str(second) == "input_tokens=10 output_tokens=5 total_tokens=15"


@pytest.mark.anyio
@pytest.mark.parametrize("stream", [True, False])
@pytest.mark.parametrize(
    ("turn", "raw", "normalised"),
    [
        (Turn(text="done"), "stop", "stop"),
        (Turn(tool_calls=[ScriptedToolCall("add")]), "tool_calls", "tool_calls"),
        (
            Turn(
                tool_calls=[ScriptedToolCall("add")], extra={"openai_raw_finish": "function_call"}
            ),
            "function_call",
            "tool_calls",
        ),
        (Turn(text="cut", finish_reason="length"), "length", "length"),
        (Turn(text="", finish_reason="content_filter"), "content_filter", "content_filter"),
        (Turn(text="x", extra={"openai_raw_finish": "something_new"}), "something_new", None),
    ],
    ids=["stop", "tool_calls", "function_call", "length", "content_filter", "unknown"],
)
async def test_finish_reasons(
    fake_server: FakeServer, stream: bool, turn: Turn, raw: str, normalised: str | None
) -> None:
    fake_server.push(turn)
    assert (await run(fake_server, stream=stream)).finish == FinishEvent(raw, normalised)  # type: ignore[arg-type]


SHAPES = {
    "text": Turn(text=UNICODE),
    "tool": Turn(tool_calls=[ScriptedToolCall("add", '{"a": 1, "b": 2}', "c1")]),
    "text+3tools": Turn(
        text="thinking",
        tool_calls=[
            ScriptedToolCall("add", json.dumps({"a": i, "b": i}), f"c{i}") for i in range(3)
        ],
    ),
    "empty-args": Turn(tool_calls=[ScriptedToolCall("now", "")]),
    "malformed-args": Turn(tool_calls=[ScriptedToolCall("add", '{"a": 1,')]),
    "length": Turn(text="partial", finish_reason="length", usage=(7, 3)),
}


@pytest.mark.anyio
@pytest.mark.parametrize("shape", SHAPES)
async def test_non_streaming_gives_identical_results(fake_server: FakeServer, shape: str) -> None:
    fake_server.push(SHAPES[shape], SHAPES[shape])
    streamed = await run(fake_server, stream=True)
    whole = await run(fake_server, stream=False)
    assert whole.same_result() == streamed.same_result()
    assert "stream" not in fake_server.requests[1].json
    assert "stream_options" not in fake_server.requests[1].json


# --- compatible servers ------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("quirk", ["openai_repeat_header", "openai_single_fragment"])
async def test_compatible_server_tool_call_quirks(fake_server: FakeServer, quirk: str) -> None:
    calls = [ScriptedToolCall("add", json.dumps({"a": i, "b": 2}), f"id{i}") for i in range(2)]
    fake_server.push(Turn(tool_calls=calls, extra={quirk: True}))
    result = await run(fake_server)
    deltas = [e for e in result.events if isinstance(e, ToolCallDelta)]
    # id and name are forwarded once per call, however often the server repeats them.
    assert [d.name for d in deltas if d.name] == ["add", "add"]
    assert [d.id for d in deltas if d.id] == ["id0", "id1"]
    assert [(c.id, c.arguments) for c in result.calls] == [
        ("id0", {"a": 0, "b": 2}),
        ("id1", {"a": 1, "b": 2}),
    ]


@pytest.mark.anyio
async def test_stream_without_done_but_with_finish_is_complete(fake_server: FakeServer) -> None:
    fake_server.chunked = False  # the connection closes after the finish and usage chunks
    events = openai_wire.render_sse(Turn(text="fine"), "gpt-test")
    fake_server.push(Fault(turn=Turn(text="fine"), drop_after_bytes=sum(map(len, events[:-1]))))
    assert (await run(fake_server)).text == "fine"


@pytest.mark.anyio
async def test_stream_ending_before_finish_is_an_error(fake_server: FakeServer) -> None:
    fake_server.chunked = False
    events = openai_wire.render_sse(Turn(text="abcdefgh"), "gpt-test")
    fake_server.push(Fault(turn=Turn(text="abcdefgh"), drop_after_bytes=sum(map(len, events[:2]))))
    with pytest.raises(APIConnectionError, match="without a finish reason"):
        await run(fake_server)


# --- failures ----------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("stream", [True, False])
async def test_429_then_success_honours_retry_after(fake_server: FakeServer, stream: bool) -> None:
    fake_server.push(Fault(status=429, headers={"retry-after-ms": "120"}), Turn(text="after"))
    async with provider_for(fake_server) as provider:
        provider.retry = dataclasses.replace(
            provider.retry, initial_delay=10.0
        )  # only the header can explain a short wait
        result = Assembled.of([e async for e in provider.turn(REQUEST, stream=stream)])
    assert result.text == "after"
    assert len(fake_server.requests) == 2
    assert 0.11 <= fake_server.requests[1].time - fake_server.requests[0].time < 5.0


@pytest.mark.anyio
async def test_429_exhausted(fake_server: FakeServer) -> None:
    fake_server.push(*[Fault(status=429, message="slow down", headers={"retry-after": "0"})] * 3)
    with pytest.raises(RateLimitError, match="slow down") as info:
        await run(fake_server)
    assert info.value.status == 429
    assert len(fake_server.requests) == 3


@pytest.mark.anyio
@pytest.mark.parametrize("stream", [True, False])
async def test_500_exhausted_into_server_error(fake_server: FakeServer, stream: bool) -> None:
    fake_server.push(*[Fault(status=500, message="The server had an error")] * 3)
    with pytest.raises(ServerError) as info:
        await run(fake_server, stream=stream)
    error = info.value
    assert (error.status, error.message, error.request_id, error.provider) == (
        500,
        "The server had an error",
        "req_fake_3",
        "openai",
    )
    assert "openai HTTP 500: The server had an error (request id req_fake_3)" == str(error)
    assert len(fake_server.requests) == 3


@pytest.mark.anyio
async def test_401_is_an_authentication_error_without_the_key(fake_server: FakeServer) -> None:
    fake_server.push(Fault(status=401, message=f"Incorrect API key provided: {KEY}."))
    with pytest.raises(AuthenticationError) as info:
        await run(fake_server)
    assert KEY not in str(info.value)
    assert "Incorrect API key provided: [redacted]." == info.value.message
    assert len(fake_server.requests) == 1


@pytest.mark.anyio
async def test_400_is_a_bad_request(fake_server: FakeServer) -> None:
    fake_server.push(Fault(status=400, message="'messages' must contain 'json'"))
    with pytest.raises(BadRequestError, match="must contain 'json'"):
        await run(fake_server, stream=False)


@pytest.mark.anyio
async def test_dropped_stream(fake_server: FakeServer) -> None:
    fake_server.push(Fault(turn=Turn(text="x" * 100, text_chunk_chars=5), drop_after_bytes=1200))
    received: list[StreamEvent] = []
    async with provider_for(fake_server) as provider:
        with pytest.raises(APIConnectionError, match="event stream broke after") as info:
            await _consume(provider, received)
    assert type(info.value) is APIConnectionError
    assert received  # text had reached the caller: no retry
    assert all(isinstance(e, TextDelta) for e in received)
    assert len(fake_server.requests) == 1


async def _consume(provider: OpenAIProvider, into: list[StreamEvent]) -> None:
    async for event in provider.turn(REQUEST, stream=True):
        into.append(event)  # noqa: PERF401 - keep what arrived before the error


@pytest.mark.anyio
async def test_error_event_mid_stream(fake_server: FakeServer) -> None:
    fake_server.push(
        Fault(turn=Turn(text="hello"), error_event=True, message="The model is overloaded")
    )
    with pytest.raises(ServerError, match="The model is overloaded") as info:
        await run(fake_server)
    assert len(fake_server.requests) == 1
    assert info.value.provider == "openai"


@pytest.mark.anyio
async def test_error_object_in_a_200_json_response(fake_server: FakeServer) -> None:
    body = json.dumps({"error": {"message": "quota", "type": "insufficient_quota"}}).encode()
    fake_server.push(Fault(status=200, raw_body=body, headers={"content-type": "application/json"}))
    with pytest.raises(RateLimitError, match="quota"):
        await run(fake_server, stream=False, max_retries=0)


# --- the request -------------------------------------------------------------------------


@pytest.mark.anyio
async def test_request_body_format(fake_server: FakeServer) -> None:
    history = [
        Message(role="user", content="What is 1+2 and 3+4?"),
        Message(
            role="assistant",
            content="Adding.",
            tool_calls=[
                ToolCall(
                    id="c1", name="add", arguments={"a": 1, "b": 2}, raw_arguments='{"a":1,"b":2}'
                ),
                ToolCall(id="c2", name="add", arguments=None, raw_arguments='{"a": 3,'),
                ToolCall(id="c3", name="now", arguments={}, raw_arguments=""),
            ],
        ),
        Message(role="tool", content="3", tool_call_id="c1", name="add"),
        Message(
            role="tool", content="Error: bad JSON", tool_call_id="c2", name="add", is_error=True
        ),
        Message(role="tool", content="noon", tool_call_id="c3", name="now"),
    ]
    request = TurnRequest(
        history, system="Be brief.", tools=[ADD], options={"temperature": 0.2, "max_tokens": 50}
    )
    await run(fake_server, request=request)
    sent = fake_server.requests[0]
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.json == {
        "model": "gpt-test",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "What is 1+2 and 3+4?"},
            {
                "role": "assistant",
                "content": "Adding.",
                "tool_calls": [
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "add", "arguments": '{"a":1,"b":2}'},
                    },
                    {
                        "id": "c2",
                        "type": "function",
                        "function": {"name": "add", "arguments": '{"a": 3,'},
                    },
                    {
                        "id": "c3",
                        "type": "function",
                        "function": {"name": "now", "arguments": "{}"},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "3"},
            {"role": "tool", "tool_call_id": "c2", "content": "Error: bad JSON"},
            {"role": "tool", "tool_call_id": "c3", "content": "noon"},
        ],
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "add",
                    "description": ADD.description,
                    "parameters": ADD.parameters,
                },
            }
        ],
        "temperature": 0.2,
        "max_tokens": 50,
        "stream": True,
        "stream_options": {"include_usage": True},
    }


@pytest.mark.anyio
async def test_no_tools_key_without_tools(fake_server: FakeServer) -> None:
    await run(fake_server, request=TurnRequest([Message(role="user", content="hi")]))
    assert "tools" not in fake_server.requests[0].json


@pytest.mark.anyio
async def test_one_client_per_provider_across_turns(fake_server: FakeServer) -> None:
    async with provider_for(fake_server) as provider:
        for _ in range(3):
            async for _event in provider.turn(REQUEST, stream=True):
                pass
        client = provider.client
    assert client.is_closed
    assert len(fake_server.requests) == 3


def test_missing_key_names_openai_api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(MissingAPIKeyError, match="OPENAI_API_KEY"):
        OpenAIProvider("gpt")


def test_base_url_defaults_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    assert OpenAIProvider("gpt").base_url == "https://api.openai.com/v1"
    monkeypatch.setenv("OPENAI_BASE_URL", "http://localhost:11434/v1/")
    assert OpenAIProvider("gpt").base_url == "http://localhost:11434/v1"
    assert KEY not in repr(OpenAIProvider("gpt"))


# --- through the public API --------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("stream", [True, False])
async def test_prompt_through_get_async_model(fake_server: FakeServer, stream: bool) -> None:
    fake_server.push(
        Turn(text="Sure.", tool_calls=[ScriptedToolCall("add", '{"a": 2, "b": 3}', "c9")])
    )
    model = agentrt.get_async_model(
        "openai:gpt-test", api_key=KEY, base_url=fake_server.openai_base_url, stream=stream
    )
    async with model:
        response = model.prompt("add 2 and 3", tools=[_add])
        assert await response.text() == "Sure."
        calls = await response.tool_calls()
    assert [(c.id, c.name, c.arguments) for c in calls] == [("c9", "add", {"a": 2, "b": 3})]
    assert fake_server.requests[0].json["tools"][0]["function"]["name"] == "_add"
    assert response.usage == Usage.of(10, 5, 15)
    assert (response.finish_reason, response.raw_finish_reason) == ("tool_calls", "tool_calls")
    assert response.model == "openai:gpt-test"


def _add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@pytest.mark.anyio
@pytest.mark.parametrize("stream", [True, False])
async def test_full_chain_with_sync_async_and_dual_tools(
    fake_server: FakeServer, stream: bool
) -> None:
    ran: list[str] = []

    @agentrt.tool
    def add(a: int, b: int) -> int:
        """Add two integers."""
        ran.append("add")
        return a + b

    @agentrt.tool
    async def mul(a: int, b: int) -> int:
        """Multiply two integers."""
        ran.append("mul")
        return a * b

    async def shout_async(text: str) -> str:
        ran.append("shout-async")
        return text.upper() + "!"

    @agentrt.async_tool_is(shout_async)
    def shout(text: str) -> str:
        """Shout the text."""
        ran.append("shout-sync")
        return text.upper()

    fake_server.push(
        Turn(
            text="Working.",
            tool_calls=[
                ScriptedToolCall("add", '{"a": 2, "b": 3}', "call_add"),
                ScriptedToolCall("mul", '{"a": 4, "b": 5}', "call_mul"),
            ],
        ),
        Turn(tool_calls=[ScriptedToolCall("shout", '{"text": "h\u00e9"}', "call_shout")]),
        Turn(text="2+3=5, 4*5=20, H\u00c9!", usage=(30, 8)),
    )
    model = agentrt.get_async_model(
        "openai:gpt-test", api_key=KEY, base_url=fake_server.openai_base_url, stream=stream
    )
    async with model:
        chain = model.chain("compute", system="You calculate.", tools=[add, mul, shout])
        text = await chain.text()
    assert text == "2+3=5, 4*5=20, H\u00c9!"  # the final answer: the last turn's text
    assert sorted(ran) == ["add", "mul", "shout-async"]
    assert [(r.tool_call_id, r.content, r.is_error) for r in chain.tool_results] == [
        ("call_add", "5", False),
        ("call_mul", "20", False),
        ("call_shout", "H\u00c9!", False),
    ]
    assert len(fake_server.requests) == 3
    second = fake_server.requests[1].json["messages"]
    assert second[0] == {"role": "system", "content": "You calculate."}
    assert second[2]["tool_calls"][1] == {
        "id": "call_mul",
        "type": "function",
        "function": {"name": "mul", "arguments": '{"a": 4, "b": 5}'},
    }
    assert second[3:] == [
        {"role": "tool", "tool_call_id": "call_add", "content": "5"},
        {"role": "tool", "tool_call_id": "call_mul", "content": "20"},
    ]
    assert fake_server.requests[2].json["messages"][-1] == {
        "role": "tool",
        "tool_call_id": "call_shout",
        "content": "H\u00c9!",
    }
    assert {t["function"]["name"] for t in fake_server.requests[0].json["tools"]} == {
        "add",
        "mul",
        "shout",
    }
    assert chain.usage == Usage.of(10, 5) + Usage.of(10, 5) + Usage.of(30, 8)
    assert chain.status == "completed"


@pytest.mark.anyio
async def test_malformed_tool_arguments_go_back_to_the_model(fake_server: FakeServer) -> None:
    ran: list[tuple[int, int]] = []

    @agentrt.tool
    def add(a: int, b: int) -> int:
        """Add two integers."""
        ran.append((a, b))
        return a + b

    fake_server.push(
        Turn(tool_calls=[ScriptedToolCall("add", '{"a": 1, "b": ', "call_bad")]),
        Turn(tool_calls=[ScriptedToolCall("add", '{"a": 1, "b": 2}', "call_good")]),
        Turn(text="3"),
    )
    model = agentrt.get_async_model(
        "openai:gpt-test", api_key=KEY, base_url=fake_server.openai_base_url
    )
    async with model:
        chain = model.chain("add", tools=[add])
        assert await chain.text() == "3"
    assert ran == [(1, 2)]
    bad = chain.responses[0]
    assert (await bad.tool_calls())[0].arguments is None
    first_result = chain.tool_results[0]
    assert first_result.is_error
    sent = fake_server.requests[1].json["messages"]
    assert sent[-2]["tool_calls"][0]["function"]["arguments"] == '{"a": 1, "b": '
    assert sent[-1]["role"] == "tool"
    assert sent[-1]["tool_call_id"] == "call_bad"
    assert "JSON" in sent[-1]["content"] or "json" in sent[-1]["content"]
    assert fake_server.requests[2].json["messages"][-1] == {
        "role": "tool",
        "tool_call_id": "call_good",
        "content": "3",
    }


@pytest.mark.anyio
@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
@pytest.mark.parametrize("client", ["own", "user"])
async def test_a_finished_chain_leaves_no_cyclic_garbage(
    fake_server: FakeServer, stream: bool, client: str
) -> None:
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    options: dict[str, Any] = {"http_client": httpx.AsyncClient()} if client == "user" else {}
    model = agentrt.get_async_model(
        "openai:gpt-test",
        api_key=KEY,
        base_url=fake_server.openai_base_url,
        stream=stream,
        **options,
    )
    async with model:
        for warm in (False, True):  # the first chain also opens the connection
            fake_server.push(
                Turn(tool_calls=[ScriptedToolCall("add", '{"a": 1, "b": 2}', "call_1")]),
                Turn(text="3"),
            )
            gc.collect()
            gc.disable()  # what is freed now is freed by refcounting
            try:
                before = _ours()
                chain = model.chain("add", tools=[add])
                assert await chain.text() == "3"
                freed = weakref.ref(chain)
                del chain
                assert freed() is None
                if warm:
                    assert _ours() - before == Counter()  # nothing left for the collector
            finally:
                gc.enable()
    if client == "user":
        await options["http_client"].aclose()


def _ours() -> Counter[str]:
    """The objects agentrt makes, or has httpx make, that only the cyclic collector could free."""
    found: Counter[str] = Counter()
    for obj in gc.get_objects():
        module = type(obj).__module__
        if isinstance(obj, (Message, ToolCall)) or (
            isinstance(module, str) and module.startswith(("agentrt.", "httpx."))
        ):
            found[type(obj).__qualname__] += 1
    return found


@pytest.mark.anyio
async def test_a_model_keeps_nothing_of_a_finished_chains_history(fake_server: FakeServer) -> None:
    """Encodings of a chain's messages are reused between its turns, and die with it."""
    import tracemalloc

    @agentrt.tool
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    model = agentrt.get_async_model(
        "openai:gpt-test", api_key="sk-test", base_url=fake_server.openai_base_url
    )
    async with model:
        fake_server.push(Turn(text="warm"))
        await model.chain("warm-up").text()  # lazy imports, the connection, the tool list
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for n in range(3):
                fake_server.push(
                    Turn(tool_calls=[tool_call("add", '{"a": 1, "b": 2}', f"c{n}")]),
                    Turn(text=f"done {n}"),
                )
                prompt = f"{n} " + "x" * 1_000_000  # a 1 MB prompt, sent on both turns
                chain = model.chain(prompt, tools=[add])
                assert await chain.text() == f"done {n}"
                del chain, prompt
            fake_server.reset()  # the in-process fake server records every request it got
            gc.collect()
            kept = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        assert kept < 500_000, f"{kept} bytes still held after three 1 MB chains"


# --- content as a list of parts (issue 10 point 15) ---------------------------------------

THINKING = {"type": "thinking", "thinking": [{"type": "text", "text": "2 and 3 make 5"}]}


def _sse(*chunks: dict[str, Any]) -> bytes:
    return b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks) + (
        b"data: [DONE]\n\n"
    )


def _chunk(delta: Any, finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "c1",
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def _completion(message: Any) -> bytes:
    return json.dumps(
        {
            "id": "c1",
            "object": "chat.completion",
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
        }
    ).encode()


def _push_answer(fake_server: FakeServer, stream: bool, *contents: Any) -> None:
    """One answer whose ``content`` arrives as ``contents`` (one per streamed chunk)."""
    if stream:
        chunks = [_chunk({"role": "assistant", "content": c}) for c in contents]
        raw = _sse(*chunks, _chunk({}, "stop"))
        fake_server.push(Fault(raw_sse=raw))
    else:
        (content,) = contents
        body = _completion({"role": "assistant", "content": content})
        fake_server.push(
            Fault(status=200, raw_body=body, headers={"content-type": "application/json"})
        )


@pytest.mark.anyio
@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
async def test_content_as_a_list_of_thinking_and_text_parts(
    fake_server: FakeServer, stream: bool
) -> None:
    if stream:
        contents: tuple[Any, ...] = ([THINKING], [{"type": "text", "text": "The answer"}], " is 5.")
    else:
        contents = ([THINKING, {"type": "text", "text": "The answer is 5."}],)
    _push_answer(fake_server, stream, *contents)
    model = agentrt.get_async_model(
        "openai:magistral-test", api_key=KEY, base_url=fake_server.openai_base_url
    )
    async with model:
        response = model.prompt("2+3?", stream=stream)
        assert await response.text() == "The answer is 5."
        assert response.status == "completed"
        assert response.message.provider_data == {"openai": {"content_parts": [THINKING]}}


@pytest.mark.anyio
@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
async def test_reasoning_content_is_kept_not_shown(fake_server: FakeServer, stream: bool) -> None:
    if stream:
        raw = _sse(
            _chunk({"role": "assistant", "reasoning_content": "think"}),
            _chunk({"reasoning_content": "ing", "content": "Five."}),
            _chunk({}, "stop"),
        )
        fake_server.push(Fault(raw_sse=raw))
    else:
        body = _completion(
            {"role": "assistant", "content": "Five.", "reasoning_content": "thinking"}
        )
        fake_server.push(
            Fault(status=200, raw_body=body, headers={"content-type": "application/json"})
        )
    model = agentrt.get_async_model(
        "openai:reasoner-test", api_key=KEY, base_url=fake_server.openai_base_url
    )
    async with model:
        response = model.prompt("2+3?", stream=stream)
        assert await response.text() == "Five."
        assert response.message.provider_data == {"openai": {"reasoning_content": "thinking"}}


UNREADABLE_CONTENT = [
    42,
    {"type": "text", "text": "an object, not a list"},
    ["a bare string part"],
    [{"type": "text", "text": 5}],
    [{"type": "text"}, None],
]


@pytest.mark.anyio
@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
@pytest.mark.parametrize("content", UNREADABLE_CONTENT, ids=repr)
async def test_content_agentrt_cannot_read_fails_the_turn(
    fake_server: FakeServer, stream: bool, content: Any
) -> None:
    _push_answer(fake_server, stream, content)
    model = agentrt.get_async_model(
        "openai:odd-test", api_key=KEY, base_url=fake_server.openai_base_url, max_retries=0
    )
    async with model:
        response = model.prompt("hi", stream=stream)
        with pytest.raises(ServerError, match="could not be interpreted"):
            await response.text()
        assert response.status == "failed"


ODD_EVENTS = [
    {"choices": "not a list"},
    {"choices": [["not", "an", "object"]]},
    {"choices": [{"index": 0, "delta": "text"}]},
    {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": "f"}]}}]},
    {"choices": [{"index": 0, "delta": {"tool_calls": 7}}]},
    {"choices": [], "usage": {"prompt_tokens": "many"}},
]


@pytest.mark.anyio
@pytest.mark.parametrize("event", ODD_EVENTS, ids=repr)
async def test_a_stream_event_of_another_shape_is_a_provider_error(
    fake_server: FakeServer, event: dict[str, Any]
) -> None:
    fake_server.push(Fault(raw_sse=_sse(event, _chunk({}, "stop"))))
    model = agentrt.get_async_model(
        "openai:odd-test", api_key=KEY, base_url=fake_server.openai_base_url, max_retries=0
    )
    async with model:
        chain = model.chain("hi")
        with pytest.raises(ProviderError, match="could not be interpreted"):
            await chain.text()
        assert chain.status == "failed"
        assert chain.responses[0].status == "failed"
