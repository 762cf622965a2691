"""The I/O-free fold of one turn's events into its result.

:class:`TurnState` takes the normalised events a provider yields
(:data:`~agentrt.messages.StreamEvent`) one at a time and keeps what they add up to: the
text, the tool calls (assembled from their fragments), the finish reason, the usage and
the provider-specific data. It does no I/O and knows nothing of callbacks, so
``AsyncResponse`` drives it and tests fold recorded events with it directly.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

from .messages import (
    FinishEvent,
    FinishReason,
    Message,
    ProviderDataEvent,
    StreamEvent,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    Usage,
    UsageEvent,
)

__all__ = ["ToolCallAssembler", "TurnState", "fold", "normalise_finish", "parse_arguments"]


def parse_arguments(raw: str) -> dict[str, Any] | None:
    """Parse a tool call's raw arguments: ``{}`` when empty, ``None`` unless a JSON object.

    ``NaN``, ``Infinity`` and numbers too large for a float are not JSON: Python's parser
    accepts them, but a history holding them could not be sent to a provider again.
    """
    if not raw or raw.isspace():
        return {}
    if raw[0] == "{" and raw[-1] == "}":  # the usual case: one object, no whitespace around
        try:
            value, end = _scan_once(raw, 0)
        except (StopIteration, ValueError):
            pass  # decoded again below, which says what is wrong
        else:
            if end == len(raw) and type(value) is dict:
                return value
    try:
        value = _arguments_decoder.decode(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _finite_float(text: str) -> float:
    value = float(text)
    if value - value != 0.0:  # inf - inf is nan
        raise ValueError(f"number out of range: {text}")
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


# Made once: json.loads with these options would build a decoder on every call.
_arguments_decoder = json.JSONDecoder(parse_float=_finite_float, parse_constant=_no_constant)
# The decoder's scanner (made by JSONDecoder.__init__; typeshed does not declare it).
_scan_once: Callable[[str, int], tuple[Any, int]] = _arguments_decoder.scan_once  # type: ignore[attr-defined]


class ToolCallAssembler:
    """Collects ``ToolCallDelta`` fragments into complete tool calls, grouped by index."""

    __slots__ = ("_calls",)

    def __init__(self) -> None:
        self._calls: dict[int, list[Any]] = {}

    def add(self, delta: ToolCallDelta) -> None:
        """Add one fragment; ``id`` and ``name`` are taken from the first fragment with them."""
        entry = self._calls.get(delta.index)
        if entry is None:
            entry = self._calls[delta.index] = [delta.id, delta.name, []]
        else:
            if delta.id and not entry[0]:
                entry[0] = delta.id
            if delta.name and not entry[1]:
                entry[1] = delta.name
        if delta.arguments:
            entry[2].append(delta.arguments)

    def calls(self) -> list[ToolCall]:
        """Return the assembled calls in index order, synthesising missing ids."""
        result = []
        for index in sorted(self._calls):
            call_id, name, parts = self._calls[index]
            raw = "".join(parts)
            result.append(
                ToolCall(
                    id=call_id or f"call_{uuid.uuid4().hex[:24]}",
                    name=name or "",
                    arguments=parse_arguments(raw),
                    raw_arguments=raw,
                )
            )
        return result


def normalise_finish(reason: FinishReason | None, has_calls: bool) -> FinishReason:
    """The finish reason of a finished turn: ``tool_calls`` when it made calls."""
    if has_calls and reason in (None, "stop"):
        return "tool_calls"
    if reason is None:
        return "stop"
    return reason


class TurnState:
    """What one turn's events add up to so far.

    Feed it every event with :meth:`feed`, then call :meth:`finish` once the provider's
    stream ended. Attributes are readable at any time (``text`` is the text so far).

    Attributes:
        text_parts: the text deltas received, in order.
        tool_calls: the assembled calls (set by :meth:`finish`).
        finish_reason: the normalised reason (final after :meth:`finish`).
        raw_finish_reason: the provider's own value.
        usage: the last usage reported, or ``None``.
        provider_data: provider-specific fields, merged key by key, or ``None``.
    """

    __slots__ = (
        "assembler",
        "finish_reason",
        "provider_data",
        "raw_finish_reason",
        "text_parts",
        "tool_calls",
        "usage",
    )

    def __init__(self) -> None:
        self.text_parts: list[str] = []
        self.assembler = ToolCallAssembler()
        self.tool_calls: list[ToolCall] = []
        self.finish_reason: FinishReason | None = None
        self.raw_finish_reason: str | None = None
        self.usage: Usage | None = None
        self.provider_data: dict[str, Any] | None = None

    def feed(self, event: StreamEvent) -> str | None:
        """Fold one event in; return its text when it is a non-empty text delta."""
        kind = type(event)
        if kind is TextDelta:
            text: str = event.text  # type: ignore[union-attr]
            if text:
                self.text_parts.append(text)
                return text
        elif kind is ToolCallDelta:
            self.assembler.add(event)  # type: ignore[arg-type]
        elif kind is UsageEvent:
            self.usage = event.usage  # type: ignore[union-attr]
        elif kind is FinishEvent:
            self.raw_finish_reason = event.raw_reason  # type: ignore[union-attr]
            self.finish_reason = event.reason  # type: ignore[union-attr]
        elif kind is ProviderDataEvent:
            self.provider_data = {**(self.provider_data or {}), **event.data}  # type: ignore[union-attr]
        return None

    def finish(self) -> None:
        """Assemble the tool calls and settle the finish reason (once the stream ended)."""
        self.tool_calls = self.assembler.calls()
        self.finish_reason = normalise_finish(self.finish_reason, bool(self.tool_calls))

    @property
    def text(self) -> str:
        """The text so far."""
        return "".join(self.text_parts)

    def message(self) -> Message:
        """The assistant message this turn adds to the conversation."""
        return Message(
            role="assistant",
            content=self.text,
            tool_calls=list(self.tool_calls),
            provider_data=self.provider_data,
        )


def fold(events: list[StreamEvent]) -> TurnState:
    """Fold a whole, finished turn's events (for tests and recorded traffic)."""
    state = TurnState()
    for event in events:
        state.feed(event)
    state.finish()
    return state
