"""OpenAI Chat Completions wire format for the fake server.

Streams the way the real API does: a first chunk carrying the role, text in small
``delta.content`` pieces, each tool call as a first fragment with ``id``, ``type`` and
``function.name`` followed by ``function.arguments`` fragments grouped by ``index``, a chunk
with ``finish_reason``, a usage chunk with empty ``choices`` and finally ``data: [DONE]``.

``Turn.extra`` knobs, to imitate OpenAI-compatible servers:
    ``openai_refusal``: answer with this ``refusal`` text (Structured Outputs' refusal)
    instead of ``content``.
    ``openai_raw_finish``: send this raw ``finish_reason`` instead of the neutral one.
    ``openai_interleave``: interleave the argument fragments of parallel tool calls.
    ``openai_repeat_header``: repeat ``id`` and ``function.name`` on every fragment.
    ``openai_single_fragment``: send each tool call's name and arguments in one fragment.
"""

from __future__ import annotations

import json
from typing import Any

from .script import Turn

NAME = "openai"

_CREATED = 1_700_000_000
_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 429: "rate_limit"}


def is_stream(path: str, query: dict[str, str], body: dict[str, Any]) -> bool:
    return bool(body.get("stream"))


def _finish(turn: Turn) -> str:
    raw = turn.extra.get("openai_raw_finish")
    if isinstance(raw, str):
        return raw
    return turn.finish_reason or ("tool_calls" if turn.tool_calls else "stop")


def _call_id(turn: Turn, index: int) -> str:
    return turn.tool_calls[index].id or f"call_fake_{index}"


def _usage(turn: Turn) -> dict[str, Any] | None:
    if turn.usage is None:
        return None
    prompt, completion = turn.usage
    usage: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    # extra "cached_tokens" / "reasoning_tokens": the usage details objects.
    if "cached_tokens" in turn.extra:
        usage["prompt_tokens_details"] = {"cached_tokens": turn.extra["cached_tokens"]}
    if "reasoning_tokens" in turn.extra:
        usage["completion_tokens_details"] = {"reasoning_tokens": turn.extra["reasoning_tokens"]}
    return usage


def render_json(turn: Turn, model: str) -> dict[str, Any]:
    refusal = turn.extra.get("openai_refusal")
    message: dict[str, Any] = {
        "role": "assistant",
        "content": None if refusal else (turn.text or None),
        "refusal": refusal or None,
    }
    if turn.tool_calls:
        message["tool_calls"] = [
            {
                "id": _call_id(turn, i),
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            }
            for i, call in enumerate(turn.tool_calls)
        ]
    body: dict[str, Any] = {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": _CREATED,
        "model": model,
        "choices": [
            {"index": 0, "message": message, "logprobs": None, "finish_reason": _finish(turn)}
        ],
    }
    usage = _usage(turn)
    if usage is not None:
        body["usage"] = usage
    return body


def _pieces(text: str, count: int) -> list[str]:
    """Cut ``text`` into ``count`` pieces (fewer if it is shorter), sizes differing by one."""
    count = max(1, min(count, len(text)))
    size, extra = divmod(len(text), count)
    pieces, start = [], 0
    for i in range(count):
        end = start + size + (1 if i < extra else 0)
        pieces.append(text[start:end])
        start = end
    return pieces


def _event(payload: dict[str, Any] | str) -> bytes:
    data = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
    return f"data: {data}\n\n".encode()


def _tool_fragments(turn: Turn) -> list[dict[str, Any]]:
    repeat = bool(turn.extra.get("openai_repeat_header"))
    single = bool(turn.extra.get("openai_single_fragment"))
    per_call: list[list[dict[str, Any]]] = []
    for i, call in enumerate(turn.tool_calls):
        header = {"id": _call_id(turn, i), "type": "function"}
        if single:
            function = {"name": call.name, "arguments": call.arguments}
            per_call.append([{"index": i, **header, "function": function}])
            continue
        fragments = [{"index": i, **header, "function": {"name": call.name, "arguments": ""}}]
        for piece in _pieces(call.arguments, turn.arg_fragments):
            if not piece:
                continue
            fragment: dict[str, Any] = {"index": i, "function": {"arguments": piece}}
            if repeat:
                fragment.update(header)
                fragment["function"]["name"] = call.name
            fragments.append(fragment)
        per_call.append(fragments)
    if not turn.extra.get("openai_interleave"):
        return [f for fragments in per_call for f in fragments]
    out: list[dict[str, Any]] = []
    for step in range(max((len(f) for f in per_call), default=0)):
        out.extend(fragments[step] for fragments in per_call if step < len(fragments))
    return out


def render_sse(turn: Turn, model: str) -> list[bytes]:
    base = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": _CREATED}
    base["model"] = model

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return _event({**base, "choices": [choice]})

    events = [chunk({"role": "assistant", "content": "", "refusal": None})]
    step = max(1, turn.text_chunk_chars)
    refusal = str(turn.extra.get("openai_refusal") or "")
    events.extend(chunk({"refusal": refusal[i : i + step]}) for i in range(0, len(refusal), step))
    if not refusal:
        events.extend(
            chunk({"content": turn.text[i : i + step]}) for i in range(0, len(turn.text), step)
        )
    events.extend(chunk({"tool_calls": [fragment]}) for fragment in _tool_fragments(turn))
    events.append(chunk({}, _finish(turn)))
    usage = _usage(turn)
    if usage is not None:
        events.append(_event({**base, "choices": [], "usage": usage}))
    events.append(_event("[DONE]"))
    return events


def render_error(status: int, message: str) -> dict[str, Any]:
    kind = _ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}


def render_error_event(message: str) -> bytes:
    return _event({"error": {"message": message, "type": "server_error", "param": None}})
