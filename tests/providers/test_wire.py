"""Request bodies built from cached JSON are the bodies encoded afresh, byte for byte."""

from __future__ import annotations

import json
from typing import Any

import pytest

from agentrt.messages import Message, ToolCall, ToolSpec, TurnRequest
from agentrt.providers._wire import Encoded, JSONCache, encode_body
from agentrt.providers.openai import OpenAIProvider


def schema() -> dict[str, Any]:
    return {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}


def provider() -> OpenAIProvider:
    return OpenAIProvider("gpt-test", api_key="sk-test", base_url="http://127.0.0.1:9/v1")


def fresh(p: OpenAIProvider, request: TurnRequest, stream: bool) -> bytes:
    body = p.request_body(request, stream=stream)
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def assert_same(p: OpenAIProvider, request: TurnRequest) -> None:
    for stream in (True, False):
        assert encode_body(p._wire_body(request, stream=stream)) == fresh(p, request, stream)


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
    chain_cache: dict[Any, Any] = {}  # what a chain passes on every turn
    for turn in range(4):
        request = TurnRequest(list(messages), "Be brief.", [spec], {"temperature": 0.1})
        request.wire_cache = chain_cache
        assert_same(p, request)
        messages.extend(history(turn + 1)[-2:])
    assert chain_cache.get(("user", messages[0].content, None)) is not None  # it was cached


def test_edited_messages_and_schemas_are_encoded_again() -> None:
    p = provider()
    spec = ToolSpec("add", "Add.", schema())
    messages = history(2)
    request = TurnRequest(messages, None, [spec])
    assert_same(p, request)
    messages[0].content = "changed"
    messages[1].tool_calls[0].raw_arguments = '{"a":99}'
    assert_same(p, request)
    messages[1].tool_calls.append(ToolCall(id="x", name="add", arguments={}, raw_arguments="{}"))
    messages[2].tool_call_id = "other"
    spec.parameters["properties"]["b"] = {"type": "string"}
    assert_same(p, request)
    messages[1].tool_calls[0].raw_arguments = ""  # arguments are then encoded from the dict
    messages[1].tool_calls[0].arguments = {"a": 1}
    assert_same(p, request)
    messages[1].tool_calls[0].arguments["a"] = 2
    assert_same(p, request)


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


def test_a_full_cache_starts_afresh() -> None:
    p = provider()
    p._json_cache = JSONCache(limit=100)
    messages = history(5)
    for _ in range(3):
        assert_same(p, TurnRequest(messages, None, [ToolSpec("add", "Add.", schema())]))
    assert p._json_cache._size <= 100 or len(p._json_cache._entries) == 1


def test_a_subclass_request_body_is_used() -> None:
    class Custom(OpenAIProvider):
        def request_body(self, request: TurnRequest, *, stream: bool) -> dict[str, Any]:
            return {**super().request_body(request, stream=stream), "user": "me"}

    body = Custom("m", api_key="k", base_url="http://127.0.0.1:9/v1")._wire_body(
        TurnRequest(history(1)), stream=True
    )
    assert body["user"] == "me" and isinstance(body["messages"], list)


def test_encode_body_splices_encoded_values() -> None:
    body = {"a": 1, "b": Encoded('[1,"x"]'), "c": {"d": None}, "e": Encoded("{}"), "f": "\u00e9"}
    expected = {"a": 1, "b": [1, "x"], "c": {"d": None}, "e": {}, "f": "\u00e9"}
    assert json.loads(encode_body(body)) == expected
    assert (
        encode_body(expected)
        == json.dumps(expected, ensure_ascii=False, separators=(",", ":")).encode()
    )
