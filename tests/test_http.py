"""The shared HTTP machinery: SSE parsing, retries, error mapping, key hygiene."""

from __future__ import annotations

import email.utils
import json
import logging
import socket
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing
from typing import Any, ClassVar

import httpx
import pytest
from pydantic import SecretStr
from tenacity import RetryCallState

import agentrt
from agentrt._http import DEFAULT_LIMITS, HTTPProvider, SSEEvent, make_client
from agentrt._transport import LeanTransport
from agentrt.errors import (
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    MissingAPIKeyError,
    ProviderError,
    RateLimitError,
    ServerError,
)
from agentrt.messages import StreamEvent, TurnRequest
from tools.fakeserver.script import Fault, Turn
from tools.fakeserver.server import FakeServer

KEY = "sk-TESTKEY-4f1b9c0e7d2a"


class _Provider(HTTPProvider):
    name: ClassVar[str] = "test"
    env_key: ClassVar[str] = "AGENTRT_TEST_API_KEY"
    default_base_url: ClassVar[str] = "https://api.example.invalid/v1"
    env_base_url: ClassVar[str | None] = "AGENTRT_TEST_BASE_URL"

    async def turn(self, request: TurnRequest, *, stream: bool) -> AsyncIterator[StreamEvent]:
        raise NotImplementedError
        yield


class _HeaderKeyProvider(_Provider):
    """Sends the key the way Gemini does, in a custom header."""

    def auth_headers(self) -> dict[str, str]:
        return {"x-goog-api-key": self.api_key.get_secret_value()}


@pytest.fixture(scope="module")
def _server() -> Iterator[FakeServer]:
    with FakeServer() as server:
        yield server


@pytest.fixture
def fake(_server: FakeServer) -> Iterator[FakeServer]:
    _server.reset()
    yield _server
    _server.reset()


def make(fake: FakeServer, cls: type[_Provider] = _Provider, **options: Any) -> _Provider:
    options.setdefault("api_key", KEY)
    options.setdefault("base_url", fake.openai_base_url)
    provider = cls("model-x", **options)
    provider.retry_initial_delay = 0.01
    return provider


async def post(provider: _Provider, *, stream: bool = False) -> Any:
    body = {"model": "model-x", "stream": stream}
    if not stream:
        return await provider.post_json("/chat/completions", body)
    async with aclosing(provider.post_sse("/chat/completions", body)) as events:
        return [event async for event in events]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# --- construction ------------------------------------------------------------------------


def test_missing_key_names_the_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AGENTRT_TEST_API_KEY", raising=False)
    with pytest.raises(MissingAPIKeyError, match="AGENTRT_TEST_API_KEY") as info:
        _Provider("m")
    assert info.value.env_var == "AGENTRT_TEST_API_KEY"
    assert info.value.provider == "test"


def test_key_and_base_url_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTRT_TEST_API_KEY", KEY)
    monkeypatch.setenv("AGENTRT_TEST_BASE_URL", "http://localhost:9/v1/")
    provider = _Provider("m")
    assert provider.api_key.get_secret_value() == KEY
    assert provider.base_url == "http://localhost:9/v1"
    monkeypatch.delenv("AGENTRT_TEST_BASE_URL")
    assert _Provider("m").base_url == "https://api.example.invalid/v1"
    assert _Provider("m", base_url="http://x/").base_url == "http://x"


def test_key_is_secret_and_not_in_repr() -> None:
    provider = _Provider("m", api_key=SecretStr(KEY))
    assert isinstance(provider.api_key, SecretStr)
    assert KEY not in repr(provider)
    assert KEY not in str(provider)
    assert KEY not in repr(provider.api_key)


def test_bad_options_rejected() -> None:
    with pytest.raises(ValueError, match="max_retries"):
        _Provider("m", api_key=KEY, max_retries=-1)
    with pytest.raises(TypeError, match="temperatur"):
        _Provider("m", api_key=KEY, temperatur=1)  # type: ignore[call-arg]


@pytest.mark.anyio
async def test_default_client_limits_and_timeout() -> None:
    async with make_client(5.0) as client:
        assert client.timeout == httpx.Timeout(5.0)
        transport = client._transport
        assert isinstance(transport, LeanTransport)
        assert transport.max_idle == DEFAULT_LIMITS.max_keepalive_connections >= 1000
        assert transport.connections_in_use == 0


# --- requests ----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_post_json_sends_auth_and_reuses_one_client(fake: FakeServer) -> None:
    provider = make(fake)
    async with provider:
        first = await post(provider)
        client = provider.client
        second = await post(provider)
        assert provider.client is client
    assert client.is_closed
    assert (
        first["choices"][0]["message"]["content"]
        == "ok"
        == second["choices"][0]["message"]["content"]
    )
    request = fake.requests[0]
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.headers["content-type"] == "application/json"
    assert request.json == {"model": "model-x", "stream": False}


@pytest.mark.anyio
async def test_user_client_is_used_and_left_open(fake: FakeServer) -> None:
    async with httpx.AsyncClient(headers={"x-mine": "1"}) as client:
        provider = make(fake, http_client=client)
        await post(provider)
        await provider.aclose()
        assert not client.is_closed
        await post(provider)  # still usable after the provider's aclose()
    assert [r.headers.get("x-mine") for r in fake.requests] == ["1", "1"]


@pytest.mark.anyio
async def test_post_sse_yields_events(fake: FakeServer) -> None:
    fake.push(Turn(text="héllo", text_chunk_chars=2))
    async with make(fake) as provider:
        events = await post(provider, stream=True)
    assert fake.requests[0].headers["accept"] == "text/event-stream"
    texts = [json.loads(e.data)["choices"][0]["delta"].get("content") for e in events[:-2]]
    assert "".join(t for t in texts if t) == "héllo"
    assert events[-1].data == "[DONE]"


@pytest.mark.anyio
async def test_stopping_a_stream_early_releases_the_connection(fake: FakeServer) -> None:
    fake.push(Turn(text="x" * 200, text_chunk_chars=1))
    async with make(fake) as provider:
        async with aclosing(provider.post_sse("/chat/completions", {"stream": True})) as events:
            async for _ in events:
                break
        assert (await post(provider))["choices"][0]["message"]["content"] == "ok"


# --- retries -----------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("stream", [False, True])
async def test_429_then_success_honours_retry_after_ms(fake: FakeServer, stream: bool) -> None:
    fake.push(Fault(status=429, headers={"retry-after-ms": "150"}))
    async with make(fake) as provider:
        provider.retry_initial_delay = 5.0  # the backoff would be far longer than the header
        await post(provider, stream=stream)
    assert len(fake.requests) == 2
    gap = fake.requests[1].time - fake.requests[0].time
    assert 0.14 <= gap < 2.0


@pytest.mark.anyio
async def test_503_honours_retry_after_seconds(fake: FakeServer) -> None:
    fake.push(Fault(status=503, headers={"retry-after": "0.2"}))
    async with make(fake) as provider:
        provider.retry_initial_delay = 5.0
        await post(provider)
    gap = fake.requests[1].time - fake.requests[0].time
    assert 0.19 <= gap < 2.0


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after-ms": "250"}, 0.25),
        ({"retry-after": "3"}, 3.0),
        ({"retry-after-ms": "100", "retry-after": "9"}, 0.1),
        ({"retry-after-ms": "junk", "retry-after": "2"}, 2.0),
        ({"retry-after": "600"}, 60.0),
        ({"retry-after": "-5"}, 0.0),
        ({"retry-after": "soon"}, None),
        ({}, None),
    ],
)
def test_retry_after_parsing(headers: dict[str, str], expected: float | None) -> None:
    provider = _Provider("m", api_key=KEY)
    assert provider.retry_after(httpx.Response(429, headers=headers)) == expected


def test_retry_after_http_date() -> None:
    provider = _Provider("m", api_key=KEY)
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    delay = provider.retry_after(httpx.Response(429, headers={"retry-after": when}))
    assert delay is not None
    assert 25 <= delay <= 31


def test_backoff_grows_with_jitter_and_is_capped() -> None:
    provider = _Provider("m", api_key=KEY)
    provider.retry_initial_delay, provider.retry_max_delay = 1.0, 4.0
    for attempt, base in [(1, 1.0), (2, 2.0), (3, 4.0), (6, 4.0)]:
        state = RetryCallState(None, None, (), {})
        state.attempt_number = attempt
        delays = {provider._wait(state) for _ in range(50)}
        assert all(0.75 * base <= d <= base for d in delays)
        assert len(delays) > 1  # jittered


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("status", "error"),
    [
        (500, ServerError),
        (502, ServerError),
        (503, ServerError),
        (504, ServerError),
        (529, ServerError),
        (429, RateLimitError),
        (408, APITimeoutError),
        (409, BadRequestError),
    ],
)
async def test_retryable_status_exhausted(
    fake: FakeServer, status: int, error: type[ProviderError]
) -> None:
    fake.push(*[Fault(status=status, message=f"boom {status}")] * 3)
    async with make(fake) as provider:
        with pytest.raises(error) as info:
            await post(provider)
    assert len(fake.requests) == 3  # the first attempt and max_retries=2 retries
    assert info.value.status == status
    assert info.value.message == f"boom {status}"
    assert info.value.provider == "test"
    assert info.value.request_id == "req_fake_3"


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, BadRequestError),
        (401, AuthenticationError),
        (403, AuthenticationError),
        (404, BadRequestError),
        (422, BadRequestError),
    ],
)
async def test_non_retryable_status_fails_at_once(
    fake: FakeServer, status: int, error: type[ProviderError]
) -> None:
    fake.push(Fault(status=status, message="nope"))
    async with make(fake) as provider:
        with pytest.raises(error, match="nope"):
            await post(provider, stream=True)
    assert len(fake.requests) == 1


@pytest.mark.anyio
async def test_max_retries_zero_makes_one_attempt(fake: FakeServer) -> None:
    fake.push(Fault(status=500), Fault(status=500))
    async with make(fake, max_retries=0) as provider:
        with pytest.raises(ServerError):
            await post(provider)
    assert len(fake.requests) == 1


@pytest.mark.anyio
async def test_connection_refused_is_retried_then_mapped(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="agentrt.http")
    provider = _Provider("m", api_key=KEY, base_url=f"http://127.0.0.1:{free_port()}/v1")
    provider.retry_initial_delay = 0.01
    async with provider:
        with pytest.raises(APIConnectionError, match="could not get a response") as info:
            await post(provider)
    assert type(info.value) is APIConnectionError
    assert isinstance(info.value.__cause__, httpx.ConnectError)
    retries = [r.getMessage() for r in caplog.records if r.name == "agentrt.http"]
    assert len(retries) == 2
    assert "retry 1 of 2" in retries[0]


@pytest.mark.anyio
async def test_read_timeout_is_retried(fake: FakeServer) -> None:
    fake.push(Fault(delay=2.0))  # the server stays silent longer than the timeout
    async with make(fake, timeout=0.2, max_retries=1) as provider:
        result = await post(provider)
    assert result["choices"][0]["message"]["content"] == "ok"
    assert len(fake.requests) == 2


@pytest.mark.anyio
async def test_read_timeout_exhausted(fake: FakeServer) -> None:
    fake.push(Fault(delay=2.0))
    async with make(fake, timeout=0.2, max_retries=0) as provider:
        with pytest.raises(APITimeoutError, match="timed out"):
            await post(provider, stream=True)


# --- streams that break ------------------------------------------------------------------


@pytest.mark.anyio
async def test_dropped_stream_is_not_retried_and_says_what_arrived(fake: FakeServer) -> None:
    fake.push(Fault(turn=Turn(text="abcdefgh" * 20), drop_after_bytes=700))
    received: list[SSEEvent] = []

    async def consume(provider: _Provider) -> None:
        async with aclosing(provider.post_sse("/chat/completions", {"stream": True})) as it:
            async for event in it:
                received.append(event)  # noqa: PERF401 - keep what arrived before the error

    async with make(fake) as provider:
        with pytest.raises(APIConnectionError) as info:
            await consume(provider)
    assert type(info.value) is APIConnectionError
    assert len(fake.requests) == 1
    assert received
    assert f"after {len(received)} event(s) (700 bytes)" in str(info.value)
    assert isinstance(info.value.__cause__, httpx.RemoteProtocolError)


@pytest.mark.anyio
async def test_stream_closed_mid_event_without_chunked_framing(fake: FakeServer) -> None:
    fake.chunked = False  # the body ends when the connection closes: EOF looks "clean"
    fake.push(Fault(turn=Turn(text="abcdefgh" * 20), drop_after_bytes=500))
    async with make(fake) as provider:
        with pytest.raises(APIConnectionError, match="ended in the middle of an event") as info:
            await post(provider, stream=True)
    assert "(500 bytes)" in str(info.value)


@pytest.mark.anyio
async def test_close_delimited_stream_that_ends_cleanly(fake: FakeServer) -> None:
    fake.chunked = False
    fake.push(Turn(text="abc"))
    async with make(fake) as provider:
        events = await post(provider, stream=True)
    assert events[-1].data == "[DONE]"


@pytest.mark.anyio
async def test_stream_split_into_tiny_writes(fake: FakeServer) -> None:
    text = "h\u00e9\u65e5\U0001f600" * 10
    fake.push(Fault(turn=Turn(text=text, text_chunk_chars=3), split_bytes=3))
    async with make(fake) as provider:
        events = await post(provider, stream=True)
    pieces = [json.loads(e.data)["choices"][0]["delta"].get("content") for e in events[:-2]]
    assert "".join(p for p in pieces if p) == text


@pytest.mark.anyio
async def test_fake_server_split_bytes_reaches_the_client_as_separate_reads(
    fake: FakeServer,
) -> None:
    # Chunked framing: every piece is its own chunk, so the client sees it as its own read.
    fake.push(Fault(turn=Turn(text="\u00e9\u65e5"), split_bytes=1))
    async with httpx.AsyncClient() as client:
        url = fake.openai_base_url + "/chat/completions"
        async with client.stream("POST", url, json={"stream": True}) as response:
            sizes = [len(chunk) async for chunk in response.aiter_raw()]
    assert len(sizes) > 100
    assert set(sizes) == {1}


# --- error bodies ------------------------------------------------------------------------


@pytest.mark.anyio
async def test_non_json_error_body_gives_readable_truncated_message(fake: FakeServer) -> None:
    page = b"<html><body><h1>502 Bad Gateway</h1>" + b"x" * 5000 + b"</body></html>"
    fake.push(Fault(status=400, raw_body=page, headers={"request-id": "rid-9"}))
    async with make(fake) as provider:
        with pytest.raises(BadRequestError) as info:
            await post(provider)
    assert "502 Bad Gateway" in info.value.message
    assert len(info.value.message) <= 500
    assert info.value.request_id == "rid-9"
    assert info.value.body is not None


@pytest.mark.anyio
async def test_empty_error_body_uses_the_status_phrase(fake: FakeServer) -> None:
    fake.push(Fault(status=404, raw_body=b""))
    async with make(fake) as provider:
        with pytest.raises(BadRequestError, match="HTTP 404 Not Found"):
            await post(provider)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"error": {"message": "bad key", "type": "x"}}, "bad key"),
        ({"error": "plain string"}, "plain string"),
        ({"message": "top level"}, "top level"),
        ([{"error": {"message": "in a list"}}], "in a list"),
        ("  some\n text  ", "some text"),
        ({"detail": "other"}, '{"detail": "other"}'),
        ("", "HTTP 503 Service Unavailable"),
        (None, "HTTP 503 Service Unavailable"),
    ],
)
def test_error_message_shapes(payload: Any, message: str) -> None:
    assert _Provider("m", api_key=KEY).error_message(503, payload) == message


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, BadRequestError),
        (401, AuthenticationError),
        (403, AuthenticationError),
        (404, BadRequestError),
        (408, APITimeoutError),
        (409, BadRequestError),
        (429, RateLimitError),
        (500, ServerError),
        (529, ServerError),
        (599, ServerError),
    ],
)
def test_error_from_status(status: int, error: type[ProviderError]) -> None:
    exc = _Provider("m", api_key=KEY).error_from_status(status, "m", request_id="r", body="b")
    assert type(exc) is error
    assert (exc.status, exc.message, exc.request_id, exc.body, exc.provider) == (
        status,
        "m",
        "r",
        "b",
        "test",
    )


@pytest.mark.anyio
async def test_200_with_invalid_json_is_a_server_error(fake: FakeServer) -> None:
    fake.push(Fault(status=200, raw_body=b"<html>not json</html>"))
    async with make(fake) as provider:
        with pytest.raises(ServerError, match="not valid JSON"):
            await post(provider)


# --- the key never leaks -----------------------------------------------------------------


def _texts(exc: BaseException) -> Iterator[str]:
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield str(current)
        yield repr(current)
        yield from (repr(a) for a in current.args)
        yield from (repr(v) for v in vars(current).values())
        todo += [current.__cause__, current.__context__]


LEAK_SCENARIOS = {
    "401-echoing-key": (Fault(status=401, message=f"Incorrect API key provided: {KEY}"),),
    "400-raw-body-with-key": (Fault(status=400, raw_body=f"bad key {KEY}".encode()),),
    "429-exhausted": (Fault(status=429, headers={"retry-after-ms": "1"}),) * 3,
    "500-exhausted": (Fault(status=500),) * 3,
    "dropped-stream": (Fault(turn=Turn(text="a" * 300), drop_after_bytes=300),),
    "timeout": (Fault(delay=2.0),),
}


@pytest.mark.anyio
@pytest.mark.parametrize("cls", [_Provider, _HeaderKeyProvider], ids=["bearer", "header"])
@pytest.mark.parametrize("scenario", [*LEAK_SCENARIOS, "refused"])
async def test_key_never_in_errors_or_logs(
    fake: FakeServer,
    caplog: pytest.LogCaptureFixture,
    cls: type[_Provider],
    scenario: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    options: dict[str, Any] = {"timeout": 0.2, "max_retries": 2 if "exhausted" in scenario else 0}
    if scenario == "refused":
        options["base_url"] = f"http://127.0.0.1:{free_port()}/v1"
    else:
        fake.push(*LEAK_SCENARIOS[scenario])
    async with make(fake, cls, **options) as provider:
        with pytest.raises(ProviderError) as info:
            await post(provider, stream=True)
        assert KEY not in repr(provider)
    if scenario != "refused":
        sent = fake.requests[0].headers
        assert KEY in (sent.get("authorization", "") + sent.get("x-goog-api-key", ""))
    for text in _texts(info.value):
        assert KEY not in text
    assert caplog.records  # httpx / httpcore / agentrt did log
    assert KEY not in caplog.text


@pytest.mark.anyio
@pytest.mark.parametrize("scenario", ["status", "refused", "timeout"])
async def test_exception_chain_holds_no_request_with_the_key(
    fake: FakeServer, scenario: str
) -> None:
    options: dict[str, Any] = {"timeout": 0.2, "max_retries": 0}
    if scenario == "refused":
        options["base_url"] = f"http://127.0.0.1:{free_port()}/v1"
    elif scenario == "timeout":
        fake.push(Fault(delay=1.0))
    else:
        fake.push(Fault(status=401, message="bad key"))
    async with make(fake, **options) as provider:
        with pytest.raises(ProviderError) as info:
            await post(provider, stream=True)
    seen: list[BaseException] = []
    error: BaseException | None = info.value
    while error is not None and len(seen) < 10:
        seen.append(error)
        request = getattr(error, "_request", None)
        assert request is None, f"{type(error).__name__} keeps the request and its key"
        response = getattr(error, "response", None)
        assert getattr(response, "_request", None) is None
        error = error.__cause__ or error.__context__
    assert len(seen) >= 2  # the agentrt error is chained to the httpx failure


@pytest.mark.anyio
async def test_a_proxy_in_the_environment_keeps_httpx_own_transport(
    monkeypatch: pytest.MonkeyPatch, fake: FakeServer
) -> None:
    # A proxy that is not there: the request must go to it (and fail), not straight out.
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{free_port()}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    async with make_client(5.0) as client:
        assert not isinstance(client._transport, LeanTransport)
    async with make(fake, max_retries=0) as provider:
        with pytest.raises(APIConnectionError):
            await post(provider)
    assert fake.requests == []
    monkeypatch.delenv("HTTP_PROXY")
    async with make_client(5.0) as client:
        assert isinstance(client._transport, LeanTransport)


# --- base_url is checked when the model is created (issue 10 point 18) --------------------


@pytest.mark.parametrize("model_id", ["openai:gpt-test", "anthropic:claude-test", "gemini:g-test"])
@pytest.mark.parametrize(
    "base_url",
    ["localhost:8000/v1", "api.openai.com/v1", "ftp://example.com/v1", "http://", "  ", ""],
)
def test_a_base_url_without_a_scheme_is_refused_at_creation(model_id: str, base_url: str) -> None:
    with pytest.raises(agentrt.UsageError, match="base_url") as caught:
        agentrt.get_async_model(model_id, api_key="sk-test", base_url=base_url)
    message = str(caught.value)
    assert "http://" in message and "e.g." in message and repr(base_url) in message


def test_a_base_url_from_the_environment_is_checked_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "localhost:11434/v1")
    with pytest.raises(agentrt.UsageError, match="OPENAI_BASE_URL"):
        agentrt.get_async_model("openai:gpt-test", api_key="sk-test")


def test_a_good_base_url_is_kept_without_its_trailing_slash() -> None:
    model = agentrt.get_async_model(
        "openai:gpt-test", api_key="sk-test", base_url="http://127.0.0.1:9/v1/"
    )
    assert model.provider.base_url == "http://127.0.0.1:9/v1"  # type: ignore[attr-defined]
