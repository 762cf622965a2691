from __future__ import annotations

import enum
from typing import Annotated, Literal

import pytest
from pydantic import BaseModel, Field, ValidationError

from agentrt import Tool, Toolbox, UsageError, async_tool_is, tool
from agentrt.tools import collect_tools, parse_docstring


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Address(BaseModel):
    street: str
    number: int = 1


def test_schema_from_hints_defaults_optional_literal_enum_nested() -> None:
    @tool
    def book(
        name: str,
        nights: int = 1,
        note: str | None = None,
        room: Literal["single", "double"] = "single",
        color: Color = Color.RED,
        tags: list[str] | None = None,
        extras: dict[str, int] | None = None,
        address: Address | None = None,
        budget: Annotated[float, Field(description="In euros", ge=0)] = 100.0,
    ) -> str:
        """Book a room.

        Args:
            name: Guest name.
            nights: How many nights
                the guest stays.
        """
        return name

    schema = book.parameters
    props = schema["properties"]
    assert schema["required"] == ["name"]
    assert props["name"] == {"type": "string", "description": "Guest name."}
    assert props["nights"]["default"] == 1
    assert props["nights"]["description"] == "How many nights the guest stays."
    assert props["room"]["enum"] == ["single", "double"]
    assert props["budget"]["description"] == "In euros"
    assert props["budget"]["minimum"] == 0
    assert props["color"] == {"$ref": "#/$defs/Color", "default": "red"}
    assert schema["$defs"]["Color"]["enum"] == ["red", "blue"]
    assert schema["$defs"]["Address"]["required"] == ["street"]
    assert book.description == "Book a room."
    assert "title" not in schema


def test_tool_stays_callable_and_options() -> None:
    @tool(name="plus", description="Adds.", timeout=2.5)
    def add(a: int, b: int) -> int:
        return a + b

    assert isinstance(add, Tool)
    assert add(2, 3) == 5
    assert (add.name, add.description, add.timeout) == ("plus", "Adds.", 2.5)
    assert add.__name__ == "add"


async def _async_add(a: int, b: int) -> int:
    return a + b


def test_async_tool_detected() -> None:
    t = tool(_async_add)
    assert t.is_async
    assert t.implementation(prefer_sync=True) == (_async_add, True)


def test_validation_converts_and_rejects() -> None:
    @tool
    def f(address: Address, color: Color, n: int) -> str:
        return ""

    kwargs = f.validate({"address": {"street": "Main"}, "color": "blue", "n": "3"})
    assert kwargs["address"] == Address(street="Main", number=1)
    assert kwargs["color"] is Color.BLUE
    assert kwargs["n"] == 3
    with pytest.raises(ValidationError):
        f.validate({"address": {}, "color": "green", "n": "x"})
    with pytest.raises(ValidationError):
        f.validate({"address": {"street": "a"}, "color": "red", "n": 1, "extra": 1})


def test_async_tool_is_dual_and_signature_check() -> None:
    async def fetch_async(url: str, timeout: float = 1.0) -> str:
        return "async"

    @async_tool_is(fetch_async)
    def fetch(url: str, timeout: float = 1.0) -> str:
        """Fetch."""
        return "sync"

    assert fetch.implementation(prefer_sync=False) == (fetch_async, True)
    assert fetch.implementation(prefer_sync=True)[0]("u") == "sync"
    assert fetch("u") == "sync"

    async def other(url: str) -> str:
        return ""

    with pytest.raises(UsageError, match="signatures"):

        @async_tool_is(other)
        def fetch2(url: str, timeout: float = 1.0) -> str:
            return ""

    async def typed(url: int) -> str:
        return ""

    with pytest.raises(UsageError, match="signatures"):

        @async_tool_is(typed)
        def fetch3(url: str) -> str:
            return ""

    def not_async(url: str) -> str:
        return ""

    with pytest.raises(UsageError, match="async function"):
        async_tool_is(not_async)


def test_plain_functions_and_toolbox() -> None:
    def mul(a: int, b: int) -> int:
        """Multiply."""
        return a * b

    class Counter(Toolbox):
        def __init__(self) -> None:
            self.count = 0

        def bump(self, by: int = 1) -> int:
            """Bump the counter."""
            self.count += by
            return self.count

        @tool(name="reset_counter")
        def reset(self) -> int:
            self.count = 0
            return 0

        def _private(self) -> None:
            pass

    box = Counter()
    tools = collect_tools([mul, box])
    assert set(tools) == {"mul", "bump", "reset_counter"}
    assert "self" not in tools["bump"].parameters["properties"]
    assert tools["bump"].fn(by=2) == 2
    assert box.count == 2
    assert tools["reset_counter"].fn() == 0
    assert tools["mul"].description == "Multiply."


def test_bad_tools_are_clear() -> None:
    with pytest.raises(UsageError, match="Toolbox"):
        collect_tools([42])

    def a() -> None: ...

    with pytest.raises(UsageError, match="two tools"):
        collect_tools([tool(a, name="x"), tool(lambda: 1, name="x")])
    with pytest.raises(UsageError, match="not usable"):
        tool(a, name="has space")


def test_parse_docstring_sections() -> None:
    desc, params = parse_docstring(
        """Do things.

        More text.

        Args:
            x (int): The x.
            y: The y,
                continued.

        Returns:
            Something.
        """
    )
    assert desc == "Do things.\n\nMore text."
    assert params == {"x": "The x.", "y": "The y, continued."}
