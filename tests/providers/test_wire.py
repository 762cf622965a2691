"""Request bodies built from cached JSON are the bodies encoded afresh, byte for byte."""

from __future__ import annotations

import gc
import json
from typing import Any

import pytest

from agentrt.messages import Message, ToolCall, ToolSpec, TurnRequest
from agentrt.providers._wire import Encoded, encode_body
from agentrt.providers.anthropic import AnthropicCodec, build_request_body
from agentrt.providers.gemini import GeminiCodec
from agentrt.providers.gemini import build_request_body as gemini_body
from agentrt.providers.http import AnthropicProvider, GeminiProvider, OpenAIProvider
from agentrt.providers.openai import OpenAICodec
from tools.fakeserver.script import Turn
from tools.fakeserver.server import FakeServer

PROVIDERS = {"openai": OpenAIProvider, "anthropic": AnthropicProvider, "gemini": GeminiProvider}


def schema() -> dict[str, Any]:
    return {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}


def provider() -> OpenAICodec:
    return OpenAICodec()


def fresh(p: OpenAICodec, request: TurnRequest, stream: bool) -> bytes:
    body = p.plain_body("gpt-test", request, stream=stream)
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def assert_same(p: OpenAICodec, request: TurnRequest, cache: dict[Any, Any] | None = None) -> None:
    cache = {} if cache is None else cache
    for stream in (True, False):
        body = p.request_body("gpt-test", request, stream=stream, cache=cache)
        assert encode_body(body) == fresh(p, request, stream)


def history(turns: int) -> list[Message]:
    messages = [Message(role="user", content='h\u00e9llo \U0001f600 "quoted" \\ back')]
    for i in range(turns):
        call = ToolCall(id=f"c{i}", name="add", arguments={"a": i}, raw_arguments=f'{{"a":{i}}}')
        messages.append(Message(role="assistant", content="", tool_calls=[call]))
        messages.append(Message(role="tool", content=str(i), tool_call_id=f"c{i}", name="add"))
    return messages


def test_a_growing_history_encodes_as_afresh() -> None:
    p = provider()
    spec = ToolSpec("add", "Add.", schema())
    messages = history(0)
    chain_cache: dict[Any, Any] = {}  # what the driver keeps under the chain's token
    for turn in range(4):
        request = TurnRequest(list(messages), "Be brief.", [spec], {"temperature": 0.1})
        assert_same(p, request, chain_cache)
        messages.extend(history(turn + 1)[-2:])
    assert chain_cache.get(("user", messages[0].content, None)) is not None  # it was cached


def test_edited_messages_and_schemas_are_encoded_again() -> None:
    p = provider()
    spec = ToolSpec("add", "Add.", schema())
    messages = history(2)
    request = TurnRequest(messages, None, [spec])
    cache: dict[Any, Any] = {}
    assert_same(p, request, cache)
    messages[0].content = "changed"
    messages[1].tool_calls[0].raw_arguments = '{"a":99}'
    assert_same(p, request, cache)
    messages[1].tool_calls.append(ToolCall(id="x", name="add", arguments={}, raw_arguments="{}"))
    messages[2].tool_call_id = "other"
    spec.parameters["properties"]["b"] = {"type": "string"}
    assert_same(p, request, cache)
    messages[1].tool_calls[0].raw_arguments = ""  # arguments are then encoded from the dict
    messages[1].tool_calls[0].arguments = {"a": 1}
    assert_same(p, request, cache)
    messages[1].tool_calls[0].arguments["a"] = 2
    assert_same(p, request, cache)


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"messages": [{"role": "user", "content": "replaced"}]},
        {"tools": [], "model": "other", "stream": False},
        {"stream_options": {"include_usage": False}, "n": 1},
    ],
)
def test_options_that_replace_parts(options: dict[str, Any]) -> None:
    p = provider()
    assert_same(p, TurnRequest(history(1), "sys", [ToolSpec("add", "Add.", schema())], options))
    assert_same(p, TurnRequest(history(1), None, [], options))


def test_the_cache_lives_under_the_chains_token_and_goes_with_it() -> None:
    model = OpenAIProvider("gpt-test", api_key="sk-test", base_url="http://127.0.0.1:9/v1")

    class Token:
        pass

    token = Token()
    request = TurnRequest(history(2), None, [ToolSpec("add", "Add.", schema())], {}, token)
    cache = model._cache(request)
    model.codec.request_body("gpt-test", request, stream=True, cache=cache)
    assert cache and model._cache(request) is cache  # the same on the next turn
    del token, request
    gc.collect()
    assert len(model._caches) == 0  # nothing of a finished chain is kept


@pytest.mark.parametrize("codec", [AnthropicCodec(), GeminiCodec()], ids=["anthropic", "gemini"])
def test_anthropic_and_gemini_bodies_from_the_cache_are_the_fresh_ones(codec: Any) -> None:
    spec = ToolSpec("add", "Add.", schema())
    cache: dict[Any, Any] = {}
    for turns in range(3):
        request = TurnRequest(history(turns), "sys", [spec], {"temperature": 0.2})
        if isinstance(codec, AnthropicCodec):
            plain = build_request_body("m", request, stream=True)
        else:
            plain = gemini_body(request)
        cached = codec.request_body("m", request, stream=True, cache=cache)
        assert json.loads(encode_body(cached)) == plain
    spec.parameters["properties"]["b"] = {"type": "string"}  # edited in place: encoded again
    request = TurnRequest(history(1), "sys", [spec])
    assert "b" in json.dumps(
        json.loads(encode_body(codec.request_body("m", request, stream=True, cache=cache)))
    )


@pytest.mark.anyio
@pytest.mark.parametrize("target", ["openai", "anthropic", "gemini"])
@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
async def test_extra_body_is_merged_last_and_extra_headers_are_sent(
    fake_server: FakeServer, target: str, stream: bool
) -> None:
    fake_server.push(Turn(text="ok"))
    base_url = getattr(fake_server, f"{target}_base_url")
    provider = PROVIDERS[target]("m-test", api_key="sk-test", base_url=base_url)
    options = {
        "temperature": 0.5,
        "extra_body": {"temperature": 0.0, "vendor_flag": {"x": 1}},
        "extra_headers": {"X-Trace": "abc", "User-Agent": "mine/1"},
    }
    async with provider:
        request = TurnRequest([Message(role="user", content="hi")], options=options)
        assert [e async for e in provider.turn(request, stream=stream)]
    (sent,) = fake_server.requests
    assert sent.json["vendor_flag"] == {"x": 1}
    assert "extra_body" not in sent.json and "extra_headers" not in sent.json
    if target != "gemini":  # Gemini's temperature sits in generationConfig
        assert sent.json["temperature"] == 0.0  # extra_body is merged last
    assert sent.headers["x-trace"] == "abc" and sent.headers["user-agent"] == "mine/1"


def test_encode_body_splices_encoded_values() -> None:
    body = {"a": 1, "b": Encoded('[1,"x"]'), "c": {"d": None}, "e": Encoded("{}"), "f": "\u00e9"}
    expected = {"a": 1, "b": [1, "x"], "c": {"d": None}, "e": {}, "f": "\u00e9"}
    assert json.loads(encode_body(body)) == expected
    assert (
        encode_body(expected)
        == json.dumps(expected, ensure_ascii=False, separators=(",", ":")).encode()
    )


def _sent_schema(name: str, body: dict[str, Any]) -> Any:
    """The first tool's parameter schema in a request body of provider ``name``."""
    if name == "openai":
        return body["tools"][0]["function"]["parameters"]
    if name == "anthropic":
        return body["tools"][0]["input_schema"]
    return body["tools"][0]["functionDeclarations"][0]["parametersJsonSchema"]


def _sent_names(name: str, body: dict[str, Any]) -> list[str]:
    if name == "openai":
        return [t["function"]["name"] for t in body["tools"]]
    if name == "anthropic":
        return [t["name"] for t in body["tools"]]
    return [d["name"] for d in body["tools"][0]["functionDeclarations"]]


@pytest.mark.anyio
@pytest.mark.parametrize("name", ["openai", "anthropic", "gemini"])
async def test_the_chains_of_a_model_share_its_tool_encodings_and_see_edits(
    fake_server: FakeServer, name: str
) -> None:
    import agentrt

    @agentrt.tool
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    @agentrt.tool
    def mul(a: int, b: int) -> int:
        """Multiply two integers."""
        return a * b

    model_id = {"openai": "openai:gpt-test", "anthropic": "anthropic:c", "gemini": "gemini:g"}
    url = getattr(fake_server, f"{name}_base_url")
    model = agentrt.get_async_model(model_id[name], api_key="sk-test", base_url=url)
    store = model.provider._tool_encodings  # type: ignore[attr-defined]
    async with model:
        for _ in range(4):
            fake_server.push(Turn(text="ok"))
            assert await model.chain("hi", tools=[add]).text() == "ok"
        assert len(store) == 1  # encoded once, for all four chains
        assert (
            "description"
            not in _sent_schema(name, fake_server.requests[-1].json)["properties"]["a"]
        )
        # A schema edited in place between chains is sent as it is now.
        add.spec.parameters["properties"]["a"]["description"] = "the first number"
        fake_server.push(Turn(text="ok"))
        await model.chain("hi", tools=[add]).text()
        sent = _sent_schema(name, fake_server.requests[-1].json)
        assert sent["properties"]["a"]["description"] == "the first number"
        # Another chain's tools are its own.
        fake_server.push(Turn(text="ok"))
        await model.chain("hi", tools=[mul]).text()
        assert _sent_names(name, fake_server.requests[-1].json) == ["mul"]
        # Tools made per request: the store stays bounded.
        for i in range(store.size + 10):

            def each(x: int) -> int:
                return x

            each.__doc__ = f"Tool number {i}."
            fake_server.push(Turn(text="ok"))
            await model.chain("hi", tools=[agentrt.tool(each)]).text()
        assert len(store) == store.size
