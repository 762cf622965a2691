"""Captured content: agentrt's messages in the conventions' JSON shapes, capped and redacted.

Everything here runs only when content capture is on. Each attribute is a JSON string (the
conventions allow JSON strings on spans where structured values are not supported) and at
most ``limit`` characters long. A value over the limit keeps its JSON structure: the longest
strings are cut first, each cut string ending with a marker saying how long it was, and the
oldest list items are dropped (with a marker item) only when cutting strings is not enough.
Known secrets (the provider's API key, the key environment variables) are replaced by
``[redacted]`` before anything is measured or recorded.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ..messages import Message, ToolCall, ToolSpec
from ..providers import PROVIDERS
from . import _semconv as sc

__all__ = [
    "cap_json",
    "input_messages",
    "message_dropped_marker",
    "output_messages",
    "redactor",
    "result_value",
    "system_instructions",
    "tool_definitions",
]

REDACTED = "[redacted]"
#: Appended to a string that was cut; ``{n}`` is its full length in characters.
CUT_MARKER = "...[truncated by agentrt: {n} characters in all]"


def _parts_of(message: Message) -> list[dict[str, Any]]:
    if message.role == "tool":
        return [
            {"type": "tool_call_response", "id": message.tool_call_id, "response": message.content}
        ]
    parts: list[dict[str, Any]] = []
    if message.content:
        parts.append({"type": "text", "content": message.content})
    parts.extend(_tool_call_part(call) for call in message.tool_calls)
    return parts


def _tool_call_part(call: ToolCall) -> dict[str, Any]:
    arguments: Any = call.arguments if call.arguments is not None else call.raw_arguments
    return {"type": "tool_call", "id": call.id, "name": call.name, "arguments": arguments}


def input_messages(messages: Iterable[Message]) -> list[dict[str, Any]]:
    """The history sent to the model, as ``gen_ai.input.messages`` (ChatMessage items)."""
    result = []
    for message in messages:
        item: dict[str, Any] = {"role": message.role, "parts": _parts_of(message)}
        if message.role == "tool" and message.name:
            item["name"] = message.name
        result.append(item)
    return result


def output_messages(
    text: str, calls: Sequence[ToolCall], finish_reason: str | None
) -> list[dict[str, Any]]:
    """The turn's answer as ``gen_ai.output.messages`` (one OutputMessage: one choice)."""
    parts: list[dict[str, Any]] = []
    if text:
        parts.append({"type": "text", "content": text})
    parts.extend(_tool_call_part(call) for call in calls)
    reason = sc.OUTPUT_FINISH_REASONS.get(finish_reason or "", "error")
    return [{"role": "assistant", "parts": parts, "finish_reason": reason}]


def system_instructions(system: str) -> list[dict[str, Any]]:
    """The system prompt as ``gen_ai.system_instructions``."""
    return [{"type": "text", "content": system}]


def tool_definitions(specs: Iterable[ToolSpec]) -> list[dict[str, Any]]:
    """The offered tools as ``gen_ai.tool.definitions`` (FunctionToolDefinition items)."""
    return [
        {
            "type": "function",
            "name": s.name,
            "description": s.description,
            "parameters": s.parameters,
        }
        for s in specs
    ]


def result_value(content: str) -> Any:
    """A tool result for ``gen_ai.tool.call.result``: its JSON value if it is JSON, else text."""
    stripped = content.lstrip()
    if stripped[:1] in ("{", "["):
        try:
            return json.loads(content)
        except ValueError:
            pass
    return content


def redactor(extra: Iterable[str] = ()) -> tuple[str, ...]:
    """The secrets never to record: the key environment variables' values and ``extra``."""
    secrets = {os.environ.get(env) for _, _, env in PROVIDERS.values() if env}
    secrets.update(extra)
    # Very short values would redact ordinary words; real keys are long.
    return tuple(sorted((s for s in secrets if s and len(s) >= 8), key=len, reverse=True))


def redact(text: str, secrets: Sequence[str]) -> str:
    """Replace every secret in ``text`` by ``[redacted]``."""
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def _cut_strings(value: Any, keep: int) -> Any:
    """``value`` with every string longer than ``keep`` characters cut, with a marker."""
    if isinstance(value, str):
        if len(value) <= keep:
            return value
        return value[:keep] + CUT_MARKER.format(n=len(value))
    if isinstance(value, list):
        return [_cut_strings(v, keep) for v in value]
    if isinstance(value, dict):
        return {k: _cut_strings(v, keep) for k, v in value.items()}
    return value


def _longest_string(value: Any) -> int:
    if isinstance(value, str):
        return len(value)
    if isinstance(value, list):
        return max((_longest_string(v) for v in value), default=0)
    if isinstance(value, dict):
        return max((_longest_string(v) for v in value.values()), default=0)
    return 0


def _dropped_marker(count: int) -> dict[str, Any]:
    return {"type": "truncated", "dropped_items": count}


def message_dropped_marker(count: int) -> dict[str, Any]:
    """The item standing for ``count`` dropped messages (a ChatMessage with a generic part)."""
    return {"role": "truncated", "parts": [{"type": "truncated", "dropped_messages": count}]}


def cap_json(
    value: Any,
    limit: int,
    secrets: Sequence[str] = (),
    dropped: Callable[[int], Any] = _dropped_marker,
) -> tuple[str, bool]:
    """Serialise ``value`` to JSON of at most ``limit`` characters, keeping it valid JSON.

    Args:
        value: a JSON-able value.
        limit: the most characters the JSON text may have.
        secrets: strings replaced by ``[redacted]`` first.
        dropped: builds the list item that stands for the oldest items dropped.

    Returns:
        The JSON text and whether anything was cut.
    """
    text = redact(_dumps(value), secrets)
    if len(text) <= limit:
        return text, False
    value = json.loads(text)  # the redacted value, so cutting never splits a secret apart
    # The largest per-string length that fits, by bisection (a few serialisations).
    low, high = 0, _longest_string(value)
    best: str | None = None
    while low <= high:
        keep = (low + high) // 2
        attempt = _dumps(_cut_strings(value, keep))
        if len(attempt) <= limit:
            best, low = attempt, keep + 1
        else:
            high = keep - 1
    if best is not None:
        return best, True
    # Even with every string emptied it does not fit: drop the oldest list items.
    if isinstance(value, list):
        items = [_cut_strings(v, 0) for v in value]
        for start in range(1, len(items) + 1):
            attempt = _dumps([dropped(start), *items[start:]])
            if len(attempt) <= limit:
                return attempt, True
    marker = _dumps(CUT_MARKER.format(n=len(text)))
    return (marker if len(marker) <= limit else "null"), True
