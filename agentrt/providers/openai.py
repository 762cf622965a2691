"""OpenAI Chat Completions, and any OpenAI-compatible server (vLLM, llama.cpp, Ollama, ...).

Wire notes that shape this module:

* A streamed turn is a sequence of ``chat.completion.chunk`` objects in ``data:`` events,
  ended by ``data: [DONE]``. With ``stream_options.include_usage`` the last chunk before
  ``[DONE]`` has empty ``choices`` and the ``usage``; other chunks carry ``usage: null``.
* Tool calls arrive as ``delta.tool_calls`` fragments keyed by ``index``: the first
  fragment of a call has ``id`` and ``function.name``, later ones only pieces of
  ``function.arguments``. Compatible servers may send a whole call in one fragment or
  repeat ``id``/``name`` on every fragment; both are forwarded once per call.
* An error after HTTP 200 arrives as a data event whose JSON has an ``error`` object.
* ``content`` (of a message, or of a streamed delta) is a string, or, from some compatible
  servers (Mistral's reasoning models), a list of parts: ``{"type": "text", "text": ...}``
  parts are the answer; every other part (``thinking``, ``reference``, ...) is kept in the
  assistant message's ``provider_data["openai"]["content_parts"]``, never shown as text.
  Reasoning sent as a ``reasoning_content`` string (DeepSeek, vLLM) is kept there too.
* An event or body of a shape agentrt cannot interpret raises ``ServerError`` quoting it
  (:func:`agentrt.providers._wire.malformed`).
"""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from typing import Any, ClassVar

from .._http import HTTPProvider, WholeAnswer
from .._sse import loads
from ..errors import APIConnectionError, ProviderError, ServerError
from ..messages import (
    FinishEvent,
    FinishReason,
    Message,
    ProviderDataEvent,
    StreamEvent,
    TextDelta,
    ToolCallDelta,
    ToolSpec,
    TurnRequest,
    Usage,
    UsageEvent,
)
from ..output import merge_body, request_fragment
from ._wire import UNREADABLE, Encoded, JSONCache, dumps, malformed

__all__ = ["OpenAIProvider"]

_FINISH: dict[str, FinishReason] = {
    "stop": "stop",
    "eos": "stop",
    "end_turn": "stop",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "length": "length",
    "max_tokens": "length",
    "content_filter": "content_filter",
}

#: Error ``type``/``code`` values of stream error events, mapped to the HTTP status they mean.
_ERROR_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "invalid_api_key": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "rate_limit_error": 429,
    "rate_limit_exceeded": 429,
    "insufficient_quota": 429,
    "rate_limit": 429,
}


class OpenAIProvider(HTTPProvider):
    """The ``openai:<model>`` provider: Chat Completions at ``{base_url}/chat/completions``.

    Set ``base_url`` (or ``OPENAI_BASE_URL``) to use any OpenAI-compatible server.
    """

    name: ClassVar[str] = "openai"
    env_key: ClassVar[str] = "OPENAI_API_KEY"
    default_base_url: ClassVar[str] = "https://api.openai.com/v1"
    env_base_url: ClassVar[str | None] = "OPENAI_BASE_URL"
    #: Chat Completions generation options (anything else goes in ``extra_body``).
    generation_options: ClassVar[frozenset[str]] = frozenset(
        {"temperature", "max_tokens", "max_completion_tokens", "top_p", "stop", "seed",
         "frequency_penalty", "presence_penalty", "logit_bias", "logprobs", "top_logprobs",
         "response_format", "reasoning_effort", "user", "service_tier", "store", "metadata",
         "prediction", "modalities", "audio", "verbosity", "web_search_options",
         "prompt_cache_key", "safety_identifier"}
    )  # fmt: skip

    #: Ask for the usage chunk when streaming (``stream_options.include_usage``).
    stream_usage: bool = True

    async def turn(self, request: TurnRequest, *, stream: bool) -> AsyncIterator[StreamEvent]:
        """Run one Chat Completions call and yield its normalised events.

        Raises:
            ProviderError: the mapped HTTP, transport or in-stream failure.
        """
        body = self._wire_body(request, stream=stream)
        if not stream:
            for event in self._whole(await self.post_json(_PATH, body)):
                yield event
            return
        state = _StreamState()
        try:
            async with aclosing(self.post_sse(_PATH, body)) as events:
                async for sse in events:
                    data = sse.data
                    if data.startswith("[DONE]"):
                        # Read on to the end of the body (normally nothing more) so the
                        # connection goes back to the pool instead of being closed.
                        state.done = True
                        continue
                    if state.done:
                        continue
                    chunk = _loads(data, state.chunks, self._scrub)
                    try:
                        decoded = self._events_from_chunk(chunk, state)
                    except UNREADABLE as exc:
                        what = f"stream chunk {state.chunks}"
                        raise malformed(self.name, what, self._scrub(data), exc) from exc
                    for event in decoded:
                        yield event
                    state.chunks += 1
        except WholeAnswer as whole:  # a gateway ignored stream: true
            for event in self._whole(whole.payload):
                yield event
            return
        if not (state.done or state.finished):
            raise APIConnectionError(
                f"the stream ended after {state.chunks} chunk(s) without a finish reason "
                "or [DONE]; the answer is incomplete",
                provider=self.name,
            )
        if state.kept:
            yield _kept_event(state.kept)

    def _whole(self, payload: Any) -> list[StreamEvent]:
        """The events of a whole (non-streamed) answer."""
        if not isinstance(payload, dict):
            raise malformed(self.name, "the response", self._scrub(str(payload)))
        try:
            return self._events_from_completion(payload)
        except UNREADABLE as exc:
            raise malformed(self.name, "the response", self._scrub(str(payload)), exc) from exc

    def request_body(self, request: TurnRequest, *, stream: bool) -> dict[str, Any]:
        """Translate a turn request into a Chat Completions request body."""
        messages: list[dict[str, Any]] = []
        if request.system:
            messages.append({"role": "system", "content": request.system})
        messages.extend(_message(m) for m in request.messages)
        tools = [_tool(spec) for spec in request.tools] if request.tools else None
        return self._body(request, messages, tools, stream=stream)

    def _wire_body(self, request: TurnRequest, *, stream: bool) -> dict[str, Any]:
        """Return :meth:`request_body` with the messages and tools as cached JSON text."""
        if type(self).request_body is not OpenAIProvider.request_body:
            return self.request_body(request, stream=stream)  # a subclass shapes the body
        # Messages: cached per chain (they die with it); the tool list: per provider.
        cache = request.wire_cache
        parts = [_message_json(cache, m) for m in request.messages]
        if request.system:
            parts.insert(0, dumps({"role": "system", "content": request.system}))
        messages = Encoded(f"[{','.join(parts)}]")
        tools = Encoded(_tools_json(self._json_cache, request.tools)) if request.tools else None
        return self._body(request, messages, tools, stream=stream)

    def _body(
        self, request: TurnRequest, messages: Any, tools: Any, *, stream: bool
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model_name, "messages": messages}
        if tools is not None:
            body["tools"] = tools
        body.update(request.options)
        if (
            request.output is not None
            or request.tool_choice
            or request.parallel_tool_calls is not None
        ):
            fragment = request_fragment(self.name, request)
            schema = fragment.get("response_format")
            if schema is not None:
                # The same schema on every turn of a chain: encoded once per chain.
                key = ("response_format", id(request.output))
                text = request.wire_cache.get(key)
                if text is None:
                    text = request.wire_cache[key] = dumps(schema)
                fragment["response_format"] = Encoded(text)
            merge_body(body, fragment)
        if stream:
            body["stream"] = True
            if self.stream_usage:
                body.setdefault("stream_options", {"include_usage": True})
        else:
            body.pop("stream", None)
            body.pop("stream_options", None)
        return body

    # --- responses -------------------------------------------------------------------------

    def _events_from_completion(self, payload: dict[str, Any]) -> list[StreamEvent]:
        error = payload.get("error")
        if error:
            raise self._error_from_body(error)
        events: list[StreamEvent] = []
        choices = payload.get("choices") or []
        if choices:
            choice = choices[0]
            message = choice.get("message") or {}
            kept: dict[str, Any] = {}
            refusal = _string(message.get("refusal"))
            text = _content(message.get("content"), kept) or refusal
            _keep_reasoning(message, kept)
            if text:
                events.append(TextDelta(text))
            if refusal:
                events.append(ProviderDataEvent({"refusal": refusal}))
            if kept:
                events.append(_kept_event(kept))
            for index, call in enumerate(message.get("tool_calls") or ()):
                function = call.get("function") or {}
                events.append(
                    ToolCallDelta(
                        index=index,
                        id=call.get("id") or None,
                        name=function.get("name") or None,
                        arguments=_arguments(function.get("arguments")),
                    )
                )
            events.append(_finish(choice.get("finish_reason")))
        usage = _usage(payload.get("usage"))
        if usage is not None:
            events.append(UsageEvent(usage))
        return events

    def _events_from_chunk(self, chunk: dict[str, Any], state: _StreamState) -> list[StreamEvent]:
        error = chunk.get("error")
        if error:
            raise self._error_from_body(error)
        events: list[StreamEvent] = []
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue  # only one choice is requested; ignore any others
            delta = choice.get("delta") or _EMPTY
            refusal = _string(delta.get("refusal"))
            text = _content(delta.get("content"), state.kept) or refusal
            _keep_reasoning(delta, state.kept)
            if text:
                events.append(TextDelta(text))
            if refusal:
                state.refusal += refusal
                events.append(ProviderDataEvent({"refusal": state.refusal}))
            calls = delta.get("tool_calls")
            if calls:
                events.extend([state.tool_delta(call) for call in calls])
            reason = choice.get("finish_reason")
            if reason:
                state.finished = True
                events.append(_finish(reason))
        usage = chunk.get("usage")
        if usage is not None:
            parsed = _usage(usage)
            if parsed is not None:
                events.append(UsageEvent(parsed))
        return events

    def _error_from_body(self, error: Any) -> ProviderError:
        """Map an ``error`` object found in a 200 response or a stream event."""
        status = 500
        message = "the provider reported an error during the response"
        if isinstance(error, dict):
            code = error.get("code")
            if isinstance(code, int) and 400 <= code < 600:
                status = code
            else:
                kind = error.get("type") if error.get("type") in _ERROR_STATUS else code
                status = _ERROR_STATUS.get(kind, 500) if isinstance(kind, str) else 500
            if isinstance(error.get("message"), str) and error["message"]:
                message = error["message"]
        elif isinstance(error, str) and error:
            message = error
        return self.error_from_status(status, message, body=json.dumps(error)[:2000])


_PATH = "/chat/completions"
_EMPTY: dict[str, Any] = {}


class _StreamState:
    """Per-turn bookkeeping while reading a stream."""

    __slots__ = ("_by_id", "_named", "chunks", "done", "finished", "kept", "refusal")

    def __init__(self) -> None:
        self.chunks = 0
        #: Non-text content parts and reasoning text, for the message's provider_data.
        self.kept: dict[str, Any] = {}
        self.done = False
        self.finished = False
        self.refusal = ""
        self._named: set[int] = set()  # indices whose id and name were already forwarded
        self._by_id: dict[str, int] = {}  # for servers that omit ``index``

    def tool_delta(self, call: dict[str, Any]) -> ToolCallDelta:
        function = call.get("function") or {}
        call_id = call.get("id") or None
        index = call.get("index")
        if not isinstance(index, int):
            if call_id is not None and call_id not in self._by_id:
                self._by_id[call_id] = len(self._by_id)
            index = (
                self._by_id[call_id]
                if call_id is not None
                else max(self._by_id.values(), default=0)
            )
        name = function.get("name") or None
        if index in self._named:
            call_id = name = None
        elif call_id or name:
            self._named.add(index)
        return ToolCallDelta(index, call_id, name, _arguments(function.get("arguments")))


def _message_json(cache: dict[Any, Any], message: Message) -> str:
    """The JSON of ``_message(message)``, from the cache when it was encoded before."""
    key: tuple[Any, ...] = (message.role, message.content, message.tool_call_id)
    for call in message.tool_calls:
        raw = call.raw_arguments
        if not raw:
            return dumps(_message(message))  # encoded from a mutable dict: never cached
        key += (call.id, call.name, raw)
    text: str | None = cache.get(key)
    if text is None:
        text = cache[key] = dumps(_message(message))
    return text


def _tools_json(cache: JSONCache, specs: list[ToolSpec]) -> str:
    """The JSON of the ``tools`` array, from the cache while the schemas are unchanged."""
    key = (
        "tools",
        *[(spec.name, spec.description, id(spec.parameters), spec.strict) for spec in specs],
    )
    schemas = [spec.parameters for spec in specs]
    entry = cache.get(key)
    if entry is not None and entry[1] == schemas:  # a schema may have been edited in place
        text: str = entry[0]
        return text
    text = dumps([_tool(spec) for spec in specs])
    if entry is None:
        # The entry keeps the schemas alive, so the ids in its key stay theirs.
        cache.put(key, text, (text, copy.deepcopy(schemas), schemas))
    return text


def _tool(spec: ToolSpec) -> dict[str, Any]:
    function: dict[str, Any] = {
        "name": spec.name,
        "description": spec.description,
        "parameters": spec.parameters,
    }
    if spec.strict:
        function["strict"] = True
    return {"type": "function", "function": function}


def _message(message: Message) -> dict[str, Any]:
    role = message.role
    if role == "tool":
        return {"role": "tool", "tool_call_id": message.tool_call_id, "content": message.content}
    if role == "assistant" and message.tool_calls:
        return {
            "role": "assistant",
            "content": message.content or None,
            "tool_calls": [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {
                        "name": call.name,
                        "arguments": call.raw_arguments or json.dumps(call.arguments or {}),
                    },
                }
                for call in message.tool_calls
            ],
        }
    return {"role": role, "content": message.content}


def _string(value: Any) -> str:
    """A text field: a string, or absent; anything else is not understood."""
    if value is None or isinstance(value, str):
        return value or ""
    raise TypeError(f"expected a string, got {type(value).__name__}")


def _content(value: Any, kept: dict[str, Any]) -> str:
    """The answer text of a ``content`` value; other parts of a list go to ``kept``."""
    if value is None or isinstance(value, str):
        return value or ""
    if not isinstance(value, list):
        raise TypeError(f"content is a {type(value).__name__}, not a string or a list")
    texts: list[str] = []
    for part in value:
        if not isinstance(part, dict):
            raise TypeError(f"a content part is a {type(part).__name__}, not an object")
        if part.get("type") == "text":
            texts.append(_string(part.get("text")))
        else:
            kept.setdefault("content_parts", []).append(part)
    return "".join(texts)


def _keep_reasoning(message: dict[str, Any], kept: dict[str, Any]) -> None:
    reasoning = _string(message.get("reasoning_content"))
    if reasoning:
        kept["reasoning_content"] = kept.get("reasoning_content", "") + reasoning


def _kept_event(kept: dict[str, Any]) -> ProviderDataEvent:
    return ProviderDataEvent({"openai": kept})


def _arguments(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    # Some compatible servers send the arguments as an object rather than a JSON string.
    return json.dumps(value, ensure_ascii=False)


def _finish(raw: Any) -> FinishEvent:
    raw_reason = raw if isinstance(raw, str) else None
    return FinishEvent(raw_reason, _FINISH.get(raw_reason or ""))


def _usage(usage: Any) -> Usage | None:
    if not isinstance(usage, dict):
        return None
    prompt = usage.get("prompt_tokens") or 0
    completion = usage.get("completion_tokens") or 0
    total = usage.get("total_tokens")
    return Usage.of(prompt, completion, total if isinstance(total, int) else None)


def _loads(data: str, index: int, scrub: Callable[[str], str]) -> dict[str, Any]:
    try:
        value = loads(data)
    except ValueError as exc:
        # The bad chunk is quoted, with the key scrubbed in case the server echoed it.
        raise ServerError(
            scrub(f"stream chunk {index} is not valid JSON: {data[:200]!r}"), provider="openai"
        ) from exc
    if not isinstance(value, dict):
        raise ServerError(f"stream chunk {index} is not a JSON object", provider="openai")
    return value
