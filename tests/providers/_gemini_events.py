"""Assembling Gemini stream events the way the core does, for the Gemini provider tests."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from agentrt.messages import (
    FinishEvent,
    Message,
    ProviderDataEvent,
    StreamEvent,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    ToolSpec,
    Usage,
    UsageEvent,
)


@dataclass
class Assembled:
    """What the core would build from one turn's events."""

    text: str = ""
    text_pieces: int = 0
    calls: dict[int, dict[str, Any]] = field(default_factory=dict)
    usage: Usage | None = None
    raw_reason: str | None = None
    reason: str | None = None
    provider_data: dict[str, Any] | None = None

    def tool_calls(self) -> list[dict[str, Any]]:
        return [self.calls[i] for i in sorted(self.calls)]

    def comparable(self) -> tuple[Any, ...]:
        # Synthesised ids are random per call, so compare them by shape only.
        calls = [
            {**c, "id": c["id"] if not c["id"].startswith("call_") else "call_*"}
            for c in self.tool_calls()
        ]
        return (self.text, calls, self.usage, self.raw_reason, self.reason, self.provider_data)

    def assistant_message(self) -> Message:
        calls = [
            ToolCall(
                id=c["id"],
                name=c["name"],
                arguments=json.loads(c["arguments"] or "{}"),
                raw_arguments=c["arguments"],
            )
            for c in self.tool_calls()
        ]
        return Message(
            role="assistant",
            content=self.text,
            tool_calls=calls,
            provider_data=self.provider_data,
        )


def assemble(events: list[StreamEvent]) -> Assembled:
    out = Assembled()
    for event in events:
        if isinstance(event, TextDelta):
            out.text += event.text
            out.text_pieces += 1
        elif isinstance(event, ToolCallDelta):
            assert event.index not in out.calls, "Gemini calls arrive whole, once each"
            out.calls[event.index] = {
                "id": event.id,
                "name": event.name,
                "arguments": event.arguments,
            }
        elif isinstance(event, UsageEvent):
            out.usage = event.usage
        elif isinstance(event, FinishEvent):
            out.raw_reason, out.reason = event.raw_reason, event.reason
        elif isinstance(event, ProviderDataEvent):
            out.provider_data = {**(out.provider_data or {}), **event.data}
    return out


WEATHER = ToolSpec(
    name="weather",
    description="Get the weather.",
    parameters={
        "type": "object",
        "properties": {"city": {"$ref": "#/$defs/City"}},
        "required": ["city"],
        "additionalProperties": False,
        "$defs": {"City": {"type": "object", "properties": {"name": {"type": "string"}}}},
    },
)
NOW = ToolSpec(name="now", description="", parameters={"type": "object", "properties": {}})
