"""Shared helpers of the Anthropic provider tests: assemble events as the core would."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agentrt.messages import (
    FinishEvent,
    Message,
    ProviderDataEvent,
    StreamEvent,
    TextDelta,
    ToolCallDelta,
    TurnRequest,
    Usage,
    UsageEvent,
)


@dataclass
class Assembled:
    """What the core would build from one turn's events."""

    text: str = ""
    text_pieces: int = 0
    calls: dict[int, dict[str, Any]] = field(default_factory=dict)
    arg_fragments: dict[int, int] = field(default_factory=dict)
    usage: Usage | None = None
    raw_reason: str | None = None
    reason: str | None = None
    provider_data: dict[str, Any] | None = None

    def tool_calls(self) -> list[dict[str, Any]]:
        return [self.calls[i] for i in sorted(self.calls)]

    def comparable(self) -> tuple[Any, ...]:
        return (
            self.text,
            self.tool_calls(),
            self.usage,
            self.raw_reason,
            self.reason,
            self.provider_data,
        )


def assemble(events: list[StreamEvent]) -> Assembled:
    out = Assembled()
    for event in events:
        if isinstance(event, TextDelta):
            out.text += event.text
            out.text_pieces += 1
        elif isinstance(event, ToolCallDelta):
            call = out.calls.setdefault(event.index, {"id": None, "name": None, "arguments": ""})
            call["id"] = call["id"] or event.id
            call["name"] = call["name"] or event.name
            call["arguments"] += event.arguments
            if event.arguments:
                out.arg_fragments[event.index] = out.arg_fragments.get(event.index, 0) + 1
        elif isinstance(event, UsageEvent):
            out.usage = event.usage
        elif isinstance(event, FinishEvent):
            out.raw_reason, out.reason = event.raw_reason, event.reason
        elif isinstance(event, ProviderDataEvent):
            out.provider_data = {**(out.provider_data or {}), **event.data}
    return out


def request(*messages: Message, **kwargs: Any) -> TurnRequest:
    return TurnRequest(messages=list(messages) or [Message(role="user", content="hi")], **kwargs)
