"""The Anthropic Messages API wire format for the fake server (``POST /v1/messages``).

Streams follow the documented event flow: ``message_start`` (input usage), then for each
content block ``content_block_start`` / ``content_block_delta``... / ``content_block_stop``,
then ``message_delta`` (stop reason and *cumulative* output usage) and ``message_stop``,
with ``ping`` events in between as the real API sends them.

``Turn.extra`` keys understood here:

* ``stop_reason``: a raw Anthropic stop reason (``"stop_sequence"``, ``"pause_turn"``,
  ...) sent instead of the one derived from the neutral finish reason.
* ``stop_sequence``: the matched stop sequence to report (default ``"###"`` when the stop
  reason is ``stop_sequence``).
* ``thinking``: ``{"thinking": str, "signature": str}`` sends a thinking block first.
* ``cache_read_input_tokens`` / ``cache_creation_input_tokens``: extra usage fields.
* ``partial_usage``: send an early ``message_delta`` with part of the output tokens
  before the final one, as the API may (the counts are running totals).
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from .script import ScriptedToolCall, Turn

NAME = "anthropic"

_NEUTRAL_TO_RAW = {
    "stop": "end_turn",
    "tool_calls": "tool_use",
    "length": "max_tokens",
    "content_filter": "refusal",
}

_STATUS_TO_TYPE = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def is_stream(path: str, query: dict[str, str], body: dict[str, Any]) -> bool:
    """Whether the request asks for server-sent events (``"stream": true`` in the body)."""
    return bool(body.get("stream"))


def _stop_reason(turn: Turn) -> str:
    raw = turn.extra.get("stop_reason")
    if isinstance(raw, str):
        return raw
    neutral = turn.finish_reason or ("tool_calls" if turn.tool_calls else "stop")
    return _NEUTRAL_TO_RAW[neutral]


def _stop_sequence(turn: Turn) -> str | None:
    if _stop_reason(turn) != "stop_sequence":
        return None
    value = turn.extra.get("stop_sequence", "###")
    return str(value)


def _usage(turn: Turn, output_tokens: int | None = None) -> dict[str, Any] | None:
    if turn.usage is None:
        return None
    usage: dict[str, Any] = {
        "input_tokens": turn.usage[0],
        "output_tokens": turn.usage[1] if output_tokens is None else output_tokens,
    }
    for key in ("cache_creation_input_tokens", "cache_read_input_tokens"):
        if key in turn.extra:
            usage[key] = turn.extra[key]
    return usage


def _tool_id(call: ScriptedToolCall) -> str:
    return call.id or f"toolu_{uuid.uuid4().hex[:24]}"


def _tool_input(arguments: str) -> Any:
    # Malformed JSON cannot be an object; the non-streamed form sends it as a string so
    # that clients see the same raw text in both modes.
    if not arguments.strip():
        return {}
    try:
        return json.loads(arguments)
    except ValueError:
        return arguments


def _thinking_block(turn: Turn) -> dict[str, Any] | None:
    thinking = turn.extra.get("thinking")
    if not isinstance(thinking, dict):
        return None
    return {
        "type": "thinking",
        "thinking": str(thinking.get("thinking", "")),
        "signature": str(thinking.get("signature", "")),
    }


def render_json(turn: Turn, model: str) -> dict[str, Any]:
    """Render a turn as a non-streamed Messages API response."""
    content: list[dict[str, Any]] = []
    thinking = _thinking_block(turn)
    if thinking is not None:
        content.append(thinking)
    if turn.text:
        content.append({"type": "text", "text": turn.text})
    content.extend(
        {
            "type": "tool_use",
            "id": _tool_id(call),
            "name": call.name,
            "input": _tool_input(call.arguments),
        }
        for call in turn.tool_calls
    )
    body: dict[str, Any] = {
        "id": f"msg_{uuid.uuid4().hex[:24]}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": _stop_reason(turn),
        "stop_sequence": _stop_sequence(turn),
    }
    usage = _usage(turn)
    if usage is not None:
        body["usage"] = usage
    return body


def _event(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


def _ping() -> bytes:
    return _event("ping", {"type": "ping"})


def _pieces(text: str, count: int) -> list[str]:
    if not text:
        return []
    size = max(1, -(-len(text) // max(1, count)))
    return [text[i : i + size] for i in range(0, len(text), size)]


def render_sse(turn: Turn, model: str) -> list[bytes]:
    """Render a turn as the complete list of SSE events of a streamed response."""
    message: dict[str, Any] = {
        "id": f"msg_{uuid.uuid4().hex[:24]}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
    }
    # The real API reports one output token in message_start; the final count replaces it.
    start_usage = _usage(turn, output_tokens=1)
    if start_usage is not None:
        message["usage"] = start_usage
    events = [_event("message_start", {"type": "message_start", "message": message}), _ping()]

    index = 0
    thinking = _thinking_block(turn)
    if thinking is not None:
        events.append(_block_start(index, {"type": "thinking", "thinking": ""}))
        events.extend(
            _block_delta(index, {"type": "thinking_delta", "thinking": piece})
            for piece in _pieces(thinking["thinking"], 3)
        )
        events.append(
            _block_delta(index, {"type": "signature_delta", "signature": thinking["signature"]})
        )
        events.append(_block_stop(index))
        index += 1
    if turn.text:
        events.append(_block_start(index, {"type": "text", "text": ""}))
        size = max(1, turn.text_chunk_chars)
        events.extend(
            _block_delta(index, {"type": "text_delta", "text": turn.text[i : i + size]})
            for i in range(0, len(turn.text), size)
        )
        events.append(_block_stop(index))
        index += 1
    for call in turn.tool_calls:
        start = {"type": "tool_use", "id": _tool_id(call), "name": call.name, "input": {}}
        events.append(_block_start(index, start))
        # The API opens every tool_use block with an empty fragment.
        events.append(_block_delta(index, {"type": "input_json_delta", "partial_json": ""}))
        events.extend(
            _block_delta(index, {"type": "input_json_delta", "partial_json": piece})
            for piece in _pieces(call.arguments, turn.arg_fragments)
        )
        events.append(_block_stop(index))
        events.append(_ping())
        index += 1

    delta = {"stop_reason": _stop_reason(turn), "stop_sequence": _stop_sequence(turn)}
    if turn.usage is not None and turn.extra.get("partial_usage"):
        partial = {"output_tokens": max(1, turn.usage[1] // 2)}
        events.append(_event("message_delta", _message_delta(delta, partial)))
    final_usage = {"output_tokens": turn.usage[1]} if turn.usage is not None else None
    events.append(_event("message_delta", _message_delta(delta, final_usage)))
    events.append(_event("message_stop", {"type": "message_stop"}))
    return events


def _block_start(index: int, block: dict[str, Any]) -> bytes:
    return _event(
        "content_block_start",
        {"type": "content_block_start", "index": index, "content_block": block},
    )


def _block_delta(index: int, delta: dict[str, Any]) -> bytes:
    return _event(
        "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}
    )


def _block_stop(index: int) -> bytes:
    return _event("content_block_stop", {"type": "content_block_stop", "index": index})


def _message_delta(delta: dict[str, Any], usage: dict[str, Any] | None) -> dict[str, Any]:
    data: dict[str, Any] = {"type": "message_delta", "delta": dict(delta)}
    if usage is not None:
        data["usage"] = usage
    return data


def _error_type(status: int) -> str:
    if status in _STATUS_TO_TYPE:
        return _STATUS_TO_TYPE[status]
    return "api_error" if status >= 500 else "invalid_request_error"


def render_error(status: int, message: str) -> dict[str, Any]:
    """Render the JSON error body Anthropic sends with an HTTP error status."""
    return {
        "type": "error",
        "error": {"type": _error_type(status), "message": message},
        "request_id": f"req_{uuid.uuid4().hex[:24]}",
    }


def render_error_event(message: str) -> bytes:
    """Render an ``error`` SSE event (``overloaded_error``) sent after HTTP 200."""
    return _event(
        "error",
        {
            "type": "error",
            "error": {"type": "overloaded_error", "message": message},
            "request_id": f"req_{uuid.uuid4().hex[:24]}",
        },
    )
