"""The embedded ``offline`` model: deterministic, no network, a stand-in for trying agentrt.

It is not a language model. Its rules, which the README documents:

- The request offers tools and the conversation has no tool results since the last user
  message: it calls every tool once, all in one turn. Arguments come from the first JSON
  object in the last user message (keys that match a tool's parameters); when it holds
  none, the numbers in the message fill the tool's number parameters in order ("What is
  2+3?" calls ``add(a=2, b=3)``). The rest is built from the schema: the default, else the
  first enum value, else ``1`` for numbers, ``"example"`` for strings, ``true``, ``[]`` or
  ``{}``.
- The conversation ends with tool results: it answers with a summary of each call and
  its result.
- Otherwise it answers by quoting the last user message.
- With ``output_type=`` it answers with an output instead of the summary or the quote,
  built from the output's schema as tool arguments are (keys from the prompt's first JSON
  object, the rest from the schema): as JSON text, or in ``tool`` mode as a call of the
  final-result tool (which it never calls with the other tools).

Text streams word by word. Usage counts one token per whitespace-separated word: input
over the system prompt and every message sent (content and tool-call arguments), output
over the text produced and the tool calls' names and arguments.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterable
from typing import Any

import anyio.lowlevel

from ..messages import (
    FinishEvent,
    FinishReason,
    Message,
    StreamEvent,
    TextDelta,
    ToolCallDelta,
    ToolSpec,
    TurnRequest,
    Usage,
    UsageEvent,
)
from ..output import OUTPUT_TOOL_NAME, render_json
from .base import Provider

__all__ = ["OfflineProvider", "count_words", "split_words", "usage_for"]

_WORD = re.compile(r"\S+\s*")


def count_words(*texts: str | None) -> int:
    """Count whitespace-separated words: the offline token rule."""
    return sum(len(t.split()) for t in texts if t)


def split_words(text: str) -> list[str]:
    """Split text into streamable pieces, one word (with its trailing space) each."""
    leading = len(text) - len(text.lstrip())
    pieces = _WORD.findall(text)
    if leading and pieces:
        pieces[0] = text[:leading] + pieces[0]
    return pieces or ([text] if text else [])


def usage_for(request: TurnRequest, output_text: str, calls: Iterable[tuple[str, str]]) -> Usage:
    """Usage by the offline counting rule (see the module docstring)."""
    input_tokens = count_words(request.system) + sum(
        count_words(m.content, *(c.raw_arguments for c in m.tool_calls)) for m in request.messages
    )
    output_tokens = count_words(output_text) + sum(count_words(name, args) for name, args in calls)
    return Usage.of(input_tokens, output_tokens)


class OfflineProvider(Provider):
    """The deterministic offline model (see the module docstring for its rules)."""

    name = "offline"

    def __init__(self, model_name: str = "default", **transport_options: Any) -> None:
        # Transport options (timeout, max_retries, ...) mean nothing offline; accept them so
        # a model id can be swapped for "offline" without touching the call.
        super().__init__(model_name)

    async def turn(self, request: TurnRequest, *, stream: bool) -> AsyncIterator[StreamEvent]:
        """Answer by the offline rules, word by word when streaming."""
        text, calls = decide(request)
        if text:
            for piece in split_words(text) if stream else [text]:
                await anyio.lowlevel.checkpoint()
                yield TextDelta(piece)
        for index, (name, args) in enumerate(calls):
            yield ToolCallDelta(index, f"call_{_turn_number(request)}_{index}", name, args)
        yield UsageEvent(usage_for(request, text, calls))
        finish: FinishReason = "tool_calls" if calls else "stop"
        yield FinishEvent(finish, finish)


def decide(request: TurnRequest) -> tuple[str, list[tuple[str, str]]]:
    """Return the text and the tool calls (name, JSON arguments) of the next turn."""
    messages = request.messages
    output = request.output
    tools = request.tools
    if output is not None and output.mode == "tool":
        tools = [t for t in tools if t.name != OUTPUT_TOOL_NAME]
    if messages and messages[-1].role == "tool":
        if output is not None:
            return _output(output, messages)
        return _summary(messages), []
    if tools:
        text = _last_user_text(messages)
        given = _json_object(text)
        numbers = [] if given else _NUMBER.findall(text)
        return "", [
            (t.name, json.dumps(_arguments(t, given or _numbered(t, numbers)))) for t in tools
        ]
    if output is not None:
        return _output(output, messages)
    prompt = _last_user_text(messages).strip()
    if not prompt:
        return "The offline model received no prompt.", []
    return f'The offline model (no network) received: "{prompt}"', []


def _output(output: Any, messages: list[Message]) -> tuple[str, list[tuple[str, str]]]:
    """The output answer: built from the schema like tool arguments (see module docstring)."""
    spec = ToolSpec("output", "", output.spec.object_schema)
    text = _last_user_text(messages)
    given = _json_object(text)
    data = _arguments(spec, given or _numbered(spec, [] if given else _NUMBER.findall(text)))
    answer, final = render_json(output, data, wrapped=True)
    return answer, [final] if final is not None else []


def _turn_number(request: TurnRequest) -> int:
    return sum(1 for m in request.messages if m.role == "assistant")


def _last_user_text(messages: list[Message]) -> str:
    for message in reversed(messages):
        if message.role == "user":
            return message.content
    return ""


def _json_object(text: str) -> dict[str, Any]:
    decoder = json.JSONDecoder()
    for match in re.finditer(r"\{", text):
        try:
            value, _ = decoder.raw_decode(text, match.start())
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return {}


_NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?")


def _numbered(spec: ToolSpec, numbers: list[str]) -> dict[str, Any]:
    """The numbers of the prompt, in order, for the tool's number parameters."""
    properties: dict[str, Any] = spec.parameters.get("properties", {})
    args: dict[str, Any] = {}
    pending = iter(numbers)
    for name, schema in properties.items():
        kind = schema.get("type")
        if kind not in ("integer", "number"):
            continue
        number = next(pending, None)
        if number is None:
            break
        value = float(number)
        # A fraction for an integer parameter stays a fraction: validation tells the model.
        args[name] = int(value) if value.is_integer() else value
    return args


def _arguments(spec: ToolSpec, given: dict[str, Any]) -> dict[str, Any]:
    schema = spec.parameters
    properties: dict[str, Any] = schema.get("properties", {})
    args = {k: v for k, v in given.items() if k in properties}
    for name in schema.get("required", []):
        if name not in args:
            args[name] = example_value(properties.get(name, {}), schema.get("$defs", {}))
    return args


def example_value(schema: dict[str, Any], defs: dict[str, Any], depth: int = 0) -> Any:
    """Build a deterministic value that fits a JSON Schema fragment."""
    if depth > 8:
        return None
    if "default" in schema:
        return schema["default"]
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    if "$ref" in schema:
        target = defs.get(schema["$ref"].rsplit("/", 1)[-1], {})
        return example_value(target, defs, depth + 1)
    for key in ("anyOf", "oneOf", "allOf"):
        options = [s for s in schema.get(key, []) if s.get("type") != "null"]
        if options:
            return example_value(options[0], defs, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), None)
    if kind == "object":
        props = schema.get("properties", {})
        return {
            name: example_value(props.get(name, {}), defs, depth + 1)
            for name in schema.get("required", [])
        }
    return {"integer": 1, "number": 1, "string": "example", "boolean": True, "array": []}.get(
        kind or "", "example"
    )


def _summary(messages: list[Message]) -> str:
    calls = {c.id: c for m in messages if m.role == "assistant" for c in m.tool_calls}
    start = len(messages)
    while start > 0 and messages[start - 1].role == "tool":
        start -= 1
    lines = ["Offline model summary of the tool results:"]
    for message in messages[start:]:
        call = calls.get(message.tool_call_id or "")
        args = ""
        if call is not None and call.arguments:
            args = ", ".join(f"{k}={v!r}" for k, v in call.arguments.items())
        outcome = "failed: " if message.is_error else "returned "
        lines.append(f"- {message.name}({args}) {outcome}{message.content}")
    return "\n".join(lines)
