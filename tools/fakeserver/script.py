"""Format-neutral description of what the fake server answers.

A test queues ``Turn`` and ``Fault`` items; each request to any endpoint takes the next one.
Each wire-format module (``openai_wire``, ``anthropic_wire``, ``gemini_wire``) renders a
``Turn`` into its own JSON body or SSE events.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

NeutralFinish = Literal["stop", "tool_calls", "length", "content_filter"]


@dataclass
class ScriptedToolCall:
    name: str
    #: Raw JSON text of the arguments, sent as-is (may be malformed on purpose).
    arguments: str = "{}"
    id: str | None = None


@dataclass
class Turn:
    """One model answer."""

    text: str = ""
    tool_calls: list[ScriptedToolCall] = field(default_factory=list)
    #: Neutral finish reason; None means "tool_calls" if there are tool calls, else "stop".
    finish_reason: NeutralFinish | None = None
    #: (input_tokens, output_tokens), or None to report no usage at all.
    usage: tuple[int, int] | None = (10, 5)
    #: Streamed text is cut into pieces of this many characters.
    text_chunk_chars: int = 4
    #: Each tool call's arguments are streamed in this many fragments (where the format
    #: streams them).
    arg_fragments: int = 3
    #: Optional extra provider-specific fields (e.g. Gemini thoughtSignature) a wire module
    #: may use.
    extra: dict[str, object] = field(default_factory=dict)


@dataclass
class Fault:
    """Something going wrong with one request."""

    #: Answer with this HTTP status and the format's error body instead of a turn.
    status: int | None = None
    message: str = "injected failure"
    headers: dict[str, str] = field(default_factory=dict)
    #: Raw body to send instead of the format's JSON error body (e.g. a non-JSON HTML page).
    raw_body: bytes | None = None
    #: For a streamed turn: close the connection after this many bytes of the body.
    drop_after_bytes: int | None = None
    #: For a streamed turn: emit a provider error event after the first events (mid-stream error).
    error_event: bool = False
    #: The turn to stream when the fault is mid-stream (drop/error_event/split).
    turn: Turn | None = None
    #: Write the body in writes of this many bytes, flushing between them.
    split_bytes: int | None = None
    #: Seconds to wait before answering (read-timeout tests).
    delay: float = 0.0
    #: For a streamed request: send these bytes as the whole SSE body (HTTP 200,
    #: ``text/event-stream``) instead of the rendered turn, e.g. malformed events.
    #: ``split_bytes`` and ``drop_after_bytes`` still apply.
    raw_sse: bytes | None = None
    #: Read the request, then close the connection without sending a byte (a keep-alive
    #: connection the server dropped after the request reached it).
    close_without_answer: bool = False
    #: Send these bytes verbatim as the whole response (head included), then close the
    #: connection: malformed HTTP, a wrong content type, anything.
    raw_response: bytes | None = None
