"""Spans and metrics of real chains over loopback HTTP, for each provider, streamed and not."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.trace import SpanKind, StatusCode
from test_otel_kit import (
    OPTION_ATTRIBUTES,
    OPTIONS,
    PROVIDERS,
    Meeting,
    Telemetry,
    children,
    fake,
    remote_model,
    server,
    shape,
    telemetry,
    tool_turn,
)

import agentrt
from agentrt.otel import _semconv as sc
from tools.fakeserver.script import Fault, Turn
from tools.fakeserver.server import FakeServer

__all__ = ["fake", "server", "telemetry"]  # fixtures, used by name

pytestmark = pytest.mark.anyio


def chain_tools(telemetry: Telemetry, meeting: Meeting) -> list[Any]:
    """A sync and an async tool that meet (so they ran in parallel), each opening a span."""
    inner = telemetry.tracer_provider.get_tracer("test")

    @agentrt.tool
    def add(a: int, b: int) -> int:
        """Add two integers."""
        with inner.start_as_current_span("db query in add"):
            assert meeting.sync_side(), "the async tool did not run at the same time"
        return a + b

    @agentrt.tool
    async def mul(a: int, b: int) -> int:
        """Multiply two integers."""
        with inner.start_as_current_span("http call in mul"):
            assert await meeting.async_side(), "the sync tool did not run at the same time"
        return a * b

    return [add, mul]


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
@pytest.mark.parametrize("provider", sorted(PROVIDERS))
async def test_three_turn_chain_span_tree(
    fake: FakeServer, telemetry: Telemetry, provider: str, stream: bool
) -> None:
    fake.push(tool_turn(0, "let me"), tool_turn(1, "again"), Turn(text="the answer is 3 and 6"))
    model = remote_model(fake, provider, stream=stream)
    chain = model.chain(
        "compute",
        tools=chain_tools(telemetry, Meeting()),
        callbacks=[telemetry.handler],
        **OPTIONS[provider],
    )
    assert "the answer is 3 and 6" in await chain.text()
    await model.aclose()

    spans = telemetry.spans()
    (root,) = [s for s in spans if s.parent is None]
    assert root.name == "invoke_agent"
    assert root.kind is SpanKind.INTERNAL
    assert root.status.status_code is StatusCode.UNSET
    assert root.attributes is not None
    assert root.attributes[sc.OPERATION_NAME] == "invoke_agent"
    assert root.attributes[sc.PROVIDER_NAME] == PROVIDERS[provider]
    assert sc.AGENT_NAME not in root.attributes and sc.CONVERSATION_ID not in root.attributes
    assert shape(spans, root) == [
        "chat m-1",
        "execute_tool add",
        "execute_tool mul",
        "chat m-1",
        "execute_tool add",
        "execute_tool mul",
        "chat m-1",
    ]

    chats = [s for s in children(spans, root) if s.name == "chat m-1"]
    for index, chat in enumerate(chats):
        attributes = dict(chat.attributes or {})
        assert chat.kind is SpanKind.CLIENT
        assert chat.status.status_code is StatusCode.UNSET
        assert attributes[sc.OPERATION_NAME] == "chat"
        assert attributes[sc.PROVIDER_NAME] == PROVIDERS[provider]
        assert attributes[sc.REQUEST_MODEL] == "m-1"
        assert attributes[sc.SERVER_ADDRESS] == "127.0.0.1"
        assert attributes[sc.SERVER_PORT] == fake.port
        assert attributes.get(sc.REQUEST_STREAM) is (True if stream else None)
        for option, value in OPTIONS[provider].items():
            expected = tuple(value) if isinstance(value, list) else value
            assert attributes[OPTION_ATTRIBUTES[option]] == expected, option
        finish = ("stop",) if index == 2 else ("tool_calls",)
        assert attributes[sc.RESPONSE_FINISH_REASONS] == finish
        assert attributes[sc.USAGE_INPUT_TOKENS] == 10
        assert attributes[sc.USAGE_OUTPUT_TOKENS] == 5
        assert (sc.RESPONSE_TIME_TO_FIRST_CHUNK in attributes) is stream
        assert not any(k.startswith(("gen_ai.input", "gen_ai.output")) for k in attributes)

    tools = [s for s in children(spans, root) if s.name.startswith("execute_tool")]
    assert sorted(str((s.attributes or {})[sc.TOOL_CALL_ID]) for s in tools) == [
        "call_add_0",
        "call_add_1",
        "call_mul_0",
        "call_mul_1",
    ]
    for span in tools:
        attributes = dict(span.attributes or {})
        name = attributes[sc.TOOL_NAME]
        assert span.kind is SpanKind.INTERNAL
        assert span.status.status_code is StatusCode.UNSET
        assert attributes[sc.OPERATION_NAME] == "execute_tool"
        assert attributes[sc.TOOL_TYPE] == "function"
        assert attributes[sc.TOOL_DESCRIPTION] == (
            "Add two integers." if name == "add" else "Multiply two integers."
        )
        assert sc.ERROR_TYPE not in attributes
        # the span the tool opened (in its worker thread for add) nests under it
        (inner,) = children(spans, span)
        assert inner.name == ("db query in add" if name == "add" else "http call in mul")
    # the sync and the async call of each turn overlapped
    for turn in ("0", "1"):
        add, mul = sorted(
            (s for s in tools if str((s.attributes or {})[sc.TOOL_CALL_ID]).endswith(turn)),
            key=lambda s: s.name,
        )
        assert add.start_time < mul.end_time and mul.start_time < add.end_time  # type: ignore[operator]

    # tokens only on chat spans, and they add up to the chain's usage
    for span in spans:
        if not span.name.startswith("chat"):
            assert not any(k.startswith("gen_ai.usage") for k in (span.attributes or {}))
    assert chain.usage is not None
    assert sum(int((c.attributes or {})[sc.USAGE_INPUT_TOKENS]) for c in chats) == (
        chain.usage.input_tokens
    )
    assert sum(int((c.attributes or {})[sc.USAGE_OUTPUT_TOKENS]) for c in chats) == (
        chain.usage.output_tokens
    )

    # metrics: one duration per turn, tokens by type, first chunk for streamed turns only
    (duration,) = telemetry.points(sc.OPERATION_DURATION)
    assert duration.count == 3
    assert tuple(duration.explicit_bounds) == sc.DURATION_BUCKETS
    assert dict(duration.attributes or {}) == {
        sc.OPERATION_NAME: "chat",
        sc.PROVIDER_NAME: PROVIDERS[provider],
        sc.REQUEST_MODEL: "m-1",
        sc.SERVER_ADDRESS: "127.0.0.1",
        sc.SERVER_PORT: fake.port,
    }
    tokens = {str((p.attributes or {})[sc.TOKEN_TYPE]): p for p in telemetry.points(sc.TOKEN_USAGE)}
    assert sorted(tokens) == ["input", "output"]
    assert (tokens["input"].sum, tokens["input"].count) == (chain.usage.input_tokens, 3)
    assert (tokens["output"].sum, tokens["output"].count) == (chain.usage.output_tokens, 3)
    assert tuple(tokens["input"].explicit_bounds) == sc.TOKEN_BUCKETS
    first = telemetry.points(sc.TIME_TO_FIRST_CHUNK)
    if stream:
        assert [p.count for p in first] == [3]
        assert tuple(first[0].explicit_bounds) == sc.DURATION_BUCKETS
    else:
        assert first == []


async def test_retries_are_events_of_one_chat_span(fake: FakeServer, telemetry: Telemetry) -> None:
    fake.push(Fault(status=500), Fault(status=503), Turn(text="fine"))
    model = remote_model(fake, "openai")
    assert await model.chain("hi", callbacks=[telemetry.handler]).text() == "fine"
    await model.aclose()
    assert len(fake.requests) == 3
    (chat,) = telemetry.named("chat")
    assert chat.status.status_code is StatusCode.UNSET
    retries = [e for e in chat.events if e.name == sc.RETRY_EVENT]
    assert [dict(e.attributes or {})[sc.RETRY_ATTEMPT] for e in retries] == [1, 2]
    assert all(dict(e.attributes or {})[sc.ERROR_TYPE] == "ServerError" for e in retries)
    delays = [dict(e.attributes or {})[sc.RETRY_DELAY] for e in retries]
    assert all(isinstance(d, float) and 0 <= d < 1 for d in delays)
    # the events happened inside the span, in order
    times = [e.timestamp for e in retries]
    assert chat.start_time <= times[0] <= times[1] <= chat.end_time  # type: ignore[operator]


async def test_a_failed_turn_sets_error_type_on_chat_and_agent(
    fake: FakeServer, telemetry: Telemetry
) -> None:
    fake.push(Fault(status=401, message="bad key"))
    model = remote_model(fake, "anthropic")
    with pytest.raises(agentrt.AuthenticationError):
        await model.chain("hi", callbacks=[telemetry.handler]).text()
    await model.aclose()
    (chat,) = telemetry.named("chat")
    (agent,) = telemetry.named("invoke_agent")
    for span in (chat, agent):
        assert dict(span.attributes or {})[sc.ERROR_TYPE] == "AuthenticationError"
        assert span.status.status_code is StatusCode.ERROR
    (duration,) = telemetry.points(sc.OPERATION_DURATION)
    assert dict(duration.attributes or {})[sc.ERROR_TYPE] == "AuthenticationError"
    assert telemetry.points(sc.TOKEN_USAGE) == []  # no usage reported: none recorded


@pytest.mark.parametrize(
    ("provider", "extra", "expected"),
    [
        (
            "openai",
            {"cached_tokens": 6, "reasoning_tokens": 2},
            {sc.USAGE_CACHE_READ_INPUT_TOKENS: 6, sc.USAGE_REASONING_OUTPUT_TOKENS: 2},
        ),
        (
            "anthropic",
            {"cache_read_input_tokens": 6, "cache_creation_input_tokens": 3},
            {sc.USAGE_CACHE_READ_INPUT_TOKENS: 6, sc.USAGE_CACHE_CREATION_INPUT_TOKENS: 3},
        ),
        (
            "gemini",
            {"cached_tokens": 6, "thoughts_tokens": 2},
            {sc.USAGE_CACHE_READ_INPUT_TOKENS: 6, sc.USAGE_REASONING_OUTPUT_TOKENS: 2},
        ),
    ],
)
async def test_cache_and_reasoning_counts_reach_the_chat_span(
    fake: FakeServer,
    telemetry: Telemetry,
    provider: str,
    extra: dict[str, int],
    expected: dict[str, int],
) -> None:
    fake.push(Turn(text="fine", usage=(10, 5), extra=extra), Turn(text="plain"))
    model = remote_model(fake, provider)
    await model.chain("hi", callbacks=[telemetry.handler]).text()
    await model.chain("hi", callbacks=[telemetry.handler]).text()
    await model.aclose()
    counted, plain = telemetry.named("chat")
    attributes = dict(counted.attributes or {})
    assert {k: attributes[k] for k in expected} == expected
    unreported = set(dict(plain.attributes or {})) & {
        sc.USAGE_CACHE_READ_INPUT_TOKENS,
        sc.USAGE_CACHE_CREATION_INPUT_TOKENS,
        sc.USAGE_REASONING_OUTPUT_TOKENS,
    }
    assert unreported == set()  # a count the provider did not report is left out, not 0
