"""Typed results over real loopback HTTP against the fake server, per provider and mode.

Each test runs on asyncio and trio, streamed and not: the exact request body of each mode
(schema placement, strict flags, the forced tool), the validated value, a retry after an
invalid answer (its usage counted), exhaustion, refusals, truncation, partial output, and
the tool-loop controls ``tool_choice``/``parallel_tool_calls``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import BaseModel

import agentrt
from agentrt.errors import OutputRefusedError, OutputValidationError, UsageError
from agentrt.output import dialect, output_spec
from tools.fakeserver.script import ScriptedToolCall, Turn
from tools.fakeserver.server import FakeServer

pytestmark = pytest.mark.anyio

PROVIDERS = ("openai", "anthropic", "gemini")
MODES = ("native", "tool", "prompted")


class City(BaseModel):
    """A city."""

    name: str
    population: int
    country: str | None = None


VALID = '{"name": "Oslo", "population": 700000, "country": null}'
OSLO = City(name="Oslo", population=700000)


@pytest.fixture(scope="module")
def _server() -> Iterator[FakeServer]:
    with FakeServer() as server:
        yield server


@pytest.fixture
def server(_server: FakeServer) -> Iterator[FakeServer]:
    _server.reset()
    yield _server
    _server.reset()


@pytest.fixture(params=[True, False], ids=["stream", "json"])
def stream(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


def _model(server: FakeServer, provider: str, stream: bool) -> agentrt.AsyncModel:
    base = {
        "openai": server.openai_base_url,
        "anthropic": server.anthropic_base_url,
        "gemini": server.gemini_base_url,
    }[provider]
    return agentrt.get_async_model(
        f"{provider}:test-model", api_key="k-test", base_url=base, stream=stream, max_retries=0
    )


def _answer(mode: str, raw: str, **extra: Any) -> Turn:
    if mode == "tool":
        return Turn(tool_calls=[ScriptedToolCall("final_result", raw)], **extra)
    return Turn(text=raw, **extra)


def _tools(body: dict[str, Any], provider: str) -> list[dict[str, Any]]:
    if provider == "gemini":
        return [d for t in body.get("tools", []) for d in t["functionDeclarations"]]
    return list(body.get("tools", []))


def _tool_name(tool: dict[str, Any], provider: str) -> str:
    return str(tool["function"]["name"] if provider == "openai" else tool["name"])


def _system_text(body: dict[str, Any], provider: str) -> str:
    if provider == "openai":
        return "\n".join(m["content"] for m in body["messages"] if m["role"] == "system")
    if provider == "anthropic":
        return str(body.get("system", ""))
    return "\n".join(p["text"] for p in body.get("systemInstruction", {}).get("parts", []))


def _check_body(body: dict[str, Any], provider: str, mode: str) -> None:
    spec = output_spec(City)
    tools = _tools(body, provider)
    if mode == "native":
        assert not tools
        if provider == "openai":
            assert body["response_format"] == {
                "type": "json_schema",
                "json_schema": {
                    "name": "City",
                    "schema": dialect(spec, "openai").schema,
                    "strict": True,
                    "description": "A city.",
                },
            }
            schema = body["response_format"]["json_schema"]["schema"]
            assert schema["required"] == ["name", "population", "country"]
            assert schema["additionalProperties"] is False
        elif provider == "anthropic":
            assert body["output_config"] == {
                "format": {"type": "json_schema", "schema": dialect(spec, "anthropic").schema}
            }
            assert "tool_choice" not in body
        else:
            config = body["generationConfig"]
            assert config["responseMimeType"] == "application/json"
            assert config["responseJsonSchema"] == dialect(spec, "gemini").schema
    elif mode == "tool":
        [final] = tools
        assert _tool_name(final, provider) == "final_result"
        if provider == "openai":
            assert final["function"]["strict"] is True
            assert final["function"]["parameters"] == dialect(spec, "openai").schema
            assert body["tool_choice"] == {"type": "function", "function": {"name": "final_result"}}
        elif provider == "anthropic":
            assert final["input_schema"] == dialect(spec, "anthropic").schema
            assert body["tool_choice"] == {"type": "tool", "name": "final_result"}
        else:
            assert final["parametersJsonSchema"] == dialect(spec, "gemini").schema
            assert body["toolConfig"] == {
                "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["final_result"]}
            }
        assert "response_format" not in body and "output_config" not in body
    else:
        assert not tools
        system = _system_text(body, provider)
        assert "Answer with one JSON value that matches this JSON Schema" in system
        assert json.dumps(spec.schema, separators=(",", ":")) in system
        for key in ("response_format", "output_config", "tool_choice", "toolConfig"):
            assert key not in body
        assert "responseJsonSchema" not in body.get("generationConfig", {})


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("provider", PROVIDERS)
async def test_each_mode_sends_its_body_and_returns_the_value(
    server: FakeServer, provider: str, mode: str, stream: bool
) -> None:
    server.push(_answer(mode, VALID))
    async with _model(server, provider, stream) as model:
        chain = model.chain("Which city?", output_type=City, output_mode=mode)
        assert await chain.output() == OSLO
        assert chain.output_mode == mode
        assert chain.responses[0].output_mode == mode
        assert await chain.responses[0].output() == OSLO
        [request] = server.requests
        _check_body(request.json, provider, mode)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("provider", PROVIDERS)
async def test_an_invalid_answer_is_sent_back_and_retried(
    server: FakeServer, provider: str, mode: str, stream: bool
) -> None:
    server.push(_answer(mode, '{"name": "Oslo"'), _answer(mode, VALID))
    async with _model(server, provider, stream) as model:
        chain = model.chain("Which city?", output_type=City, output_mode=mode)
        assert await chain.output() == OSLO
    assert len(chain.responses) == 2
    assert chain.usage == agentrt.Usage.of(20, 10)  # both turns count
    retry = json.dumps(server.requests[1].json)
    assert "did not validate" in retry and "not valid JSON" in retry
    with pytest.raises(OutputValidationError, match="1 attempt"):
        await chain.responses[0].output()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("provider", PROVIDERS)
async def test_exhaustion_raises_with_every_attempt(
    server: FakeServer, provider: str, mode: str, stream: bool
) -> None:
    answers = ["nope", '{"name": 1, "population": 2}', '{"population": "many"}']
    server.push(*(_answer(mode, a) for a in answers))
    async with _model(server, provider, stream) as model:
        chain = model.chain("Which city?", output_type=City, output_mode=mode, output_retries=2)
        with pytest.raises(OutputValidationError) as info:
            await chain.output()
    assert [a.raw for a in info.value.attempts] == answers
    assert "name: Input should be a valid string" in info.value.attempts[1].error
    assert len(server.requests) == 3
    assert chain.status == "failed" and chain.error is info.value
    assert chain.output_value is None


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_truncation_is_retried_with_the_reason(
    server: FakeServer, provider: str, stream: bool
) -> None:
    server.push(Turn(text='{"name": "Os', finish_reason="length"), Turn(text=VALID))
    async with _model(server, provider, stream) as model:
        chain = model.chain("Which city?", output_type=City, output_mode="native")
        assert await chain.output() == OSLO
    assert "cut off by the token limit" in json.dumps(server.requests[1].json)


async def test_openai_refusal_raises(server: FakeServer, stream: bool) -> None:
    server.push(Turn(extra={"openai_refusal": "I can't help with that."}))
    async with _model(server, "openai", stream) as model:
        chain = model.chain("Which city?", output_type=City)
        with pytest.raises(OutputRefusedError) as info:
            await chain.output()
    assert info.value.text == "I can't help with that."
    assert len(server.requests) == 1  # a refusal is not retried


async def test_anthropic_refusal_raises(server: FakeServer, stream: bool) -> None:
    server.push(Turn(text="I won't do that.", finish_reason="content_filter"))
    async with _model(server, "anthropic", stream) as model:
        chain = model.chain("Which city?", output_type=City, output_mode="native")
        with pytest.raises(OutputRefusedError, match="I won't do that"):
            await chain.output()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("provider", PROVIDERS)
async def test_partial_output_streams_in(server: FakeServer, provider: str, mode: str) -> None:
    server.push(_answer(mode, VALID))
    async with _model(server, provider, True) as model:
        chain = model.chain("Which city?", output_type=City, output_mode=mode)
        seen = [c.partial_output async for c in chain]
    values = [v for v in seen if v is not None]
    assert values[-1] == json.loads(VALID)
    if not (provider == "gemini" and mode == "tool"):  # Gemini sends a call's arguments whole
        assert any(v != values[-1] for v in values)  # it grew while streaming
    assert await chain.output() == OSLO


@pytest.mark.parametrize(
    ("provider", "has_tools", "expected"),
    [
        ("openai", False, "native"),
        ("openai", True, "native"),
        ("anthropic", False, "tool"),
        ("anthropic", True, "tool"),
        ("gemini", False, "native"),
        ("gemini", True, "tool"),
    ],
)
async def test_auto_mode_is_recorded(
    server: FakeServer, provider: str, has_tools: bool, expected: str
) -> None:
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    tools = [add] if has_tools else []
    if has_tools:
        server.push(Turn(tool_calls=[ScriptedToolCall("add", '{"a": 1, "b": 2}')]))
    server.push(_answer(expected, VALID))
    async with _model(server, provider, False) as model:
        chain = model.chain("Which city?", output_type=City, tools=tools)
        assert await chain.output() == OSLO
    assert chain.output_mode == expected
    if has_tools:
        assert chain.tool_results[0].content == "3"
        if expected == "tool":
            body = server.requests[0].json
            assert [_tool_name(t, provider) for t in _tools(body, provider)] == [
                "add",
                "final_result",
            ]
            required = {
                "openai": ("tool_choice", "required"),
                "anthropic": ("tool_choice", {"type": "any"}),
                "gemini": ("toolConfig", {"functionCallingConfig": {"mode": "ANY"}}),
            }[provider]
            assert body[required[0]] == required[1]


@pytest.mark.parametrize(
    ("provider", "choice", "parallel", "expected"),
    [
        ("openai", "required", False, {"tool_choice": "required", "parallel_tool_calls": False}),
        ("openai", "add", None, {"tool_choice": {"type": "function", "function": {"name": "add"}}}),
        (
            "anthropic",
            "add",
            False,
            {"tool_choice": {"type": "tool", "name": "add", "disable_parallel_tool_use": True}},
        ),
        ("anthropic", "none", None, {"tool_choice": {"type": "none"}}),
        (
            "gemini",
            "required",
            None,
            {"toolConfig": {"functionCallingConfig": {"mode": "ANY"}}},
        ),
    ],
)
async def test_tool_choice_and_parallel_calls_on_the_wire(
    server: FakeServer, provider: str, choice: str, parallel: bool | None, expected: dict[str, Any]
) -> None:
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    server.push(Turn(text="done"))
    async with _model(server, provider, False) as model:
        text = await model.chain(
            "go", tools=[add], tool_choice=choice, parallel_tool_calls=parallel
        ).text()
    assert text == "done"
    body = server.requests[0].json
    for key, value in expected.items():
        assert body[key] == value


async def test_prompt_output_is_one_turn(server: FakeServer, stream: bool) -> None:
    server.push(Turn(text=VALID), Turn(text="nope"))
    async with _model(server, "openai", stream) as model:
        response = model.prompt("Which city?", output_type=City)
        assert await response.output() == OSLO
        assert response.output_mode == "native"
        bad = model.prompt("Which city?", output_type=City)
        with pytest.raises(OutputValidationError) as info:
            await bad.output()
    assert [a.raw for a in info.value.attempts] == ["nope"]
    assert len(server.requests) == 2  # no retry on a prompt


async def test_misuse_fails_at_the_call(server: FakeServer) -> None:
    async with _model(server, "gemini", False) as model:
        with pytest.raises(UsageError, match="chain\\(\\): output_mode='json'"):
            model.chain("x", output_type=City, output_mode="json")  # type: ignore[arg-type]
        with pytest.raises(UsageError, match="Gemini has no switch"):
            model.chain("x", parallel_tool_calls=False)
        with pytest.raises(UsageError, match="needs output_type"):
            model.chain("x", output_mode="tool")
        with pytest.raises(UsageError, match="output_type=5 is not a type"):
            model.prompt("x", output_type=5)
    assert server.requests == []


def test_sync_facade(server: FakeServer) -> None:
    server.push(_answer("tool", '{"name": 3}'), _answer("tool", VALID))
    with agentrt.get_model(
        "anthropic:test-model", api_key="k", base_url=server.anthropic_base_url, max_retries=0
    ) as model:
        chain = model.chain("Which city?", output_type=City)
        assert chain.output() == OSLO
        assert chain.output_mode == "tool"
        assert len(chain.responses) == 2
        server.push(_answer("tool", VALID))
        response = model.prompt("Which city?", output_type=City)
        assert response.output() == OSLO


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_forcing_tool_choice_holds_until_a_tool_was_called(
    server: FakeServer, provider: str
) -> None:
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    server.push(Turn(tool_calls=[ScriptedToolCall("add", '{"a": 1, "b": 2}')]), Turn(text="3"))
    async with _model(server, provider, False) as model:
        assert await model.chain("go", tools=[add], tool_choice="add").text() == "3"
    first, second = (r.json for r in server.requests)
    key = "toolConfig" if provider == "gemini" else "tool_choice"
    assert key in first
    assert key not in second  # "auto" again: the model may answer


async def test_tool_mode_keeps_its_own_choice_after_a_forced_first_turn(
    server: FakeServer,
) -> None:
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    server.push(
        Turn(tool_calls=[ScriptedToolCall("add", '{"a": 1, "b": 2}')]), _answer("tool", VALID)
    )
    async with _model(server, "openai", False) as model:
        chain = model.chain(
            "go", tools=[add], output_type=City, output_mode="tool", tool_choice="add"
        )
        assert await chain.output() == OSLO
    first, second = (r.json for r in server.requests)
    assert first["tool_choice"] == {"type": "function", "function": {"name": "add"}}
    assert second["tool_choice"] == "required"
    with pytest.raises(UsageError, match="asked for tools and gave no output"):
        await chain.responses[0].output()
