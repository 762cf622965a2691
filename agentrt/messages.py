"""The data agentrt passes around: messages, tool calls and results, usage, chunks, stream events.

Public types are pydantic models. The stream events that providers yield to the core are
slotted dataclasses: they are created once per network chunk and never leave the runtime,
so they skip validation on the hot path.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "FinishEvent",
    "FinishReason",
    "Message",
    "ProviderDataEvent",
    "Role",
    "StreamChunk",
    "StreamEvent",
    "TextDelta",
    "ToolCall",
    "ToolCallDelta",
    "ToolOutput",
    "ToolResult",
    "ToolSpec",
    "TurnRequest",
    "Usage",
    "UsageEvent",
]

Role = Literal["system", "user", "assistant", "tool"]
FinishReason = Literal["stop", "tool_calls", "length", "content_filter"]


class Usage(BaseModel):
    """Token counts of one response, or a sum of several (usages add with ``+``).

    ``input_tokens`` includes cached input and ``output_tokens`` includes reasoning; the
    detail counts say how much of each, and are ``None`` when the provider reported none.
    """

    model_config = ConfigDict(frozen=True)

    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    #: Input tokens read from the provider's prompt cache (part of ``input_tokens``).
    cache_read_input_tokens: int | None = None
    #: Input tokens written to the provider's prompt cache (part of ``input_tokens``).
    cache_creation_input_tokens: int | None = None
    #: Output tokens spent on reasoning / thinking (part of ``output_tokens``).
    reasoning_output_tokens: int | None = None

    def __add__(self, other: Usage) -> Usage:
        if not isinstance(other, Usage):
            return NotImplemented
        total = Usage.of(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.total_tokens + other.total_tokens,
        )
        details = {
            name: _add_optional(getattr(self, name), getattr(other, name))
            for name in _DETAILS
            if getattr(self, name) is not None or getattr(other, name) is not None
        }
        return total.model_copy(update=details) if details else total

    def __radd__(self, other: object) -> Usage:
        # Lets ``sum(usages)`` start from 0.
        if other == 0:
            return self
        return NotImplemented

    def __repr_args__(self) -> Any:
        # The detail counts only when reported: "input_tokens=3 output_tokens=5 ...".
        return [(k, v) for k, v in super().__repr_args__() if v is not None]

    @classmethod
    def of(
        cls,
        input_tokens: int,
        output_tokens: int,
        total_tokens: int | None = None,
        **details: int | None,
    ) -> Usage:
        """Build a usage, deriving ``total_tokens`` when the provider did not send it.

        ``details``: ``cache_read_input_tokens``, ``cache_creation_input_tokens``,
        ``reasoning_output_tokens`` (a ``None`` or missing one was not reported).
        """
        if total_tokens is None:
            total_tokens = input_tokens + output_tokens
        reported = {k: v for k, v in details.items() if v is not None} if details else details
        if type(input_tokens) is int and type(output_tokens) is int and type(total_tokens) is int:
            # Validating plain ints (which keeps them as they are) is cheaper than
            # model_construct; anything else a provider sent is kept unvalidated, as before.
            return cls(
                input_tokens=input_tokens,
                output_tokens=output_tokens,
                total_tokens=total_tokens,
                **reported,
            )
        values: dict[str, Any] = {
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "total_tokens": total_tokens,
            **reported,
        }
        return cls.model_construct(**values)


_DETAILS = ("cache_read_input_tokens", "cache_creation_input_tokens", "reasoning_output_tokens")


def _add_optional(a: int | None, b: int | None) -> int:
    return (a or 0) + (b or 0)


class ToolCall(BaseModel):
    """A tool call the model asked for.

    ``arguments`` is the parsed JSON object, ``{}`` when the model sent none, and ``None``
    when ``raw_arguments`` is not a JSON object (the chain answers the model with the error).
    """

    id: str
    name: str
    arguments: dict[str, Any] | None
    raw_arguments: str = ""


class ToolResult(BaseModel):
    """The outcome of one tool call, as sent back to the model."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    tool_call_id: str
    name: str
    content: str
    is_error: bool = False
    duration: float = 0.0
    #: JSON-able data for the application beside ``content`` (e.g. MCP structuredContent).
    structured: Any = None
    #: Image and audio content the tool gave (``{"type", "mimeType", "data"}``), e.g. an MCP
    #: server's; kept for the application, not sent to the model as text.
    media: list[dict[str, Any]] = Field(default_factory=list)
    #: The exception class name when the call failed, e.g. ``"ValueError"``.
    error_type: str | None = None
    #: The exception behind an error result; kept for callers, never serialised.
    error: BaseException | None = Field(default=None, exclude=True, repr=False)


@dataclass(frozen=True)
class ToolOutput:
    """What a tool may return to give the model one text and the application more.

    A tool returning a ``ToolOutput`` sends ``content`` to the model (capped like any
    result); ``structured`` and ``media`` land on its :class:`ToolResult` for callbacks and
    the application. MCP tools return one (``structuredContent``, images, audio).

    Attributes:
        content: the text the model reads.
        structured: JSON-able data for the application.
        media: image and audio content blocks (``{"type", "mimeType", "data"}``).
    """

    content: str
    structured: Any = None
    media: tuple[dict[str, Any], ...] = ()


class Message(BaseModel):
    """One message of a conversation.

    Assistant messages carry ``tool_calls``; tool messages carry ``tool_call_id``, ``name``
    and ``is_error``. ``provider_data`` keeps provider-specific fields of an assistant turn
    (such as Gemini's ``thoughtSignature``) so that history replays verbatim.
    """

    role: Role
    content: str = ""
    tool_calls: list[ToolCall] = Field(default_factory=list)
    tool_call_id: str | None = None
    name: str | None = None
    is_error: bool = False
    provider_data: dict[str, Any] | None = None


class StreamChunk(BaseModel):
    """A piece of streamed text, with the turn (0-based) it belongs to.

    With ``output_type=``, ``partial_output`` holds the best-effort partial JSON value of
    the answer streamed so far (dicts and lists, not yet validated), for progressive UIs.
    """

    content: str
    finish_reason: str | None = None
    turn: int = 0
    partial_output: Any = None


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """What a provider needs to declare a tool: name, description, JSON Schema."""

    name: str
    description: str
    parameters: dict[str, Any]
    #: Ask the provider to hold the arguments to ``parameters`` exactly (OpenAI
    #: ``strict: true``); set for the final-result tool of ``output_mode="tool"``.
    strict: bool = False


@dataclass(slots=True)
class TurnRequest:
    """Everything a provider needs for one model call."""

    messages: list[Message]
    system: str | None = None
    tools: list[ToolSpec] = field(default_factory=list)
    #: Generation options passed through to the provider (temperature, max_tokens, ...);
    #: ``extra_body`` (merged into the JSON body last) and ``extra_headers`` (added to the
    #: request) are applied by the HTTP driver.
    options: dict[str, Any] = field(default_factory=dict)
    #: An opaque object that lives as long as the chain (the chain passes the same one on
    #: every turn): providers keep what they derived from its messages (their JSON)
    #: under it, weakly referenced, so it goes with the chain. ``None``: nothing kept.
    #: (A ``dict`` is accepted as the cache itself, as older chains pass.)
    token: Any = field(default=None, repr=False, compare=False)
    #: ``on_retry(attempt, error, delay)``: called by the HTTP layer before each retry
    #: wait (set by the response when some handler defines ``on_retry``), or ``None``.
    on_retry: Callable[[int, BaseException, float], None] | None = field(
        default=None, repr=False, compare=False
    )
    #: The typed output asked for (``output_type=``): an ``agentrt.output.OutputRequest``.
    output: Any = None
    #: ``"auto"``, ``"required"``, ``"none"`` or a tool's name; ``None``: the default.
    tool_choice: str | None = None
    #: Whether the model may ask for several tool calls in one turn; ``None``: the default.
    parallel_tool_calls: bool | None = None


# --- events a provider yields for one turn -----------------------------------------------


@dataclass(slots=True)
class TextDelta:
    """Streamed text."""

    text: str


@dataclass(slots=True)
class ToolCallDelta:
    """A fragment of tool call number ``index`` of this turn.

    ``id`` and ``name`` are set on whichever fragments carry them; ``arguments`` fragments
    are concatenated in order.
    """

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass(slots=True)
class UsageEvent:
    """Usage so far for this turn; a later event replaces an earlier one."""

    usage: Usage


@dataclass(slots=True)
class FinishEvent:
    """Why the turn ended: the provider's raw value and its normalised form."""

    raw_reason: str | None
    reason: FinishReason | None


@dataclass(slots=True)
class ProviderDataEvent:
    """Provider-specific fields to keep on the assistant message (merged key by key)."""

    data: dict[str, Any]


StreamEvent = TextDelta | ToolCallDelta | UsageEvent | FinishEvent | ProviderDataEvent
