"""Anthropic Messages API (``POST /v1/messages``).

The wire work is split into I/O-free pieces that are tested on their own:

* :func:`build_request_body` turns a :class:`~agentrt.messages.TurnRequest` into the JSON
  body: system messages become the top-level ``system``, assistant tool calls become
  ``tool_use`` blocks, and consecutive tool results become one user message of
  ``tool_result`` blocks (error results marked ``is_error``).
* :class:`StreamParser` turns the SSE events of one streamed message into agentrt events.
* :func:`events_from_message` does the same for a non-streamed message, so that both modes
  assemble into the identical result.

Decisions worth knowing:

* ``ToolCallDelta.index`` counts ``tool_use`` blocks (0, 1, 2, ...), not content blocks,
  so a text block before a tool call does not shift it. Server-side tool blocks
  (``server_tool_use``) are not client tool calls and never become ``ToolCallDelta``.
* Usage: ``message_start`` carries the input tokens and ``message_delta`` the output
  tokens; ``message_delta`` counts are cumulative, so they replace, never add.
  ``input_tokens`` of :class:`~agentrt.messages.Usage` is the whole prompt: Anthropic's
  ``input_tokens`` plus ``cache_creation_input_tokens`` plus ``cache_read_input_tokens``
  (Anthropic counts cached prompt tokens apart from ``input_tokens``).
* Finish reasons: ``end_turn``, ``stop_sequence`` and ``pause_turn`` normalise to
  ``stop``; ``tool_use`` to ``tool_calls``; ``max_tokens`` and
  ``model_context_window_exceeded`` to ``length``; ``refusal`` to ``content_filter``.
  ``pause_turn`` (a long server-tool turn paused by the API) ends the chain like ``stop``;
  callers who want to resume it find ``"pause_turn"`` in ``raw_finish_reason`` and the
  paused content in ``provider_data``. An unknown reason normalises to ``tool_calls`` when
  the turn has tool calls, else ``stop``.
* Replay: when a turn holds content a plain message cannot express (``thinking`` blocks
  with their signatures, ``redacted_thinking``, server tool blocks, citations), its raw
  content blocks are kept in ``provider_data["anthropic"]["content"]`` and sent back
  verbatim in later requests, as the API requires. Plain text and tool-call turns are
  rebuilt from ``content`` and ``tool_calls`` instead, so edits to history are honoured.
* An ``error`` event after HTTP 200 (e.g. ``overloaded_error``) raises the exception of
  the matching HTTP status (``overloaded_error`` -> 529 ``ServerError``). A stream that
  ends without ``message_stop`` raises ``APIConnectionError`` saying what arrived.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from .._sse import SSEEvent
from ..errors import APIConnectionError, ProviderError
from ..messages import (
    FinishEvent,
    FinishReason,
    Message,
    ProviderDataEvent,
    StreamEvent,
    TextDelta,
    ToolCallDelta,
    TurnRequest,
    Usage,
    UsageEvent,
)
from ..output import merge_body, request_fragment
from ._wire import (
    Codec,
    Encoded,
    dumps,
    error_for_status,
    event_json,
    generation_items,
    tool_store,
)

__all__ = [
    "ANTHROPIC_VERSION",
    "DEFAULT_MAX_TOKENS",
    "AnthropicCodec",
    "AnthropicDecoder",
    "build_request_body",
    "events_from_message",
    "normalise_stop_reason",
    "status_for_error_type",
]

#: The API version every request pins (header ``anthropic-version``).
ANTHROPIC_VERSION = "2023-06-01"
#: ``max_tokens`` is required by the API; used when the options give none.
DEFAULT_MAX_TOKENS = 4096
MESSAGES_PATH = "/v1/messages"
PROVIDER = "anthropic"

_STOP_REASONS: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "tool_use": "tool_calls",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "refusal": "content_filter",
}

_ERROR_STATUS: dict[str, int] = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}

#: Option names agentrt accepts that the Messages API spells differently.
_OPTION_NAMES = {"stop": "stop_sequences"}

#: Content blocks rebuilt from a plain ``Message``; any other type needs verbatim replay.
_PLAIN_BLOCKS = frozenset({"text", "tool_use"})


def normalise_stop_reason(raw: str | None, *, has_tool_calls: bool) -> FinishReason:
    """Map Anthropic's ``stop_reason`` to agentrt's normalised finish reason.

    Args:
        raw: the ``stop_reason`` as sent, or ``None`` if none arrived.
        has_tool_calls: whether the turn produced tool calls (decides unknown reasons).

    Returns:
        One of ``"stop"``, ``"tool_calls"``, ``"length"``, ``"content_filter"``.
    """
    if raw is not None and raw in _STOP_REASONS:
        return _STOP_REASONS[raw]
    return "tool_calls" if has_tool_calls else "stop"


def status_for_error_type(error_type: str | None) -> int:
    """Return the HTTP status Anthropic documents for an error ``type``.

    Unknown types inside a stream count as server failures (500).
    """
    return _ERROR_STATUS.get(error_type or "", 500)


# --- request ------------------------------------------------------------------------------


def build_request_body(
    model: str, request: TurnRequest, *, stream: bool, cache: dict[Any, Any] | None = None
) -> dict[str, Any]:
    """Build the JSON body of ``POST /v1/messages``.

    Args:
        model: the model name (without the ``anthropic:`` prefix).
        request: the conversation, tools and options of this turn.
        stream: ask for server-sent events.
        cache: lives as long as the chain: the tool declarations' JSON is kept there.

    Returns:
        The request body. ``max_tokens`` defaults to :data:`DEFAULT_MAX_TOKENS`; option
        ``stop`` becomes ``stop_sequences``; other options pass through unchanged.
    """
    system_parts = [request.system] if request.system else []
    messages: list[dict[str, Any]] = []
    for message in request.messages:
        if message.role == "system":
            if message.content:
                system_parts.append(message.content)
        elif message.role == "user":
            _append(messages, "user", [{"type": "text", "text": message.content}])
        elif message.role == "assistant":
            blocks = _assistant_blocks(message)
            if blocks:  # the API rejects an assistant turn with no content
                _append(messages, "assistant", blocks)
        else:
            _append(messages, "user", [_tool_result_block(message)])

    body: dict[str, Any] = {"model": model, "max_tokens": DEFAULT_MAX_TOKENS}
    if system_parts:
        body["system"] = "\n\n".join(system_parts)
    body["messages"] = messages
    if request.tools:
        body["tools"] = _tools(request, cache)
    for key, value in generation_items(request.options):
        if value is None:
            continue
        if key == "stop" and isinstance(value, str):
            value = [value]
        body[_OPTION_NAMES.get(key, key)] = value
    if request.output is not None or request.tool_choice or request.parallel_tool_calls is not None:
        merge_body(body, request_fragment("anthropic", request))
    if stream:
        body["stream"] = True
    return body


def _tools(request: TurnRequest, cache: dict[Any, Any] | None) -> Any:
    tools = [
        {"name": t.name, "description": t.description, "input_schema": t.parameters}
        if t.description
        else {"name": t.name, "input_schema": t.parameters}
        for t in request.tools
    ]
    if cache is None:
        return tools
    # Encoded once per model (the store its chains share) while the declarations are
    # equal: a schema may be edited in place, so the entry holds a copy to compare with.
    store = tool_store(cache)
    key = ("anthropic tools", *[(t.name, t.description, id(t.parameters)) for t in request.tools])
    entry = store.get(key)
    if entry is not None and entry[0] == tools:
        return entry[1]
    encoded = Encoded(dumps(tools))
    store[key] = (json.loads(encoded.text), encoded, [t.parameters for t in request.tools])
    return encoded


def _append(messages: list[dict[str, Any]], role: str, blocks: list[dict[str, Any]]) -> None:
    # Consecutive messages of one role become one message: all tool results answering one
    # assistant turn must sit in the single user message that follows it.
    if messages and messages[-1]["role"] == role:
        previous = messages[-1]
        if isinstance(previous["content"], str):
            previous["content"] = [{"type": "text", "text": previous["content"]}]
        previous["content"].extend(blocks)
    elif role == "user" and len(blocks) == 1 and blocks[0]["type"] == "text":
        messages.append({"role": role, "content": blocks[0]["text"]})
    else:
        messages.append({"role": role, "content": blocks})


def _assistant_blocks(message: Message) -> list[dict[str, Any]]:
    kept = (message.provider_data or {}).get(PROVIDER)
    if isinstance(kept, dict) and isinstance(kept.get("content"), list):
        return list(kept["content"])
    blocks: list[dict[str, Any]] = []
    if message.content:
        blocks.append({"type": "text", "text": message.content})
    blocks.extend(
        {"type": "tool_use", "id": call.id, "name": call.name, "input": call.arguments or {}}
        for call in message.tool_calls
    )
    return blocks


def _tool_result_block(message: Message) -> dict[str, Any]:
    block: dict[str, Any] = {
        "type": "tool_result",
        "tool_use_id": message.tool_call_id or "",
        "content": message.content,
    }
    if message.is_error:
        block["is_error"] = True
    return block


# --- response -----------------------------------------------------------------------------


def _usage(fields: dict[str, Any]) -> Usage:
    prompt = sum(
        int(fields.get(key) or 0)
        for key in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
    )
    read, written = fields.get("cache_read_input_tokens"), fields.get("cache_creation_input_tokens")
    return Usage.of(
        prompt,
        int(fields.get("output_tokens") or 0),
        cache_read_input_tokens=read if type(read) is int else None,
        cache_creation_input_tokens=written if type(written) is int else None,
    )


def _needs_verbatim_replay(blocks: Iterable[dict[str, Any]]) -> bool:
    return any(b.get("type") not in _PLAIN_BLOCKS or b.get("citations") for b in blocks)


def _tool_input(raw: str) -> Any:
    # The kept block must hold an object; malformed JSON is already reported through
    # ``raw_arguments``, so the replayed block carries an empty input.
    try:
        value = json.loads(raw) if raw.strip() else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _finish_events(
    blocks: list[dict[str, Any]], stop_reason: str | None, tool_calls: int
) -> list[StreamEvent]:
    events: list[StreamEvent] = []
    if _needs_verbatim_replay(blocks):
        events.append(ProviderDataEvent({PROVIDER: {"content": blocks}}))
    reason = normalise_stop_reason(stop_reason, has_tool_calls=tool_calls > 0)
    events.append(FinishEvent(raw_reason=stop_reason, reason=reason))
    return events


def events_from_message(message: dict[str, Any]) -> list[StreamEvent]:
    """Translate a non-streamed Messages API response into agentrt events.

    The events assemble into the same result as :class:`StreamParser` gives for the
    streamed form of the same message.

    Args:
        message: the decoded JSON response (``"type": "message"``).

    Returns:
        Usage (when reported), text and tool-call events in content order, provider data
        (when the turn needs verbatim replay) and the finish event.
    """
    events: list[StreamEvent] = []
    usage = message.get("usage")
    if isinstance(usage, dict):
        events.append(UsageEvent(_usage(usage)))
    blocks: list[dict[str, Any]] = message.get("content") or []
    tool_calls = 0
    for block in blocks:
        kind = block.get("type")
        if kind == "text" and block.get("text"):
            events.append(TextDelta(block["text"]))
        elif kind == "tool_use":
            raw_input = block.get("input")
            # A string input is not valid API output, but test servers use it to send
            # malformed arguments; keep it as the raw text the model produced.
            arguments = raw_input if isinstance(raw_input, str) else json.dumps(raw_input or {})
            events.append(
                ToolCallDelta(
                    index=tool_calls,
                    id=block.get("id"),
                    name=block.get("name"),
                    arguments=arguments,
                )
            )
            tool_calls += 1
    events.extend(_finish_events(blocks, message.get("stop_reason"), tool_calls))
    return events


class _Block:
    """One content block being streamed, kept so the turn can be replayed verbatim."""

    __slots__ = ("data", "parts", "tool_index", "tool_sent")

    def __init__(self, data: dict[str, Any], tool_index: int | None) -> None:
        self.data = data
        #: Text, thinking or partial JSON pieces, joined at ``content_block_stop``.
        self.parts: list[str] = []
        self.tool_index = tool_index
        #: Whether any non-empty arguments fragment of this tool call was yielded.
        self.tool_sent = False

    def close(self) -> None:
        kind = self.data.get("type")
        if kind == "text":
            self.data["text"] = self.data.get("text", "") + "".join(self.parts)
        elif kind == "thinking":
            self.data["thinking"] = self.data.get("thinking", "") + "".join(self.parts)
        elif self.parts or "input" not in self.data:  # tool_use, server_tool_use, ...
            self.data["input"] = _tool_input("".join(self.parts))
        self.parts = []


class AnthropicDecoder:
    """Turn the SSE events of one streamed message into agentrt events.

    :meth:`feed` takes each SSE event (:meth:`feed_data` its decoded JSON); :meth:`close`
    checks the stream ended with ``message_stop``. No I/O; an ``error`` event raises the
    exception of its status (``overloaded_error`` is a 529 ``ServerError``, ...).
    """

    def __init__(self) -> None:
        self._blocks: dict[int, _Block] = {}
        self._usage: dict[str, Any] | None = None
        self._stop_reason: str | None = None
        self._tool_calls = 0
        self._text_chars = 0
        self.done = False

    def feed(self, event: SSEEvent) -> list[StreamEvent]:
        """Consume one SSE event and return the agentrt events it produces."""
        return self.feed_data(event_json(event.data), event.event)

    def feed_data(self, data: dict[str, Any], event: str | None = None) -> list[StreamEvent]:
        """Consume one SSE event's decoded JSON and return the agentrt events it produces.

        Args:
            data: the event's decoded ``data`` JSON.
            event: the SSE ``event:`` name; ``data["type"]`` wins when both are present.

        Raises:
            ProviderError: the stream carried an ``error`` event.
        """
        kind = data.get("type") or event
        if self.done:
            return []
        if kind == "content_block_delta":
            return self._delta(data)
        if kind == "content_block_start":
            return self._start(data)
        if kind == "content_block_stop":
            return self._stop(data)
        if kind == "message_start":
            usage = (data.get("message") or {}).get("usage")
            if isinstance(usage, dict):
                self._usage = dict(usage)
                return [UsageEvent(_usage(self._usage))]
            return []
        if kind == "message_delta":
            return self._message_delta(data)
        if kind == "message_stop":
            self.done = True
            blocks = [self._blocks[i].data for i in sorted(self._blocks)]
            return _finish_events(blocks, self._stop_reason, self._tool_calls)
        if kind == "error":
            raise self._error(data)
        return []  # ping, and event types added after this was written

    def close(self) -> list[StreamEvent]:
        """Check that the stream ended properly (its events came with ``message_stop``).

        Raises:
            APIConnectionError: the stream ended before ``message_stop``.
        """
        if not self.done:
            raise APIConnectionError(
                "the stream ended before message_stop; the answer is incomplete "
                f"(received {self._text_chars} characters of text and "
                f"{self._tool_calls} tool call(s))",
                provider=PROVIDER,
            )
        return []

    def _start(self, data: dict[str, Any]) -> list[StreamEvent]:
        content = dict(data.get("content_block") or {})
        tool_index = None
        events: list[StreamEvent] = []
        if content.get("type") == "tool_use":
            tool_index = self._tool_calls
            self._tool_calls += 1
            events.append(
                ToolCallDelta(index=tool_index, id=content.get("id"), name=content.get("name"))
            )
        elif content.get("type") == "text" and content.get("text"):
            self._text_chars += len(content["text"])
            events.append(TextDelta(content["text"]))
        self._blocks[int(data.get("index", len(self._blocks)))] = _Block(content, tool_index)
        return events

    def _delta(self, data: dict[str, Any]) -> list[StreamEvent]:
        block = self._blocks.get(int(data.get("index", -1)))
        delta = data.get("delta") or {}
        if block is None:
            return []
        kind = delta.get("type")
        if kind == "text_delta":
            text = delta.get("text", "")
            block.parts.append(text)
            self._text_chars += len(text)
            return [TextDelta(text)] if text else []
        if kind == "input_json_delta":
            fragment = delta.get("partial_json", "")
            block.parts.append(fragment)
            if block.tool_index is not None and fragment:
                block.tool_sent = True
                return [ToolCallDelta(index=block.tool_index, arguments=fragment)]
        elif kind == "thinking_delta":
            block.parts.append(delta.get("thinking", ""))
        elif kind == "signature_delta":
            block.data["signature"] = delta.get("signature", "")
        elif kind == "citations_delta":
            block.data.setdefault("citations", []).append(delta.get("citation"))
        return []

    def _stop(self, data: dict[str, Any]) -> list[StreamEvent]:
        block = self._blocks.get(int(data.get("index", -1)))
        if block is None:
            return []
        block.close()
        if block.tool_index is not None and not block.tool_sent:
            # No arguments streamed: the input given at block start, or an empty object.
            start_input = block.data.get("input")
            arguments = json.dumps(start_input) if start_input else "{}"
            return [ToolCallDelta(index=block.tool_index, arguments=arguments)]
        return []

    def _message_delta(self, data: dict[str, Any]) -> list[StreamEvent]:
        stop_reason = (data.get("delta") or {}).get("stop_reason")
        if stop_reason is not None:
            self._stop_reason = stop_reason
        usage = data.get("usage")
        if not isinstance(usage, dict):
            return []
        # Counts here are running totals for the message: replace, never add.
        merged = self._usage or {}
        merged.update({k: v for k, v in usage.items() if v is not None})
        self._usage = merged
        return [UsageEvent(_usage(merged))]

    def _error(self, data: dict[str, Any]) -> ProviderError:
        error = data.get("error") or {}
        status = status_for_error_type(error.get("type"))
        message = str(error.get("message") or error.get("type") or "error event in stream")
        request_id = data.get("request_id")
        return error_for_status(
            status, message, provider=PROVIDER, request_id=request_id, body=json.dumps(data)
        )


class AnthropicCodec(Codec):
    """Claude models through the Messages API: the ``anthropic:<model>`` codec.

    ``base_url`` is taken as the official SDK takes it (default
    ``https://api.anthropic.com``, or ``ANTHROPIC_BASE_URL``); ``/v1/messages`` is appended.
    """

    name: ClassVar[str] = PROVIDER
    env_key: ClassVar[str] = "ANTHROPIC_API_KEY"
    default_base_url: ClassVar[str] = "https://api.anthropic.com"
    env_base_url: ClassVar[str | None] = "ANTHROPIC_BASE_URL"
    generation_options: ClassVar[frozenset[str]] = frozenset(
        {
            "max_tokens",
            "temperature",
            "top_p",
            "top_k",
            "stop",
            "stop_sequences",
            "metadata",
            "tool_choice",
            "thinking",
            "service_tier",
        }
    )

    def route(self, model_name: str, *, stream: bool) -> tuple[str, dict[str, str] | None]:
        """Streamed or not, ``/v1/messages``."""
        return MESSAGES_PATH, None

    def auth_headers(self, key: str) -> dict[str, str]:
        """The key and version headers every request carries."""
        return {"x-api-key": key, "anthropic-version": ANTHROPIC_VERSION}

    def request_id(self, headers: Mapping[str, str]) -> str | None:
        """Anthropic's id of the request (header ``request-id``)."""
        return headers.get("request-id") or headers.get("x-request-id")

    def request_body(
        self, model_name: str, request: TurnRequest, *, stream: bool, cache: dict[Any, Any]
    ) -> dict[str, Any]:
        """The Messages API body (see :func:`build_request_body`)."""
        return build_request_body(model_name, request, stream=stream, cache=cache)

    def decoder(self) -> AnthropicDecoder:
        """A decoder of one streamed message."""
        return AnthropicDecoder()

    def events_from_body(self, payload: Any) -> list[StreamEvent]:
        """The events of a whole ``message`` object (or the error it reports)."""
        if not isinstance(payload, dict):
            raise TypeError(f"the answer is a JSON {type(payload).__name__}, not an object")
        if payload.get("type") == "error":
            AnthropicDecoder().feed_data(payload, "error")  # raises the error
        return events_from_message(payload)
