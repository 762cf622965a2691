"""The offline model's documented rules."""

from __future__ import annotations

import json
from enum import Enum
from typing import Literal

import pytest
from pydantic import BaseModel

from agentrt import get_async_model, tool

pytestmark = pytest.mark.anyio


class Unit(Enum):
    C = "celsius"
    F = "fahrenheit"


class Place(BaseModel):
    city: str
    zip: int


@tool
def weather(place: Place, unit: Unit, days: int = 3, mode: Literal["a", "b"] = "b") -> str:
    """Weather."""
    return f"{place.city}/{place.zip}/{unit.value}/{days}/{mode}"


@tool
async def echo(text: str, flag: bool) -> str:
    """Echo."""
    return f"{text}:{flag}"


async def test_calls_every_tool_once_with_schema_arguments_then_summarises() -> None:
    chain = get_async_model("offline").chain("go", tools=[weather, echo])
    text = await chain.text()
    first = await chain.responses[0].tool_calls()
    assert [c.name for c in first] == ["weather", "echo"]
    assert first[0].arguments == {"place": {"city": "example", "zip": 1}, "unit": "celsius"}
    assert first[1].arguments == {"text": "example", "flag": True}
    assert len(chain.responses) == 2
    assert "example/1/celsius/3/b" in text
    assert "echo(text='example', flag=True) returned example:True" in text


async def test_arguments_taken_from_a_json_object_in_the_prompt() -> None:
    prompt = 'Please use {"text": "hello", "flag": false, "other": 1} thanks'
    calls = await get_async_model("offline").prompt(prompt, tools=[echo]).tool_calls()
    assert json.loads(calls[0].raw_arguments) == {"text": "hello", "flag": False}


async def test_without_tools_it_answers_from_the_prompt_in_several_chunks() -> None:
    response = get_async_model("offline:default").prompt("what is agentrt")
    chunks = [c.content async for c in response]
    assert "".join(chunks) == 'The offline model (no network) received: "what is agentrt"'
    assert len(chunks) > 3


async def test_usage_counts_words() -> None:
    response = get_async_model("offline").prompt("one two three", system="be nice")
    text = await response.text()
    assert response.usage is not None
    assert response.usage.input_tokens == 5
    assert response.usage.output_tokens == len(text.split())
    assert response.usage.total_tokens == 5 + len(text.split())
