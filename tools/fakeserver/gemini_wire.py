"""The Gemini wire format (``generateContent`` / ``streamGenerateContent?alt=sse``).

Renders a neutral :class:`~tools.fakeserver.script.Turn` the way the Gemini API answers:

* ``functionCall`` parts carry ``args`` as whole JSON objects. A scripted call whose
  ``arguments`` text is not valid JSON is sent as a JSON *string* in ``args``, the closest
  a Gemini body can get to malformed arguments; empty text leaves ``args`` out.
* ``finishReason`` is ``STOP`` for a tool-call turn too, as the real API reports.
* Streamed text arrives in several pieces; each function call comes whole in its own
  event; ``finishReason`` and ``usageMetadata`` ride on the last event.

``Turn.extra`` keys understood here:

* ``"finish_reason"``: a raw Gemini ``finishReason`` that overrides the neutral mapping
  (``"RECITATION"``, ``"SPII"``, ...).
* ``"thought_signature"``: a ``thoughtSignature`` put on the first ``functionCall`` part,
  or on the (last) text part when there are no calls.
* ``"thought"``: text of a thought-summary part (``"thought": true``) sent first.
* ``"thoughts_tokens"``: a ``thoughtsTokenCount`` added to ``usageMetadata``.
* ``"block_reason"``: answer with ``promptFeedback.blockReason`` and no candidates.

Fault headers understood by :func:`render_error`: ``x-retry-delay`` (e.g. ``"0.2s"``) adds
a ``google.rpc.RetryInfo`` detail with that ``retryDelay`` to the error body. The server
calls ``render_error(status, message)`` without headers, so :func:`rate_limit_fault` builds
such a 429 as a ready-made ``Fault(raw_body=...)``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from .script import Fault, Turn

NAME = "gemini"

#: Fault header asking :func:`render_error` for a ``RetryInfo.retryDelay`` detail.
RETRY_DELAY_HEADER = "x-retry-delay"

_FINISH = {
    "stop": "STOP",
    "tool_calls": "STOP",
    "length": "MAX_TOKENS",
    "content_filter": "SAFETY",
}

_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "NOT_IMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def is_stream(path: str, query: Mapping[str, str], body: Mapping[str, Any]) -> bool:
    """Whether the request is for the streaming endpoint."""
    return path.endswith(":streamGenerateContent")


def _args(arguments: str) -> Any:
    try:
        return json.loads(arguments)
    except ValueError:
        return arguments


def _call_parts(turn: Turn) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    for call in turn.tool_calls:
        function_call: dict[str, Any] = {"name": call.name}
        # Empty argument text means "no args field", as Gemini may send for no-arg calls.
        if call.arguments.strip():
            function_call["args"] = _args(call.arguments)
        if call.id is not None:
            function_call["id"] = call.id
        parts.append({"functionCall": function_call})
    signature = turn.extra.get("thought_signature")
    if parts and signature is not None:
        parts[0]["thoughtSignature"] = str(signature)
    return parts


def _thought_parts(turn: Turn) -> list[dict[str, Any]]:
    thought = turn.extra.get("thought")
    return [{"text": str(thought), "thought": True}] if thought else []


def _finish(turn: Turn) -> str:
    raw = turn.extra.get("finish_reason")
    if raw is not None:
        return str(raw)
    return _FINISH[turn.finish_reason or ("tool_calls" if turn.tool_calls else "stop")]


def _usage(turn: Turn) -> dict[str, int] | None:
    if turn.usage is None:
        return None
    prompt, output = turn.usage
    usage = {"promptTokenCount": prompt, "candidatesTokenCount": output}
    thoughts = int(str(turn.extra.get("thoughts_tokens", 0)))
    if thoughts:
        usage["thoughtsTokenCount"] = thoughts
    if "cached_tokens" in turn.extra:  # part of promptTokenCount
        usage["cachedContentTokenCount"] = int(str(turn.extra["cached_tokens"]))
    usage["totalTokenCount"] = prompt + output + thoughts
    return usage


def _response(
    model: str,
    parts: list[dict[str, Any]] | None,
    finish: str | None = None,
    usage: dict[str, int] | None = None,
) -> dict[str, Any]:
    response: dict[str, Any] = {}
    if parts is not None:
        candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
        if finish is not None:
            candidate["finishReason"] = finish
        response["candidates"] = [candidate]
    if usage is not None:
        response["usageMetadata"] = usage
    response["modelVersion"] = model
    response["responseId"] = "fake-gemini-response"
    return response


def _blocked(turn: Turn, model: str) -> dict[str, Any] | None:
    reason = turn.extra.get("block_reason")
    if reason is None:
        return None
    response = {"promptFeedback": {"blockReason": str(reason)}}
    usage = _usage(turn)
    if usage is not None:
        response["usageMetadata"] = {"promptTokenCount": usage["promptTokenCount"]}
    return {**response, "modelVersion": model}


def render_json(turn: Turn, model: str) -> dict[str, Any]:
    """Render a whole turn as one ``GenerateContentResponse``."""
    blocked = _blocked(turn, model)
    if blocked is not None:
        return blocked
    parts = _thought_parts(turn)
    if turn.text:
        parts.append({"text": turn.text})
    calls = _call_parts(turn)
    signature = turn.extra.get("thought_signature")
    if not calls and signature is not None and turn.text:
        parts[-1]["thoughtSignature"] = str(signature)
    parts.extend(calls)
    if not parts:
        parts.append({"text": ""})
    return _response(model, parts, _finish(turn), _usage(turn))


def _sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload, ensure_ascii=False).encode() + b"\n\n"


def render_sse(turn: Turn, model: str) -> list[bytes]:
    """Render a turn as the ``data:`` events of ``streamGenerateContent?alt=sse``."""
    blocked = _blocked(turn, model)
    if blocked is not None:
        return [_sse(blocked)]
    step = max(1, turn.text_chunk_chars)
    chunks: list[list[dict[str, Any]]] = [[part] for part in _thought_parts(turn)]
    chunks.extend([{"text": turn.text[i : i + step]}] for i in range(0, len(turn.text), step))
    calls = _call_parts(turn)
    signature = turn.extra.get("thought_signature")
    if not calls and signature is not None and turn.text:
        chunks[-1][0]["thoughtSignature"] = str(signature)
    chunks.extend([part] for part in calls)
    if not chunks:
        chunks.append([{"text": ""}])
    events = [_sse(_response(model, parts)) for parts in chunks[:-1]]
    events.append(_sse(_response(model, chunks[-1], _finish(turn), _usage(turn))))
    return events


def render_error(
    status: int, message: str, headers: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Render a Google API error body (``google.rpc.Status`` in an ``error`` object).

    Args:
        status: the HTTP status.
        message: the error message.
        headers: the fault's headers; ``x-retry-delay`` adds a ``RetryInfo`` detail.
    """
    details: list[dict[str, Any]] = []
    if status == 429:
        details.append(
            {
                "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                "violations": [{"quotaMetric": "generate_content_requests", "quotaId": "fake"}],
            }
        )
    delay = {k.lower(): v for k, v in (headers or {}).items()}.get(RETRY_DELAY_HEADER)
    if delay is not None:
        details.append({"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay})
    error: dict[str, Any] = {
        "code": status,
        "message": message,
        "status": _STATUS_NAMES.get(status, "UNKNOWN" if status >= 500 else "FAILED_PRECONDITION"),
    }
    if details:
        error["details"] = details
    return {"error": error}


def render_error_event(message: str) -> bytes:
    """Render an error object arriving inside an SSE stream after HTTP 200."""
    return _sse(render_error(500, message))


def rate_limit_fault(retry_delay: str, message: str = "Resource has been exhausted") -> Fault:
    """Return a 429 fault whose body carries ``RetryInfo.retryDelay`` (e.g. ``"0.2s"``)."""
    body = render_error(429, message, {RETRY_DELAY_HEADER: retry_delay})
    return Fault(
        status=429,
        message=message,
        raw_body=json.dumps(body).encode(),
        headers={"content-type": "application/json; charset=UTF-8"},
    )
