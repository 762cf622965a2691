"""The fault matrix: every provider, over real loopback HTTP, against injected failures.

Each scenario checks the documented outcome (retried then succeeded, a typed exception
with a clear message, or an error result handed to the model) and then that nothing
leaked: no request in flight, no busy or orphaned connection, no extra task or thread
(see ``_faultkit.run_checked``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import random
import re
from typing import Any

import httpx
import pytest
from _faultkit import (
    TARGETS,
    Target,
    closed_port,
    exchanges,
    run_checked,
)

import agentrt
from agentrt import AsyncModel
from agentrt.errors import (
    APIConnectionError,
    APITimeoutError,
    ProviderError,
    RateLimitError,
    ServerError,
)
from tools.fakeserver.script import Fault, ScriptedToolCall, Turn
from tools.fakeserver.server import FakeServer

pytestmark = pytest.mark.anyio

targets = pytest.mark.parametrize("target", TARGETS, ids=str)
modes = pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])

TEXT = "The quick brown fox jumps over the lazy dog, twice over."


# --- retried, then succeeded --------------------------------------------------------------


@targets
@modes
async def test_429_with_retry_after_is_retried(
    fake_server: FakeServer, target: Target, stream: bool
) -> None:
    async def scenario(model: AsyncModel) -> None:
        fake_server.push(Fault(status=429, headers={"retry-after": "0.05"}), Turn(text=TEXT))
        chain = model.chain("hi")
        assert await chain.text() == TEXT
        assert chain.status == "completed"
        first, second = fake_server.requests
        # The backoff alone would wait 8 s: only the header explains a 0.05 s pause.
        assert 0.05 <= second.time - first.time < 2.0

    model = target.model(fake_server, stream=stream)
    provider: Any = model.provider
    provider.retry = dataclasses.replace(provider.retry, initial_delay=8.0, max_delay=8.0)
    await run_checked(fake_server, model, scenario)


@targets
async def test_retry_after_is_capped(fake_server: FakeServer, target: Target) -> None:
    async def scenario(model: AsyncModel) -> None:
        fake_server.push(Fault(status=429, headers={"retry-after": "3600"}), Turn(text=TEXT))
        assert await model.chain("hi").text() == TEXT
        first, second = fake_server.requests
        assert second.time - first.time < 2.0

    model = target.model(fake_server)
    provider: Any = model.provider
    provider.retry = dataclasses.replace(provider.retry, max_retry_after=0.05)
    await run_checked(fake_server, model, scenario)


@targets
@modes
async def test_server_errors_are_retried(
    fake_server: FakeServer, target: Target, stream: bool
) -> None:
    async def scenario(model: AsyncModel) -> None:
        fake_server.push(Fault(status=500), Fault(status=503), Fault(status=529), Turn(text=TEXT))
        chain = model.chain("hi")
        assert await chain.text() == TEXT
        assert chain.status == "completed"
        assert len(fake_server.requests) == 4

    model = target.model(fake_server, stream=stream, max_retries=3)
    await run_checked(fake_server, model, scenario)


@targets
@pytest.mark.parametrize(
    ("status", "stream"), [(500, True), (503, False), (529, True)], ids=["500", "503", "529"]
)
async def test_server_errors_exhausted(
    fake_server: FakeServer, target: Target, stream: bool, status: int
) -> None:
    async def scenario(model: AsyncModel) -> None:
        fake_server.push(*[Fault(status=status, message="the model is overloaded")] * 3)
        chain = model.chain("hi")
        with pytest.raises(ServerError) as info:
            await chain.text()
        error = info.value
        assert len(fake_server.requests) == 3  # max_retries=2: three attempts
        assert error.status == status
        assert error.provider == target.name
        assert "the model is overloaded" in error.message
        assert error.request_id == f"req_fake_{len(fake_server.requests)}"
        assert str(error).startswith(f"{target.name} HTTP {status}: the model is overloaded")
        assert chain.status == "failed" and chain.error is error
        assert chain.responses[-1].status == "failed"

    await run_checked(fake_server, target.model(fake_server, stream=stream), scenario)


@targets
async def test_client_errors_are_never_retried(fake_server: FakeServer, target: Target) -> None:
    async def scenario(model: AsyncModel) -> None:
        for status in (400, 401, 403, 404, 422):
            fake_server.reset()
            fake_server.push(Fault(status=status, message="no good"), Turn(text="unused"))
            with pytest.raises(ProviderError, match="no good") as info:
                await model.chain("hi").text()
            assert not isinstance(info.value, (ServerError, RateLimitError, APIConnectionError))
            assert info.value.status == status
            assert len(fake_server.requests) == 1

    await run_checked(fake_server, target.model(fake_server), scenario)


@targets
async def test_max_retries_zero_disables_retries(fake_server: FakeServer, target: Target) -> None:
    async def scenario(model: AsyncModel) -> None:
        fake_server.push(Fault(status=503), Turn(text="unused"))
        with pytest.raises(ServerError):
            await model.chain("hi").text()
        assert len(fake_server.requests) == 1

    await run_checked(fake_server, target.model(fake_server, max_retries=0), scenario)


@targets
@modes
@pytest.mark.parametrize("max_retries", [0, 1])
async def test_a_request_lost_on_a_reused_connection_counts_as_an_attempt(
    fake_server: FakeServer, target: Target, stream: bool, max_retries: int
) -> None:
    """Issue 10 point 4: it was resent on a fresh connection outside ``max_retries``.

    The second request goes out on the first one's keep-alive connection; the server reads
    it and closes the connection without answering. The request was written, so sending
    it again is a retry: with ``max_retries=0`` the server sees exactly one POST.
    """

    async def scenario(model: AsyncModel) -> None:
        fake_server.push(Turn(text="first"), Fault(close_without_answer=True))
        if max_retries:
            fake_server.push(Turn(text="again"))
        assert await model.chain("one", stream=stream).text() == "first"
        before = len(fake_server.requests)
        if max_retries == 0:
            with pytest.raises(APIConnectionError, match="disconnected"):
                await model.chain("two", stream=stream).text()
            assert len(fake_server.requests) - before == 1
        else:
            assert await model.chain("two", stream=stream).text() == "again"
            assert len(fake_server.requests) - before == 2

    await run_checked(fake_server, target.model(fake_server, max_retries=max_retries), scenario)


@targets
@modes
async def test_an_idle_connection_the_server_closed_is_replaced_for_free(
    fake_server: FakeServer, target: Target, stream: bool
) -> None:
    """Nothing of the request was written on it, so a fresh connection costs no retry."""

    async def scenario(model: AsyncModel) -> None:
        fake_server.push(Turn(text="first"), Turn(text="second"))
        assert await model.chain("one", stream=stream).text() == "first"
        assert fake_server.drop_idle_connections() == 1
        assert await model.chain("two", stream=stream).text() == "second"

    await run_checked(fake_server, target.model(fake_server, max_retries=0), scenario)


# --- no usable response ------------------------------------------------------------------


@targets
@modes
async def test_connection_refused(
    target: Target, stream: bool, caplog: pytest.LogCaptureFixture
) -> None:
    max_retries = 2
    port = closed_port()
    base_url = f"http://127.0.0.1:{port}" + ("/v1" if target.name == "openai" else "")
    caplog.set_level(logging.INFO, logger="agentrt.http")

    async def scenario(model: AsyncModel) -> None:
        caplog.clear()
        chain = model.chain("hi")
        with pytest.raises(APIConnectionError) as info:
            await chain.text()
        error = info.value
        assert type(error) is APIConnectionError
        assert f"could not get a response from http://127.0.0.1:{port}" in str(error)
        assert error.status is None and error.provider == target.name
        retries = [r for r in caplog.records if "retry" in r.getMessage()]
        assert len(retries) == max_retries
        assert chain.status == "failed"

    model = target.model(base_url=base_url, stream=stream, max_retries=max_retries)
    await run_checked(None, model, scenario, port=port)


@targets
@modes
async def test_read_timeout(fake_server: FakeServer, target: Target, stream: bool) -> None:
    async def scenario(model: AsyncModel) -> None:
        fake_server.push(Fault(delay=0.3, turn=Turn(text="too late")))
        chain = model.chain("hi")
        with pytest.raises(APITimeoutError, match="timed out") as info:
            await chain.text()
        assert info.value.provider == target.name
        assert "raise timeout=" in str(info.value)
        assert len(fake_server.requests) == 1
        assert chain.status == "failed"

    # Only the read is short: a busy machine must not time out connecting or writing
    # instead (the request would then never reach the server).
    timeout = httpx.Timeout(5.0, read=0.05)
    model = target.model(fake_server, stream=stream, timeout=timeout, max_retries=0)
    await run_checked(fake_server, model, scenario)


@targets
async def test_read_timeout_is_retried(fake_server: FakeServer, target: Target) -> None:
    async def scenario(model: AsyncModel) -> None:
        fake_server.push(Fault(delay=0.5), Turn(text=TEXT))
        assert await model.chain("hi").text() == TEXT
        assert len(fake_server.requests) == 2

    # Long enough for the retry's answer even on a busy machine, short for the delay.
    await run_checked(fake_server, target.model(fake_server, timeout=0.15), scenario)


# --- a stream that breaks -----------------------------------------------------------------

#: What a broken stream's error says about how much had arrived.
ARRIVED = re.compile(r"after \d+ event\(s\) \(\d+ bytes\)|after \d+ chunk\(s\)|received \d+")


@targets
@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "close-delimited"])
async def test_connection_dropped_mid_stream(
    fake_server: FakeServer, target: Target, chunked: bool
) -> None:
    turn = Turn(text=TEXT, text_chunk_chars=5)
    total = sum(map(len, target.sse(turn)))
    rng = random.Random(f"{target.name}-{chunked}")
    offsets = sorted({0, 1, total - 1, total, *rng.sample(range(2, total - 1), 8)})

    async def scenario(model: AsyncModel) -> None:
        for offset in offsets:
            fake_server.reset()
            fake_server.chunked = chunked
            fake_server.push(Fault(turn=turn, drop_after_bytes=offset))
            chain = model.chain("hi")
            outcome = await text_or_error(chain)
            if isinstance(outcome, APIConnectionError):
                assert offset < total, f"offset {offset} of {total}: {outcome!r}"
                assert ARRIVED.search(str(outcome)), f"offset {offset}: says nothing: {outcome}"
                assert chain.status == "failed" and chain.error is outcome
            else:
                # Never a silently truncated answer: complete, or an error.
                assert outcome == TEXT, f"offset {offset} of {total}: truncated to {outcome!r}"
                assert chain.status == "completed"
            assert len(fake_server.requests) == 1, "a started stream is never retried"

    await run_checked(fake_server, target.model(fake_server), scenario)


@targets
async def test_dropped_json_body_is_retried(fake_server: FakeServer, target: Target) -> None:
    """Without streaming nothing reached the caller yet, so a cut body is retried."""

    async def scenario(model: AsyncModel) -> None:
        fake_server.push(Fault(turn=Turn(text="lost"), drop_after_bytes=20), Turn(text=TEXT))
        assert await model.chain("hi").text() == TEXT
        assert len(fake_server.requests) == 2

    await run_checked(fake_server, target.model(fake_server, stream=False), scenario)


async def text_or_error(chain: agentrt.AsyncChain) -> str | APIConnectionError:
    try:
        return await chain.text()
    except APIConnectionError as exc:
        return exc


def malformed_bodies(target: Target) -> dict[str, bytes]:
    first = target.sse(Turn(text=TEXT))[0]
    rng = random.Random(target.name)
    return {
        "not-json": first + b"data: {this is not json\n\n",
        "json-not-an-object": first + b"data: [1, 2, 3]\n\n",
        "invalid-utf8": first + b"data: \xff\xfe\xfd\n\n",
        "unexpected-shape": first + b'data: {"surprise": true}\n\n',
        "cut-inside-an-event": first + b'data: {"partial": ',
        "comments-only": b": keep-alive\n\n: still here\n\n",
        "empty": b"",
        "binary-garbage": first + bytes(rng.randrange(256) for _ in range(300)),
    }


@targets
async def test_malformed_sse(fake_server: FakeServer, target: Target) -> None:
    async def scenario(model: AsyncModel) -> None:
        for case, body in malformed_bodies(target).items():
            fake_server.reset()
            fake_server.push(Fault(raw_sse=body), Turn(text="unused"))
            chain = model.chain("hi")
            with pytest.raises(ProviderError) as info:
                await chain.text()
            assert info.value.provider == target.name, case
            assert str(info.value), case
            assert chain.status == "failed" and chain.error is info.value, case
            assert len(fake_server.requests) == 1, f"{case}: a started stream is never retried"

    await run_checked(fake_server, target.model(fake_server), scenario)


# --- bad tool calls -----------------------------------------------------------------------


@targets
@modes
async def test_bad_tool_calls_become_error_results(
    fake_server: FakeServer, target: Target, stream: bool
) -> None:
    received: list[tuple[int, int]] = []

    @agentrt.tool
    def add(a: int, b: int) -> int:
        """Add two integers."""
        received.append((a, b))
        return a + b

    async def scenario(model: AsyncModel) -> None:
        received.clear()
        fake_server.push(
            Turn(
                tool_calls=[
                    ScriptedToolCall("add", '{"a": 1, "b": ', "call_json"),
                    ScriptedToolCall("delete_everything", "{}", "call_unknown"),
                    ScriptedToolCall("add", '{"a": "one", "b": 2}', "call_invalid"),
                    ScriptedToolCall("add", '{"a": 2, "b": 3, "c": 4}', "call_extra"),
                    ScriptedToolCall("add", '{"a": 2, "b": 3}', "call_ok"),
                ]
            ),
            Turn(text="done"),
        )
        chain = model.chain("add things", tools=[add])
        assert await chain.text() == "done"
        assert chain.status == "completed"
        assert received == [(2, 3)]  # tools only ever receive validated arguments
        by_id = {r.tool_call_id: r for r in chain.tool_results}
        assert list(by_id) == ["call_json", "call_unknown", "call_invalid", "call_extra", "call_ok"]
        assert "could not be parsed: they are not valid JSON" in by_id["call_json"].content
        assert "no tool named 'delete_everything'" in by_id["call_unknown"].content
        assert "invalid arguments for tool 'add'" in by_id["call_invalid"].content
        assert "invalid arguments for tool 'add'" in by_id["call_extra"].content
        assert [r.is_error for r in by_id.values()] == [True, True, True, True, False]
        assert by_id["call_ok"].content == "5"
        # The model was told, in its own format, which calls failed and why.
        (exchange,) = exchanges(target.name, fake_server.requests[1].json)
        assert exchange.calls == list(by_id)
        assert [(c, e) for _, c, e in exchange.results] == [
            (r.content, r.is_error) for r in by_id.values()
        ]

    await run_checked(fake_server, target.model(fake_server, stream=stream), scenario)


# --- huge tool output ---------------------------------------------------------------------

TEN_MB = 10 * 1024 * 1024


@targets
@pytest.mark.parametrize(
    ("kind", "limit"), [("sync", None), ("async", 1000)], ids=["sync-default-cap", "async-cap-1000"]
)
async def test_ten_megabyte_tool_output_is_capped(
    fake_server: FakeServer, target: Target, kind: str, limit: int | None
) -> None:
    def dump() -> str:
        """Return a lot of text."""
        return "x" * TEN_MB

    async def dump_async() -> str:
        """Return a lot of text."""
        return "x" * TEN_MB

    tool = agentrt.tool(name="dump")(dump if kind == "sync" else dump_async)
    cap = limit if limit is not None else 100_000
    options = {} if limit is None else {"max_tool_output": limit}

    async def scenario(model: AsyncModel) -> None:
        fake_server.push(Turn(tool_calls=[ScriptedToolCall("dump", "{}", "call_big")]))
        fake_server.push(Turn(text="read it"))
        chain = model.chain("dump", tools=[tool], **options)
        assert await chain.text() == "read it"
        (result,) = chain.tool_results
        marker = (
            f"\n[truncated by agentrt: the tool returned {TEN_MB} characters, "
            f"only the first {cap} are shown]"
        )
        assert result.content == "x" * cap + marker
        assert not result.is_error
        sent = fake_server.requests[1]
        assert len(sent.body) < cap + 5_000  # the request stays bounded
        ((_, content, _),) = exchanges(target.name, sent.json)[0].results
        assert content == result.content

    await run_checked(fake_server, target.model(fake_server), scenario)


MALFORMED_RESPONSES = {
    "length-abc": b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
    b"Content-Length: abc\r\n\r\n{}",
    "length-negative": b"HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\n{}",
    "length-conflict": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
    "status-line": b"HTTP/1.1 OK 200\r\nContent-Length: 2\r\n\r\n{}",
    "not-http": b"SSH-2.0-OpenSSH_9.6\r\n\r\n",
    "header-line": b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
    "chunk-size": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
    "chunk-end": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}XX0\r\n\r\n",
    "encoding": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n{}",
    "short-body": b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{}",
}


@targets
@modes
@pytest.mark.parametrize("raw", MALFORMED_RESPONSES.values(), ids=MALFORMED_RESPONSES.keys())
async def test_a_malformed_response_is_a_connection_error_and_frees_the_connection(
    fake_server: FakeServer, target: Target, stream: bool, raw: bytes
) -> None:
    """Issue 10 point 16: ``Content-Length: abc`` raised a bare ValueError and leaked."""

    async def scenario(model: AsyncModel) -> None:
        fake_server.push(Fault(raw_response=raw))
        chain = model.chain("hi", stream=stream)
        with pytest.raises(APIConnectionError):
            await chain.text()
        assert chain.status == "failed"
        fake_server.push(Turn(text="fine"))  # the model still works
        assert await model.chain("again", stream=stream).text() == "fine"

    await run_checked(fake_server, target.model(fake_server, max_retries=0), scenario)


@targets
@pytest.mark.parametrize(
    "content_type", ["text/html; charset=utf-8", "application/json", "text/plain"]
)
async def test_a_streamed_request_answered_with_a_page_names_its_content_type(
    fake_server: FakeServer, target: Target, content_type: str
) -> None:
    """Issue 10 point 17: was "the event stream ended in the middle of an event"."""
    page = b"<html><head><title>Proxy login</title></head><body>Sign in</body></html>"

    async def scenario(model: AsyncModel) -> None:
        fake_server.push(Fault(status=200, raw_body=page, headers={"content-type": content_type}))
        chain = model.chain("hi")
        with pytest.raises(ServerError) as caught:
            await chain.text()
        message = str(caught.value)
        assert content_type in message and "<html><head><title>Proxy login" in message
        assert "text/event-stream" in message
        assert chain.status == "failed"

    await run_checked(fake_server, target.model(fake_server, max_retries=0), scenario)


@targets
async def test_a_streamed_request_answered_with_the_whole_json_answer_is_parsed(
    fake_server: FakeServer, target: Target
) -> None:
    """A gateway that ignores ``stream: true`` sends the non-streamed answer: use it."""

    async def scenario(model: AsyncModel) -> None:
        whole = target.wire.render_json(Turn(text=TEXT, usage=(7, 3)), target.model_name)
        if target.name == "gemini":
            whole = [whole]  # streamGenerateContent without alt=sse answers a JSON array
        fake_server.push(
            Fault(
                status=200,
                raw_body=json.dumps(whole).encode(),
                headers={"content-type": "application/json"},
            )
        )
        chain = model.chain("hi")
        chunks = [chunk.content async for chunk in chain]
        assert "".join(chunks) == TEXT
        assert chain.status == "completed"
        assert chain.usage.input_tokens == 7 and chain.usage.output_tokens == 3

    await run_checked(fake_server, target.model(fake_server, max_retries=0), scenario)


@targets
@modes
async def test_a_retry_policy_and_on_retry(
    fake_server: FakeServer, target: Target, stream: bool
) -> None:
    """``retry=RetryPolicy(...)`` decides; ``TurnRequest.on_retry`` hears of every retry."""
    from agentrt.messages import Message, TurnRequest
    from agentrt.providers import http as drivers

    cls = {"openai": drivers.OpenAIProvider, "anthropic": drivers.AnthropicProvider}.get(
        target.name, drivers.GeminiProvider
    )
    policy = agentrt.RetryPolicy(
        max_retries=3, statuses=frozenset({418}), initial_delay=0.001, max_delay=0.002
    )
    provider = cls("m-test", api_key="sk-test", base_url=target.base_url(fake_server), retry=policy)
    seen: list[tuple[int, str, float]] = []
    request = TurnRequest(
        [Message(role="user", content="hi")],
        on_retry=lambda attempt, error, delay: seen.append((attempt, type(error).__name__, delay)),
    )
    fake_server.push(Fault(status=418), Fault(status=418), Turn(text="brewed"))
    async with provider:
        events = [e async for e in provider.turn(request, stream=stream)]
        assert "".join(getattr(e, "text", "") for e in events) == "brewed"
        assert [(a, n) for a, n, _ in seen] == [(1, "BadRequestError"), (2, "BadRequestError")]
        assert all(0 <= d <= 0.002 for _, _, d in seen)
        fake_server.push(Fault(status=503))  # not in this policy's statuses: not retried
        with pytest.raises(ServerError):
            [e async for e in provider.turn(request, stream=stream)]
    assert len(fake_server.requests) == 4 and len(seen) == 2


@pytest.mark.parametrize(
    "bad",
    [
        {"max_retries": -1},
        {"max_retries": "2"},
        {"statuses": [99]},
        {"initial_delay": -1},
        {"jitter": 2},
        {"retry_after": 5},
    ],
)
def test_a_bad_retry_policy_is_a_usage_error(bad: dict[str, Any]) -> None:
    with pytest.raises(agentrt.UsageError, match=next(iter(bad))):
        agentrt.RetryPolicy(**bad)


@targets
async def test_a_host_name_with_several_addresses_connects(
    fake_server: FakeServer, target: Target
) -> None:
    """``localhost`` (often ::1 and 127.0.0.1; the server listens on the latter only)."""

    async def scenario(model: AsyncModel) -> None:
        fake_server.push(Turn(text=TEXT))
        assert await model.chain("hi").text() == TEXT

    base_url = target.base_url(fake_server).replace("127.0.0.1", "localhost")
    await run_checked(fake_server, target.model(base_url=base_url), scenario)
