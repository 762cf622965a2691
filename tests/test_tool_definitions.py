"""Declaring tools: what a model cannot call is refused at once; toolboxes; tools from schemas."""

from __future__ import annotations

import functools
import gc
import socket
import weakref
from collections.abc import Callable
from typing import Any

import anyio
import pytest

from agentrt import Message, Tool, Toolbox, UsageError, tool
from agentrt.testing import FunctionModel, ModelTurn, call
from agentrt.tools import collect_tools


def calls_then_answer(*calls: Any) -> FunctionModel:
    """A model that makes ``calls`` in its first turn, then answers with the results."""

    def script(messages: list[Message], tools: Any) -> ModelTurn | str:
        if messages[-1].role == "user":
            return ModelTurn(tool_calls=list(calls))
        results = [m for m in messages if m.role == "tool"]
        return " | ".join(f"{m.name}:{m.is_error}:{m.content}" for m in results)

    return FunctionModel(script)


# --- point 2: nothing per request outlives its chain ------------------------------------


class Session:
    """Stands in for per-request state (a DB session, a user's data)."""

    def __init__(self, user: str) -> None:
        self.user = user
        self.payload = bytearray(1_000_000)


def request_tools(session: Session, kind: str) -> list[Any]:
    """The tools a backend would define for one request."""
    if kind == "closure-sync":

        def whoami() -> str:
            """Who is asking."""
            return session.user

        return [whoami]
    if kind == "closure-async":

        async def whoami_async() -> str:
            return session.user

        whoami_async.__name__ = "whoami"
        return [whoami_async]
    if kind == "partial":
        bound = functools.partial(session_lookup, session)
        bound.__name__ = "whoami"  # type: ignore[attr-defined]
        return [bound]
    if kind == "bound-method":
        return [tool(session_lookup.__get__(session), name="whoami")]

    class PerRequest(Toolbox):
        def __init__(self, s: Session) -> None:
            self.s = s

        def whoami(self) -> str:
            return self.s.user

    return [PerRequest(session)]


def session_lookup(self: Session) -> str:
    return self.user


@pytest.mark.anyio
@pytest.mark.parametrize(
    "kind", ["closure-sync", "closure-async", "partial", "bound-method", "toolbox"]
)
async def test_a_tool_defined_per_request_is_freed_with_its_chain(kind: str) -> None:
    """Today a plain function was cached process-wide (512 of them): its request lived on."""
    model = calls_then_answer(call("whoami"))
    freed = []
    for user in ("ann", "bob", "cy"):
        session = Session(user)
        chain = model.chain("who?", tools=request_tools(session, kind))
        assert await chain.text() == f"whoami:False:{user}"
        freed.append(weakref.ref(session))
        del chain, session
    gc.collect()
    assert [ref() for ref in freed] == [None, None, None]


def module_level_add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def test_a_module_level_function_is_converted_once() -> None:
    first = collect_tools([module_level_add])["module_level_add"]
    assert collect_tools([module_level_add])["module_level_add"] is first
    assert first.parameters["required"] == ["a", "b"]


# --- point 8: *args / **kwargs / positional-only are refused at definition ---------------


def test_var_positional_is_refused_with_what_to_write() -> None:
    def total(*numbers: int) -> int:
        return sum(numbers)

    with pytest.raises(UsageError, match=r"tool 'total': parameter \*numbers .*list\[str\]"):
        tool(total)
    with pytest.raises(UsageError, match=r"\*numbers"):
        collect_tools([total])  # a plain function in tools=[...] too


def test_var_keyword_is_refused_with_what_to_write() -> None:
    def search(query: str, **filters: Any) -> str:
        return query

    with pytest.raises(UsageError, match=r"\*\*filters .*dict\[str, Any\]"):
        tool(search)


def test_positional_only_is_refused() -> None:
    def square(x: float, /) -> float:
        return x * x

    with pytest.raises(UsageError, match="positional-only"):
        tool(square)


@pytest.mark.anyio
async def test_a_functools_wraps_decorator_keeps_the_signature() -> None:
    """The common ``def wrapper(*args, **kwargs)`` decorator is not refused: its signature
    is the wrapped function's."""

    def logged(fn: Any) -> Any:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            return fn(*args, **kwargs)

        return wrapper

    @tool
    @logged
    def add(a: int, b: int) -> int:
        return a + b

    assert add.parameters["required"] == ["a", "b"]
    text = await calls_then_answer(call("add", a=2, b=3)).chain("go", tools=[add]).text()
    assert text == "add:False:5"


# --- point 14: an unsupported parameter type says which tool, parameter, type, what to do --


class Connection:
    """An arbitrary class pydantic knows nothing about."""


def test_an_unsupported_parameter_type_names_tool_parameter_and_type() -> None:
    def send(conn: Connection, text: str) -> None: ...

    with pytest.raises(UsageError) as caught:
        tool(send)
    message = str(caught.value)
    assert "tool 'send'" in message
    assert "parameter 'conn'" in message
    assert "Connection" in message
    assert "pydantic model" in message and "Any" in message

    def listen(sock: socket.socket) -> None: ...

    with pytest.raises(UsageError, match=r"parameter 'sock' has type socket\.socket"):
        collect_tools([listen])


def test_a_type_without_a_json_schema_is_refused_too() -> None:
    def run(callback: Callable[[int], int]) -> None: ...

    with pytest.raises(UsageError, match=r"tool 'run': parameter 'callback'"):
        tool(run)


# --- point 9: Toolbox keeps staticmethods and classmethods -------------------------------


class Maths(Toolbox):
    factor = 10

    def __init__(self, offset: int) -> None:
        self.offset = offset

    def shift(self, x: int) -> int:
        """Add the offset."""
        return x + self.offset

    @staticmethod
    def double(x: int) -> int:
        """Double a number."""
        return 2 * x

    @classmethod
    def scale(cls, x: int) -> int:
        """Multiply by the class factor."""
        return x * cls.factor

    @tool(name="triple")
    @staticmethod
    def triple_it(x: int) -> int:
        return 3 * x

    @staticmethod
    @tool(name="negate")
    def negated(x: int) -> int:
        return -x

    @property
    def not_a_tool(self) -> int:
        raise AssertionError("a property is never read to look for tools")


@pytest.mark.anyio
async def test_toolbox_offers_static_and_class_methods() -> None:
    box = Maths(offset=1)
    tools = collect_tools([box])
    assert set(tools) == {"shift", "double", "scale", "triple", "negate"}
    for name in tools:
        assert tools[name].parameters["required"] == ["x"], name
    model = calls_then_answer(*(call(name, x=4) for name in sorted(tools)))
    text = await model.chain("go", tools=[box]).text()
    assert text == (
        "double:False:8 | negate:False:-4 | scale:False:40 | shift:False:5 | triple:False:12"
    )


def test_a_toolbox_given_twice_is_taken_once() -> None:
    box = Maths(offset=0)
    assert set(collect_tools([box, box])) == set(collect_tools([box]))


# --- contract 6: tools from a JSON Schema, objects with tools(), collisions ---------------


SEARCH_SCHEMA = {
    "type": "object",
    "properties": {"query": {"type": "string"}, "limit": {"type": "integer"}},
    "required": ["query"],
    "additionalProperties": False,
}


def make_search(log: list[dict[str, Any]]) -> Tool:
    async def search(**arguments: Any) -> str:
        log.append(arguments)
        await anyio.lowlevel.checkpoint()
        return f"results for {arguments['query']}"

    return Tool.from_schema("search", "Search the web.", SEARCH_SCHEMA, search, timeout=5)


@pytest.mark.anyio
async def test_a_tool_from_a_schema_is_offered_validated_and_called() -> None:
    log: list[dict[str, Any]] = []
    search = make_search(log)
    assert (search.name, search.description, search.timeout) == ("search", "Search the web.", 5)
    assert search.parameters == SEARCH_SCHEMA and search.parameters is not SEARCH_SCHEMA
    seen: list[Any] = []

    def script(messages: list[Message], tools: Any) -> ModelTurn | str:
        seen.extend(tools)
        if messages[-1].role == "user":
            return ModelTurn(
                tool_calls=[
                    call("search", query="anyio", limit=3),
                    call("search", limit=3),  # missing query
                    call("search", query="x", limit="three"),  # wrong JSON type
                    call("search", query="x", page=2),  # not in the schema
                ]
            )
        return " | ".join(f"{m.is_error}:{m.content[:70]}" for m in messages if m.role == "tool")

    text = await FunctionModel(script).chain("go", tools=[search]).text()
    assert seen[0].parameters == SEARCH_SCHEMA
    first, missing, wrong, extra = text.split(" | ")
    assert first == "False:results for anyio"
    assert missing.startswith("True:Error: invalid arguments for tool 'search': missing required")
    assert "'limit' must be of JSON type integer" in text or wrong.startswith("True:Error")
    assert extra.startswith("True:Error: invalid arguments for tool 'search': unexpected")
    assert log == [{"query": "anyio", "limit": 3}]  # only the valid call reached the tool


def test_from_schema_refuses_what_providers_cannot_use() -> None:
    async def fn(**kw: Any) -> None: ...

    with pytest.raises(UsageError, match="type 'object'"):
        Tool.from_schema("f", "d", {"type": "array"}, fn)
    with pytest.raises(UsageError, match="JSON Schema dict"):
        Tool.from_schema("f", "d", "{}", fn)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="not usable"):
        Tool.from_schema("has space", "d", {}, fn)
    with pytest.raises(UsageError, match="callable"):
        Tool.from_schema("f", "d", {}, "fn")  # type: ignore[arg-type]
    assert Tool.from_schema("f", "d", {}, fn).parameters == {"type": "object"}


class Remote:
    """Any object with a tools() method (an MCP connection, say)."""

    def __init__(self, *names: str) -> None:
        self.names = names

    def tools(self) -> list[Tool]:
        async def fn(**kw: Any) -> str:
            return "remote"

        return [Tool.from_schema(n, "Remote tool.", {"type": "object"}, fn) for n in self.names]

    def __repr__(self) -> str:
        return f"<Remote {','.join(self.names)}>"


@pytest.mark.anyio
async def test_objects_with_a_tools_method_are_accepted() -> None:
    text = await calls_then_answer(call("fetch")).chain("go", tools=[Remote("fetch")]).text()
    assert text == "fetch:False:remote"


def test_name_collisions_across_sources_name_both_sources() -> None:
    def fetch() -> str:
        return "local"

    with pytest.raises(UsageError) as caught:
        collect_tools([fetch, Remote("fetch")])
    message = str(caught.value)
    assert "two tools are named 'fetch'" in message
    assert (
        "the function test_tool_definitions.test_name_collisions" in message
        and "<Remote fetch>" in message
    )
    with pytest.raises(UsageError, match=r"named 'a' \(one from <Remote a>, one from <Remote a,b>"):
        collect_tools([Remote("a"), Remote("a", "b")])
    with pytest.raises(UsageError, match="pass an instance"):
        collect_tools([Maths])
    with pytest.raises(UsageError, match=r"write tools=\[\.\.\.\]"):
        collect_tools(fetch)  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_a_collision_is_refused_when_the_chain_is_made() -> None:
    def fetch() -> str:
        return "local"

    model = calls_then_answer(call("fetch"))
    with pytest.raises(UsageError, match="two tools are named 'fetch'"):
        model.chain("go", tools=[fetch, Remote("fetch")])
