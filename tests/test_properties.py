"""Generated bad input: whatever bytes, fragments, signatures or JSON arrive, nothing breaks.

Four properties, each checked against an independent expectation built by the strategy:

* the SSE parser yields the same events however a valid stream is cut into pieces (inside
  CRLF pairs and UTF-8 characters too), replaces invalid UTF-8 with U+FFFD, and flags an
  unterminated final event as ``incomplete``;
* tool calls assemble to their original arguments however the arguments are fragmented and
  interleaved, through each provider's real streaming path;
* ``@tool`` builds a valid JSON Schema for generated signatures, and arguments that fit the
  signature validate and reach the function;
* arbitrary JSON, non-JSON and unknown tool names from the model never crash a chain: every
  call gets one result, in order, and the history still translates into every provider's
  request format.

Hypothesis runs with ``database=None`` (CI starts from a fresh clone) and prints a
``@reproduce_failure`` blob when a property fails.
"""

from __future__ import annotations

import inspect
import itertools
import json
import keyword
import math
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Optional

import anyio
import httpx
import pydantic
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

import agentrt
from agentrt._response import ToolCallAssembler
from agentrt._sse import SSEEvent, SSEParser
from agentrt.messages import Message, ToolCall, ToolCallDelta, ToolResult, TurnRequest
from agentrt.providers import anthropic as anthropic_provider
from agentrt.providers import gemini as gemini_provider
from agentrt.testing import FunctionModel, ModelTurn, ScriptedCall

try:
    import jsonschema
except ImportError:  # pragma: no cover - jsonschema is a test dependency
    jsonschema = None


def properties(max_examples: int = 100) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Hypothesis settings for this module: no example database, no deadline."""
    return settings(
        max_examples=max_examples,
        deadline=None,
        database=None,
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


def split_at(data: Any, cuts: list[int]) -> list[Any]:
    """Cut ``data`` (bytes or str) at the given offsets; empty pieces are kept."""
    points = [0, *sorted(min(max(c, 0), len(data)) for c in cuts), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(points)]


@st.composite
def pieces_of(draw: st.DrawFn, data: Any, max_cuts: int = 12) -> list[Any]:
    cuts = draw(st.lists(st.integers(0, len(data)), max_size=max_cuts))
    return split_at(data, cuts)


# --- JSON values ------------------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
json_objects = st.dictionaries(st.text(max_size=10), json_values, max_size=5)


@st.composite
def json_texts(draw: st.DrawFn, value: Any) -> str:
    """Serialise ``value`` the way different servers do (escaping, spacing, indentation)."""
    return json.dumps(
        value,
        ensure_ascii=draw(st.booleans()),
        separators=draw(st.sampled_from([(",", ":"), (", ", ": ")])),
        indent=draw(st.sampled_from([None, None, 1])),
    )


# --- 1. the SSE parser ------------------------------------------------------------------------

#: Characters that trip naive parsers: NUL, Unicode line breaks that are not SSE line ends,
#: a BOM mid-stream, multi-byte UTF-8 of every length, and the colon.
TRICKY = "\x00\x85\u2028\u2029\x0b\x0c\x1c\ufeff:é日😀𝄞 "
field_text = st.text(
    st.characters(codec="utf-8", exclude_characters="\r\n") | st.sampled_from(TRICKY),
    max_size=16,
)
line_ends = st.sampled_from(["\n", "\r\n", "\r"])


@dataclass
class SSEStream:
    """A generated stream and what a correct parser must make of it."""

    lines: list[str] = field(default_factory=list)
    events: list[SSEEvent] = field(default_factory=list)
    retry: int | None = None
    bom: bool = False
    last_id: str | None = None


def _data_line(value: str, style: int) -> str:
    if style == 0 and not value:
        return "data"  # a field name without a colon means an empty value
    if style == 1 and not value.startswith(" "):
        return "data:" + value  # no space: nothing to strip
    return "data: " + value


@st.composite
def sse_items(draw: st.DrawFn, stream: SSEStream) -> None:
    """Append one event, comment, retry or unknown field to ``stream``."""
    kind = draw(st.sampled_from(["event", "event", "event", "comment", "retry", "unknown"]))
    lines = stream.lines
    if kind == "comment":
        lines.append(":" + draw(field_text))
    elif kind == "retry":
        value = draw(st.text("0123456789a²", min_size=0, max_size=5))
        lines.append("retry: " + value)
        if value and value.isascii() and value.isdigit():
            stream.retry = int(value)
    elif kind == "unknown":
        name = draw(st.sampled_from(["Data", "data ", " data", "EVENT", "ids", "x", "retry2"]))
        lines.append(f"{name}: {draw(field_text)}")
    else:
        name = draw(st.none() | field_text)
        event_id = draw(st.none() | field_text)
        data = draw(st.lists(field_text, max_size=3))
        fields = [_data_line(value, draw(st.integers(0, 2))) for value in data]
        if name is not None:
            fields.insert(draw(st.integers(0, len(fields))), "event: " + name)
        if event_id is not None:
            fields.insert(draw(st.integers(0, len(fields))), "id: " + event_id)
            if "\0" not in event_id:
                stream.last_id = event_id
        lines.extend(fields)
        lines.append("")  # the blank line that dispatches
        if data:
            stream.events.append(SSEEvent(name or None, "\n".join(data), stream.last_id))


@st.composite
def sse_streams(draw: st.DrawFn) -> SSEStream:
    stream = SSEStream(bom=draw(st.booleans()))
    for _ in range(draw(st.integers(0, 6))):
        draw(sse_items(stream))
        if draw(st.integers(0, 4)) == 0:
            stream.lines.append("")  # stray blank lines dispatch nothing
    return stream


@st.composite
def encode(draw: st.DrawFn, lines: list[str], bom: bool = False) -> bytes:
    """Join ``lines`` with generated line ends (a CR never pairs with the next line's LF)."""
    out: list[str] = ["\ufeff"] if bom else []
    previous = ""
    for line in lines:
        end = draw(line_ends)
        if previous == "\r" and not line and end == "\n":
            end = draw(st.sampled_from(["\r", "\r\n"]))
        out += [line, end]
        previous = end
    return "".join(out).encode()


def feed_all(pieces: list[bytes]) -> tuple[list[SSEEvent], SSEParser]:
    parser = SSEParser()
    events = [event for piece in pieces for event in parser.feed(piece)]
    events += parser.close()
    return events, parser


@properties(200)
@given(st.data())
def test_sse_any_chunking_of_a_valid_stream(data: st.DataObject) -> None:
    stream = data.draw(sse_streams())
    raw = data.draw(encode(stream.lines, stream.bom))
    if data.draw(st.booleans()):
        raw += b": trailing comment"  # a comment needs no line end and finishes nothing
    pieces = data.draw(pieces_of(raw, max_cuts=20))

    events, parser = feed_all(pieces)

    assert events == stream.events
    assert not parser.incomplete
    assert parser.retry == stream.retry
    assert parser.bytes_received == len(raw)
    assert parser.events_dispatched == len(stream.events)
    assert feed_all([raw])[0] == events
    assert feed_all([raw[i : i + 1] for i in range(len(raw))])[0] == events


#: Byte sequences that are not UTF-8: a lone continuation byte, bytes never used, a
#: truncated 2/3/4-byte sequence, an overlong form, an encoded surrogate, beyond U+10FFFF.
INVALID_UTF8 = [
    b"\x80",
    b"\xff",
    b"\xfe\xfe",
    b"\xc3",
    b"\xe6\x97",
    b"\xf0\x9f\x98",
    b"\xc0\xaf",
    b"\xed\xa0\x80",
    b"\xf4\x90\x80\x80",
]
bytes_values = st.tuples(
    st.lists(st.sampled_from(INVALID_UTF8) | field_text.map(str.encode), max_size=4),
    st.sampled_from(INVALID_UTF8),
    st.integers(0, 4),
).map(lambda t: b"".join([*t[0][: t[2]], t[1], *t[0][t[2] :]]))


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode()
    except UnicodeDecodeError:
        return False
    return True


@properties(200)
@given(st.data())
def test_sse_invalid_utf8_becomes_replacement_characters(data: st.DataObject) -> None:
    # Documented: "invalid UTF-8 becomes U+FFFD", the same wherever the bytes are split.
    values = data.draw(st.lists(bytes_values, min_size=1, max_size=3))
    # "\xc3" then "\x80" is "À": joined fragments can happen to be valid.
    assume(any(not _is_utf8(value) for value in values))
    end = data.draw(st.sampled_from([b"\n", b"\r\n", b"\r"]))
    raw = b"".join(b"data: " + value + end for value in values) + end
    pieces = data.draw(pieces_of(raw, max_cuts=20))

    events, parser = feed_all(pieces)

    expected = "\n".join(value.decode("utf-8", "replace") for value in values)
    assert events == [SSEEvent(None, expected)]
    assert "\ufffd" in expected
    assert not parser.incomplete


unterminated_tails = st.one_of(
    # data lines that never got their dispatching blank line
    st.lists(field_text, min_size=1, max_size=3).map(
        lambda values: "".join(_data_line(v, 2) + "\n" for v in values)
    ),
    field_text.map(lambda name: f"event: {name}\n"),
    # a field line cut before its line end
    st.sampled_from(["data", "event", "id", "retry", "x"]).flatmap(
        lambda name: field_text.map(lambda value: f"{name}: {value}")
    ),
)


@properties(200)
@given(st.data())
def test_sse_unterminated_final_event_is_incomplete(data: st.DataObject) -> None:
    stream = data.draw(sse_streams())
    raw = data.draw(encode(stream.lines)) + data.draw(unterminated_tails).encode()
    pieces = data.draw(pieces_of(raw))

    parser = SSEParser()
    events = [event for piece in pieces for event in parser.feed(piece)]

    assert parser.close() == []  # the spec discards an unterminated event
    assert events == stream.events
    assert parser.incomplete


# --- 2. tool-call assembly ----------------------------------------------------------------------

tool_names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,20}", fullmatch=True)


@dataclass
class Call:
    """A tool call the model makes, and its arguments cut into the pieces that stream."""

    id: str
    name: str
    arguments: dict[str, Any]
    text: str
    fragments: list[str]


@st.composite
def tool_calls(draw: st.DrawFn, min_calls: int = 1, max_calls: int = 4) -> list[Call]:
    calls = []
    for i in range(draw(st.integers(min_calls, max_calls))):
        arguments = draw(json_objects)
        text = draw(json_texts(arguments))
        fragments = draw(pieces_of(text))
        calls.append(
            Call(
                f"call_{i}_{draw(st.uuids()).hex[:8]}", draw(tool_names), arguments, text, fragments
            )
        )
    return calls


@st.composite
def interleaving(draw: st.DrawFn, lengths: list[int]) -> list[tuple[int, int]]:
    """A random merge of several sequences: ``(sequence, position)`` pairs, each in order."""
    labels = draw(st.permutations([i for i, n in enumerate(lengths) for _ in range(n)]))
    seen = [0] * len(lengths)
    order = []
    for label in labels:
        order.append((label, seen[label]))
        seen[label] += 1
    return order


def assert_assembled(result: list[ToolCall], calls: list[Call]) -> None:
    assert [(c.id, c.name, c.arguments) for c in result] == [
        (c.id, c.name, c.arguments) for c in calls
    ]


@properties(150)
@given(st.data())
def test_assembler_any_fragmentation_and_interleaving(data: st.DataObject) -> None:
    calls = data.draw(tool_calls())
    # The index a call streams under is any unique number, not necessarily 0..n-1.
    indices = sorted(
        data.draw(st.sets(st.integers(0, 1000), min_size=len(calls), max_size=len(calls)))
    )
    repeat_header = data.draw(st.booleans())
    assembler = ToolCallAssembler()
    order = data.draw(interleaving([len(c.fragments) + 1 for c in calls]))
    for which, position in order:
        call, index = calls[which], indices[which]
        if position == 0:
            assembler.add(ToolCallDelta(index, call.id, call.name))
        elif repeat_header:
            assembler.add(ToolCallDelta(index, call.id, call.name, call.fragments[position - 1]))
        else:
            assembler.add(ToolCallDelta(index, arguments=call.fragments[position - 1]))

    result = assembler.calls()

    assert_assembled(result, calls)
    assert [c.raw_arguments for c in result] == [c.text for c in calls]


def _sse(payload: Any, event: str | None = None, end: str = "\n") -> str:
    head = f"event: {event}{end}" if event else ""
    return f"{head}data: {json.dumps(payload)}{end}{end}"


@st.composite
def openai_stream(draw: st.DrawFn, text: str, calls: list[Call]) -> tuple[str, list[Call]]:
    """A Chat Completions stream of ``text`` and ``calls``, as different servers send it.

    OpenAI sends a call's id and name once, then argument fragments, interleaving parallel
    calls; compatible servers may repeat id and name on every fragment, send a whole call
    in one fragment (its arguments even as an object), or omit ``index`` and send calls one
    after another.
    """
    style = draw(st.sampled_from(["openai", "repeat_header", "whole", "object", "no_index"]))
    fragments: list[dict[str, Any]] = []
    if style in ("whole", "object"):
        for i in draw(st.permutations(range(len(calls)))):
            call = calls[i]
            function = {"name": call.name, "arguments": call.text}
            if style == "object":
                function["arguments"] = call.arguments
            fragments.append({"index": i, "id": call.id, "type": "function", "function": function})
    else:
        lengths = [len(c.fragments) + 1 for c in calls]
        if style == "no_index":
            order = [(i, p) for i, n in enumerate(lengths) for p in range(n)]
        else:
            order = draw(interleaving(lengths))
        for which, position in order:
            call = calls[which]
            header = {"id": call.id, "type": "function"}
            if position == 0:
                fragment: dict[str, Any] = {
                    **header,
                    "function": {"name": call.name, "arguments": ""},
                }
            else:
                fragment = {"function": {"arguments": call.fragments[position - 1]}}
                if style == "repeat_header":
                    fragment.update(header)
                    fragment["function"]["name"] = call.name
            if style != "no_index":
                fragment["index"] = which
            fragments.append(fragment)
    base = {"id": "chatcmpl-x", "object": "chat.completion.chunk", "created": 1, "model": "m"}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
        return _sse({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})

    out = chunk({"role": "assistant", "content": ""})
    out += "".join(chunk({"content": piece}) for piece in draw(pieces_of(text)) if piece)
    groups = draw(pieces_of(fragments, max_cuts=len(fragments)))
    out += "".join(chunk({"tool_calls": group}) for group in groups if group)
    out += chunk({}, "tool_calls" if calls else "stop")
    out += _sse({**base, "choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 2}})
    return out + "data: [DONE]\n\n", calls


@st.composite
def anthropic_stream(draw: st.DrawFn, text: str, calls: list[Call]) -> tuple[str, list[Call]]:
    """A Messages API stream; tool_use blocks are even interleaved (the API does not, yet).

    Blocks are keyed by index, so the parser must cope. Each block: start, its
    ``input_json_delta`` fragments, stop. Returns the calls in the order their blocks start:
    ``ToolCallDelta.index`` counts tool_use blocks that way.
    """
    first = 1 if text else 0  # content-block index of the first tool_use block
    order = draw(interleaving([len(c.fragments) + 2 for c in calls]))
    message = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "content": [],
        "model": "m",
        "stop_reason": None,
        "usage": {"input_tokens": 3, "output_tokens": 1},
    }
    events = [_sse({"type": "message_start", "message": message}, "message_start")]
    if text:
        start = {"type": "content_block_start", "index": 0}
        events.append(_sse({**start, "content_block": {"type": "text", "text": ""}}, start["type"]))
        for piece in draw(pieces_of(text)):
            delta = {"type": "text_delta", "text": piece}
            payload = {"type": "content_block_delta", "index": 0, "delta": delta}
            events.append(_sse(payload, "content_block_delta"))
        events.append(_sse({"type": "content_block_stop", "index": 0}, "content_block_stop"))
    for which, position in order:
        call, index = calls[which], first + which
        if position == 0:
            block = {"type": "tool_use", "id": call.id, "name": call.name, "input": {}}
            payload = {"type": "content_block_start", "index": index, "content_block": block}
        elif position <= len(call.fragments):
            delta = {"type": "input_json_delta", "partial_json": call.fragments[position - 1]}
            payload = {"type": "content_block_delta", "index": index, "delta": delta}
        else:
            payload = {"type": "content_block_stop", "index": index}
        events.append(_sse(payload, payload["type"]))
        if draw(st.integers(0, 9)) == 0:
            events.append(_sse({"type": "ping"}, "ping"))
    delta = {"stop_reason": "tool_use" if calls else "end_turn"}
    events.append(
        _sse(
            {"type": "message_delta", "delta": delta, "usage": {"output_tokens": 9}},
            "message_delta",
        )
    )
    events.append(_sse({"type": "message_stop"}, "message_stop"))
    starts = [which for which, position in order if position == 0]
    return "".join(events), [calls[i] for i in starts]


@st.composite
def gemini_stream(draw: st.DrawFn, text: str, calls: list[Call]) -> tuple[str, list[Call]]:
    """A ``streamGenerateContent?alt=sse`` stream: whole calls, spread over events, CRLF."""
    parts: list[dict[str, Any]] = [{"text": piece} for piece in draw(pieces_of(text)) if piece]
    parts += [{"functionCall": {"name": c.name, "args": c.arguments, "id": c.id}} for c in calls]
    groups = [g for g in draw(pieces_of(parts, max_cuts=len(parts))) if g] or [[]]
    events = []
    for n, group in enumerate(groups):
        candidate: dict[str, Any] = {"content": {"role": "model", "parts": group}, "index": 0}
        payload: dict[str, Any] = {"candidates": [candidate]}
        if n == len(groups) - 1:
            candidate["finishReason"] = "STOP"
            payload["usageMetadata"] = {"promptTokenCount": 2, "candidatesTokenCount": 3}
        events.append(_sse(payload, end="\r\n"))
    return "".join(events), calls


STREAMS = {
    "openai": (openai_stream, "/chat/completions"),
    "anthropic": (anthropic_stream, "/v1/messages"),
    "gemini": (gemini_stream, ":streamGenerateContent"),
}


async def _stream_turn(provider: str, body: list[bytes]) -> tuple[str, list[ToolCall]]:
    """Run one streamed turn of ``provider`` whose HTTP body arrives in exactly ``body``."""

    async def pieces() -> AsyncIterator[bytes]:
        for piece in body:
            yield piece

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path.endswith(STREAMS[provider][1])
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=pieces())

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        model = agentrt.get_async_model(
            f"{provider}:m", api_key="sk-test", base_url="http://fake", http_client=client
        )
        async with model:
            response = model.prompt("go")
            text = await response.text()
            assert response.status == "completed"
            calls = await response.tool_calls()
            assert response.finish_reason == ("tool_calls" if calls else "stop")
            return text, calls


@st.composite
def turns(draw: st.DrawFn, provider: str) -> tuple[str, list[Call], bytes]:
    """A turn (text and tool calls), its stream, and the calls in the order they stream."""
    text = draw(st.text(max_size=20))
    calls = draw(tool_calls(min_calls=0 if text else 1))
    stream, expected = draw(STREAMS[provider][0](text, calls))
    return text, expected, stream.encode()


@pytest.mark.parametrize("provider", list(STREAMS))
@properties(80)
@given(data=st.data())
def test_stream_assembles_any_fragmentation(provider: str, data: st.DataObject) -> None:
    text, calls, raw = data.draw(turns(provider))
    body = data.draw(pieces_of(raw, max_cuts=30))

    got_text, got_calls = anyio.run(_stream_turn, provider, body)

    assert got_text == text
    assert_assembled(got_calls, calls)


@pytest.mark.parametrize("provider", list(STREAMS))
@properties(80)
@given(data=st.data())
def test_truncated_stream_is_an_error_never_a_partial_answer(
    provider: str, data: st.DataObject
) -> None:
    # The body ends cleanly (no connection error) at any byte: the turn either has had all
    # it needs (OpenAI's finish chunk, Anthropic's message_stop, Gemini's finishReason) and
    # is whole, or raises a typed provider error. It never returns part of an answer.
    text, calls, raw = data.draw(turns(provider))
    # Cuts anywhere, in the last 200 bytes where the finishing events are, and between
    # events (where the parser sees nothing wrong and only the provider can tell).
    boundaries = [m.end() for m in re.finditer(rb"\n\n|\r\n\r\n", raw)][:-1] or [0]
    cut = data.draw(
        st.integers(0, len(raw) - 1)
        | st.integers(max(0, len(raw) - 200), len(raw) - 1)
        | st.sampled_from(boundaries)
    )
    body = data.draw(pieces_of(raw[:cut]))

    try:
        outcome: Any = anyio.run(_stream_turn, provider, body)
    except agentrt.ProviderError as exc:
        outcome = exc
    event(type(outcome).__name__)
    if isinstance(outcome, Exception):
        assert str(outcome)  # says what went wrong
    else:
        got_text, got_calls = outcome
        assert got_text == text
        assert_assembled(got_calls, calls)


# --- 3. schemas from generated signatures -------------------------------------------------------

#: Parameter names, including ones that collide with ``BaseModel`` attributes or that pydantic
#: treats specially (a leading underscore, the ``model_`` prefix).
param_names = st.one_of(
    st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True),
    st.sampled_from(
        [
            "json",
            "schema",
            "copy",
            "dict",
            "validate",
            "fields",
            "construct",
            "model_name",
            "model_config",
            "model_dump",
            "_private",
            "__dunder",
            "self_",
            "register",
        ]
    ),
).filter(lambda name: name.isidentifier() and not keyword.iskeyword(name))


field_names = st.from_regex(r"[a-z][a-z0-9]{0,6}", fullmatch=True).filter(
    lambda name: not hasattr(pydantic.BaseModel, name)
)


@dataclass
class TypeCase:
    """A parameter type, a strategy for JSON values that fit it, and their Python form."""

    annotation: Any
    values: st.SearchStrategy[Any]
    to_python: Callable[[Any], Any] = lambda value: value


def _scalar_types() -> st.SearchStrategy[TypeCase]:
    literals = st.lists(
        st.one_of(st.integers(-5, 5), st.text("abcxyz", min_size=1, max_size=4)),
        min_size=1,
        max_size=4,
        unique=True,
    ).map(lambda options: TypeCase(Literal[tuple(options)], st.sampled_from(options)))
    return st.one_of(
        st.just(TypeCase(int, st.integers())),
        st.just(TypeCase(str, st.text(max_size=10))),
        st.just(
            TypeCase(float, st.floats(allow_nan=False, allow_infinity=False) | st.integers(-9, 9))
        ),
        st.just(TypeCase(bool, st.booleans())),
        literals,
    )


_model_numbers = itertools.count()


def _wrap_types(children: st.SearchStrategy[TypeCase]) -> st.SearchStrategy[TypeCase]:
    def optional(case: TypeCase) -> TypeCase:
        return TypeCase(
            Optional[case.annotation],  # noqa: UP045
            st.none() | case.values,
            lambda value: None if value is None else case.to_python(value),
        )

    def list_of(case: TypeCase) -> TypeCase:
        return TypeCase(
            list[case.annotation],
            st.lists(case.values, max_size=3),
            lambda values: [case.to_python(v) for v in values],
        )

    def dict_of(case: TypeCase) -> TypeCase:
        return TypeCase(
            dict[str, case.annotation],
            st.dictionaries(st.text(max_size=5), case.values, max_size=3),
            lambda values: {k: case.to_python(v) for k, v in values.items()},
        )

    @st.composite
    def model(draw: st.DrawFn) -> TypeCase:
        # The user's own model: its field names are the user's business, not agentrt's.
        names = draw(st.lists(field_names, min_size=1, max_size=3, unique=True))
        cases = [draw(children) for _ in names]
        cls = pydantic.create_model(
            f"Nested{next(_model_numbers)}",
            **{n: (c.annotation, ...) for n, c in zip(names, cases, strict=True)},
        )
        values = st.fixed_dictionaries({n: c.values for n, c in zip(names, cases, strict=True)})
        return TypeCase(
            cls,
            values,
            lambda value: cls(
                **{n: c.to_python(value[n]) for n, c in zip(names, cases, strict=True)}
            ),
        )

    return st.one_of(children.map(optional), children.map(list_of), children.map(dict_of), model())


type_cases = st.recursive(_scalar_types(), _wrap_types, max_leaves=4)


@dataclass
class Param:
    name: str
    case: TypeCase
    default: Any = inspect.Parameter.empty


@st.composite
def signatures(draw: st.DrawFn) -> list[Param]:
    names = draw(st.lists(param_names, max_size=5, unique=True))
    params = []
    for name in names:
        case = draw(type_cases)
        default: Any = inspect.Parameter.empty
        if draw(st.booleans()):
            # A default that fits the type, in its Python form (None for Optional).
            default = case.to_python(draw(case.values))
        params.append(Param(name, case, default))
    # Python: parameters without defaults come first.
    params.sort(key=lambda p: p.default is not inspect.Parameter.empty)
    return params


def make_function(params: list[Param]) -> Callable[..., dict[str, Any]]:
    def fn(**kwargs: Any) -> dict[str, Any]:
        return kwargs

    fn.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [
            inspect.Parameter(
                p.name,
                inspect.Parameter.POSITIONAL_OR_KEYWORD,
                default=p.default,
                annotation=p.case.annotation,
            )
            for p in params
        ]
    )
    fn.__annotations__ = {p.name: p.case.annotation for p in params}
    fn.__name__ = "generated_tool"
    return fn


def _plain(value: Any) -> Any:
    if isinstance(value, pydantic.BaseModel):
        return {k: _plain(v) for k, v in value}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


async def _call_through_chain(generated: agentrt.Tool, raw_arguments: str) -> ToolResult:
    def turn(messages: list[Message], _tools: Any) -> ModelTurn | str:
        if len(messages) == 1:
            return ModelTurn(tool_calls=[ScriptedCall(generated.name, raw_arguments)])
        return "done"

    chain = FunctionModel(turn).chain("go", tools=[generated])
    await chain.text()
    [result] = chain.tool_results
    return result


@properties(100)
@given(st.data())
def test_schema_for_generated_signatures(data: st.DataObject) -> None:
    params = data.draw(signatures())
    fn = make_function(params)

    generated = agentrt.tool(fn)
    schema = generated.parameters

    assert schema["type"] == "object"
    assert list(schema.get("properties", {})) == [p.name for p in params]
    required = [p.name for p in params if p.default is inspect.Parameter.empty]
    assert schema.get("required", []) == required
    assert schema.get("additionalProperties") is False
    json.dumps(schema, allow_nan=False)  # plain JSON, sendable as is
    validator = None
    if jsonschema is not None:
        jsonschema.Draft202012Validator.check_schema(schema)
        validator = jsonschema.Draft202012Validator(schema)

    # Arguments that fit the signature: every required parameter, some optional ones.
    arguments = {
        p.name: data.draw(p.case.values, label=p.name)
        for p in params
        if p.default is inspect.Parameter.empty or data.draw(st.booleans())
    }
    if validator is not None:
        validator.validate(arguments)
    expected = {
        p.name: p.case.to_python(arguments[p.name]) if p.name in arguments else p.default
        for p in params
    }
    assert _plain(generated.validate(arguments)) == _plain(expected)
    # And through a chain: the model sends the arguments as JSON, the tool gets them.
    result = anyio.run(_call_through_chain, generated, json.dumps(arguments))
    assert not result.is_error, result.content
    assert json.loads(result.content) == json.loads(json.dumps(_plain(expected)))

    # An unknown argument is refused by the schema and by validation alike.
    extra = {**arguments, "not_a_parameter_": 1}
    with pytest.raises(pydantic.ValidationError):
        generated.validate(extra)
    if validator is not None:
        assert not validator.is_valid(extra)


# --- 4. garbage from the model never crashes a chain ---------------------------------------


def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


async def echo(text: str = "", times: int = 1) -> str:
    """Repeat a text (at most three times)."""
    return text * max(0, min(times, 3))


def fail(reason: str = "") -> str:
    """Always raise."""
    raise ValueError(reason)


TOOLS = {t.name: t for t in map(agentrt.tool, [add, echo, fail])}

raw_arguments = st.one_of(
    json_values.map(json.dumps),  # any JSON: objects, arrays, strings, numbers, null
    json_objects.map(json.dumps),
    st.builds(lambda a, b: json.dumps({"a": a, "b": b}), st.integers(), st.integers()),
    st.builds(lambda t, n: json.dumps({"text": t, "times": n}), st.text(max_size=8), st.integers()),
    json_objects.map(json.dumps).flatmap(lambda s: st.integers(0, len(s)).map(lambda k: s[:k])),
    st.text(max_size=30),
    st.sampled_from(
        [
            "",
            "  ",
            "\u2028",
            "null",
            "[]",
            '"{}"',
            "{",
            "}",
            "NaN",
            "-Infinity",
            '{"a": NaN, "b": 1}',
            '{"a": 1e400, "b": 0}',
            '{"a": 1, "a": 2, "b": 3}',
            "\ufeff{}",
            '{"a": "1", "b": true}',
            "{'a': 1}",
            '{"a": 1, "b": 2} trailing',
        ]
    ),
)
call_names = st.one_of(st.sampled_from(list(TOOLS)), st.text(max_size=12))
scripted_calls = st.builds(ScriptedCall, name=call_names, arguments=raw_arguments)
scripts = st.lists(st.lists(scripted_calls, min_size=1, max_size=4), min_size=1, max_size=3)


def expected_result(call: ScriptedCall) -> tuple[bool, str | None]:
    """Whether the call must be an error, and the content of a successful one."""
    tool = TOOLS.get(call.name)
    if tool is None:
        return True, None
    raw = call.arguments
    if not raw or raw.isspace():
        value: Any = {}
    else:
        try:
            value = json.loads(raw)
        except ValueError:
            return True, None
    if not isinstance(value, dict):
        return True, None
    if any(isinstance(v, float) and not math.isfinite(v) for v in value.values()):
        return True, None  # NaN and Infinity are not JSON
    try:
        kwargs = tool.validate(value)
    except pydantic.ValidationError:
        return True, None
    if tool.name == "fail":
        return True, None
    if tool.name == "add":
        return False, str(add(**kwargs))
    return False, "".join([kwargs["text"]] * max(0, min(kwargs["times"], 3)))


def check_history(messages: list[Message]) -> None:
    """Each assistant tool call is answered by the next tool messages, in order, exactly once."""
    i = 0
    while i < len(messages):
        message = messages[i]
        i += 1
        if message.role != "assistant" or not message.tool_calls:
            continue
        answers = messages[i : i + len(message.tool_calls)]
        assert [m.role for m in answers] == ["tool"] * len(message.tool_calls)
        assert [m.tool_call_id for m in answers] == [c.id for c in message.tool_calls]
        i += len(answers)


def check_provider_formats(messages: list[Message]) -> None:
    """The history, garbage included, still becomes a valid request for every provider."""
    request = TurnRequest(list(messages), None, [t.spec for t in TOOLS.values()], {})
    ids = [c.id for m in messages for c in m.tool_calls]

    openai = agentrt.get_async_model("openai:m", api_key="sk-test").provider
    body = openai.codec.plain_body("m", request, stream=True)  # type: ignore[attr-defined]
    json.dumps(body, allow_nan=False)
    sent = body["messages"]
    assert [c["id"] for m in sent for c in m.get("tool_calls") or ()] == ids
    assert [m["tool_call_id"] for m in sent if m["role"] == "tool"] == ids

    body = anthropic_provider.build_request_body("m", request, stream=True)
    json.dumps(body, allow_nan=False)
    blocks = [b for m in body["messages"] if isinstance(m["content"], list) for b in m["content"]]
    assert [b["id"] for b in blocks if b["type"] == "tool_use"] == ids
    assert [b["tool_use_id"] for b in blocks if b["type"] == "tool_result"] == ids

    body = gemini_provider.build_request_body(request)
    json.dumps(body, allow_nan=False)
    parts = [p for content in body["contents"] for p in content["parts"]]
    assert sum("functionCall" in p for p in parts) == len(ids)
    assert sum("functionResponse" in p for p in parts) == len(ids)


@properties(60)
@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@given(script=scripts, stream=st.booleans())
def test_chain_survives_any_tool_call_from_the_model(
    backend: str, script: list[list[ScriptedCall]], stream: bool
) -> None:
    seen: list[list[Message]] = []

    def turn(messages: list[Message], _tools: Any) -> ModelTurn | str:
        seen.append(messages)
        step = len(seen) - 1
        if step < len(script):
            return ModelTurn(text=f"turn {step}", tool_calls=script[step])
        return "done"

    async def main() -> agentrt.AsyncChain:
        model = FunctionModel(turn, stream=stream)
        chain = model.chain("go", tools=list(TOOLS.values()))
        await chain.text()
        return chain

    chain = anyio.run(main, backend=backend)

    assert chain.status == "completed", chain.error
    assert len(chain.responses) == len(script) + 1
    for response, calls in zip(chain.responses, script, strict=False):
        results = response.tool_results
        assert len(results) == len(calls)
        for call, result in zip(calls, results, strict=True):
            is_error, content = expected_result(call)
            assert result.is_error == is_error, (call, result)
            assert result.name == call.name
            if content is not None:
                assert result.content == content
            if is_error:
                assert result.content.startswith("Error: ")
    # Every turn after the first saw one tool message per call of the turn before.
    for messages, calls in zip(seen[1:], script, strict=True):
        answers = messages[-len(calls) :]
        assert [m.role for m in answers] == ["tool"] * len(calls)
        assert [m.tool_call_id for m in answers] == [
            c.id for c in messages[-len(calls) - 1].tool_calls
        ]
    check_history(chain.messages)
    check_provider_formats(chain.messages)


# --- examples the properties found ------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["json", "schema", "copy", "validate", "model_config", "model_dump", "_private"]
)
def test_parameter_named_like_a_pydantic_attribute(name: str) -> None:
    # pydantic warned about (json, schema, ...), silently dropped (_private, model_config)
    # or refused (model_dump) such fields; the tool now validates them under their own name.
    namespace: dict[str, Any] = {}
    exec(f"def lookup({name}: int = 0) -> int:\n    return {name}\n", namespace)

    generated = agentrt.tool(namespace["lookup"])

    assert generated.parameters["properties"] == {name: {"default": 0, "type": "integer"}}
    assert generated.validate({name: 3}) == {name: 3}
    assert generated.validate({}) == {name: 0}
    with pytest.raises(pydantic.ValidationError) as info:
        generated.validate({name: "x"})
    assert info.value.errors()[0]["loc"] == (name,)


@pytest.mark.parametrize(
    "raw", ['{"a": NaN, "b": 1}', '{"a": -Infinity, "b": 1}', '{"a": 1e999, "b": 1}']
)
def test_nan_and_infinity_in_arguments_are_an_error_result(raw: str) -> None:
    # Python's json accepts them; a history holding them could not be sent again.
    def turn(messages: list[Message], _tools: Any) -> ModelTurn | str:
        if len(messages) == 1:
            return ModelTurn(tool_calls=[ScriptedCall("add", raw)])
        return "done"

    async def main() -> agentrt.AsyncChain:
        chain = FunctionModel(turn).chain("go", tools=[add])
        await chain.text()
        return chain

    chain = anyio.run(main)

    [result] = chain.tool_results
    assert result.is_error
    assert "NaN, Infinity or an out-of-range number" in result.content
    assert chain.messages[1].tool_calls[0].arguments is None
    check_provider_formats(chain.messages)
