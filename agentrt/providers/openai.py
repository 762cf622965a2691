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
from collections.abc import Mapping
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
    ToolSpec,
    TurnRequest,
    Usage,
    UsageEvent,
)
from ..output import merge_body, native_json, request_fragment
from ._wire import (
    Codec,
    Encoded,
    dumps,
    error_for_status,
    event_json,
    generation_items,
    tool_store,
)

__all__ = ["OpenAICodec", "OpenAIDecoder"]

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


class OpenAICodec(Codec):
    """Chat Completions at ``{base_url}/chat/completions``: the ``openai:<model>`` codec.

    Set ``base_url`` (or ``OPENAI_BASE_URL``) to use any OpenAI-compatible server.
    """

    name: ClassVar[str] = "openai"
    env_key: ClassVar[str] = "OPENAI_API_KEY"
    default_base_url: ClassVar[str] = "https://api.openai.com/v1"
    env_base_url: ClassVar[str | None] = "OPENAI_BASE_URL"
    generation_options: ClassVar[frozenset[str]] = frozenset(
        {
            "temperature",
            "max_tokens",
            "max_completion_tokens",
            "top_p",
            "stop",
            "seed",
            "frequency_penalty",
            "presence_penalty",
            "logit_bias",
            "logprobs",
            "top_logprobs",
            "n",
            "response_format",
            "tool_choice",
            "parallel_tool_calls",
            "user",
            "reasoning_effort",
            "service_tier",
            "metadata",
            "store",
            "stream_options",
            "modalities",
            "prediction",
            "verbosity",
            "audio",
            "web_search_options",
            "prompt_cache_key",
            "safety_identifier",
        }
    )

    #: Ask for the usage chunk when streaming (``stream_options.include_usage``).
    stream_usage: bool = True

    def route(self, model_name: str, *, stream: bool) -> tuple[str, dict[str, str] | None]:
        """Streamed or not, one endpoint."""
        return _PATH, None

    def auth_headers(self, key: str) -> dict[str, str]:
        """A bearer token."""
        return {"authorization": f"Bearer {key}"}

    def request_id(self, headers: Mapping[str, str]) -> str | None:
        """``x-request-id`` (or ``request-id``)."""
        return headers.get("x-request-id") or headers.get("request-id")

    def request_body(
        self, model_name: str, request: TurnRequest, *, stream: bool, cache: dict[Any, Any]
    ) -> dict[str, Any]:
        """The Chat Completions body, messages and tools as JSON cached per chain."""
        parts = [_message_json(cache, m) for m in request.messages]
        if request.system:
            parts.insert(0, dumps({"role": "system", "content": request.system}))
        messages = Encoded(f"[{','.join(parts)}]")
        tools = Encoded(_tools_json(cache, request.tools)) if request.tools else None
        return self._body(model_name, request, messages, tools, stream=stream, cache=cache)

    def plain_body(self, model_name: str, request: TurnRequest, *, stream: bool) -> dict[str, Any]:
        """The same body as plain JSON values (no cached encodings): for tests and tools."""
        messages: list[dict[str, Any]] = []
        if request.system:
            messages.append({"role": "system", "content": request.system})
        messages.extend(_message(m) for m in request.messages)
        tools = [_tool(spec) for spec in request.tools] if request.tools else None
        return self._body(model_name, request, messages, tools, stream=stream)

    def _body(
        self,
        model_name: str,
        request: TurnRequest,
        messages: Any,
        tools: Any,
        *,
        stream: bool,
        cache: dict[Any, Any] | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"model": model_name, "messages": messages}
        if tools is not None:
            body["tools"] = tools
        body.update(generation_items(request.options))
        if (
            request.output is not None
            or request.tool_choice
            or request.parallel_tool_calls is not None
        ):
            fragment = request_fragment("openai", request)
            if "response_format" in fragment and cache is not None:
                # The same schema for every request with this type: encoded once.
                fragment["response_format"] = Encoded(native_json(request.output.spec, "openai"))
            merge_body(body, fragment)
        if stream:
            body["stream"] = True
            if self.stream_usage:
                body.setdefault("stream_options", {"include_usage": True})
        else:
            body.pop("stream", None)
            body.pop("stream_options", None)
        return body

    def decoder(self) -> OpenAIDecoder:
        """A decoder of one streamed answer."""
        return OpenAIDecoder()

    def events_from_body(self, payload: Any) -> list[StreamEvent]:
        """The events of a whole ``chat.completion`` object."""
        if not isinstance(payload, dict):
            raise TypeError(f"the answer is a JSON {type(payload).__name__}, not an object")
        error = payload.get("error")
        if error:
            raise _error_from_body(error)
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


class OpenAIDecoder:
    """The events of one streamed answer, from its ``chat.completion.chunk`` events.

    ``feed`` takes each SSE event; ``close`` checks that the answer ended (a finish reason
    or ``[DONE]``) and yields what is kept for the message's ``provider_data``.
    """

    __slots__ = ("_by_id", "_named", "chunks", "done", "finished", "kept", "refusal")

    def __init__(self) -> None:
        self.chunks = 0
        self.done = False
        self.finished = False
        self._named: set[int] = set()  # indices whose id and name were already forwarded
        self._by_id: dict[str, int] = {}  # for servers that omit ``index``
        #: Non-text content parts and reasoning text, for the message's provider_data.
        self.kept: dict[str, Any] = {}
        #: The refusal text so far (Structured Outputs' ``refusal``), also sent as text.
        self.refusal = ""

    def feed(self, event: SSEEvent) -> list[StreamEvent]:
        """The events of one SSE event (a chunk, or ``[DONE]``)."""
        data = event.data
        if self.done:
            return []
        if data.startswith("[DONE]"):
            # Read on to the end of the body (normally nothing more) so the connection
            # goes back to the pool instead of being closed.
            self.done = True
            return []
        chunk = event_json(data)
        error = chunk.get("error")
        if error:
            raise _error_from_body(error)
        events: list[StreamEvent] = []
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue  # only one choice is requested; ignore any others
            delta = choice.get("delta") or _EMPTY
            # The usual delta is plain text or nothing: no call for those fields.
            content = delta.get("content")
            if content is None or type(content) is str:
                text = content or ""
            else:
                text = _content(content, self.kept)
            refusal = delta.get("refusal")
            if refusal is not None:
                refusal = _string(refusal)
                text = text or refusal
            if delta.get("reasoning_content") is not None:
                _keep_reasoning(delta, self.kept)
            if text:
                events.append(TextDelta(text))
            if refusal:
                self.refusal += refusal
                events.append(ProviderDataEvent({"refusal": self.refusal}))
            calls = delta.get("tool_calls")
            if calls:
                events.extend([self._tool_delta(call) for call in calls])
            reason = choice.get("finish_reason")
            if reason:
                self.finished = True
                events.append(_finish(reason))
        usage = chunk.get("usage")
        if usage is not None:
            parsed = _usage(usage)
            if parsed is not None:
                events.append(UsageEvent(parsed))
        self.chunks += 1
        return events

    def close(self) -> list[StreamEvent]:
        """Check that the answer ended; return what is kept for ``provider_data``."""
        if not (self.done or self.finished):
            raise APIConnectionError(
                f"the stream ended after {self.chunks} chunk(s) without a finish reason "
                "or [DONE]; the answer is incomplete",
                provider="openai",
            )
        return [_kept_event(self.kept)] if self.kept else []

    def _tool_delta(self, call: dict[str, Any]) -> ToolCallDelta:
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


def _error_from_body(error: Any) -> ProviderError:
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
    return error_for_status(status, message, provider="openai", body=json.dumps(error)[:2000])


_PATH = "/chat/completions"
_EMPTY: dict[str, Any] = {}


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


def _tools_json(cache: dict[Any, Any], specs: list[ToolSpec]) -> str:
    """The JSON of the ``tools`` array, from the cache while the schemas are unchanged."""
    key = (
        "tools",
        *[(spec.name, spec.description, id(spec.parameters), spec.strict) for spec in specs],
    )
    schemas = [spec.parameters for spec in specs]
    store = tool_store(cache)  # the model's, shared by its chains
    entry = store.get(key)
    if entry is not None and entry[1] == schemas:  # a schema may have been edited in place
        text: str = entry[0]
        return text
    text = dumps([_tool(spec) for spec in specs])
    # The entry keeps the schemas alive, so the ids in its key stay theirs.
    store[key] = (text, copy.deepcopy(schemas), schemas)
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
        raise TypeError(f"content is of type {type(value).__name__}, not a string or a list")
    texts: list[str] = []
    for part in value:
        if not isinstance(part, dict):
            raise TypeError(f"a content part is of type {type(part).__name__}, not an object")
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
    prompt_details = usage.get("prompt_tokens_details")
    completion_details = usage.get("completion_tokens_details")
    return Usage.of(
        prompt,
        completion,
        total if isinstance(total, int) else None,
        cache_read_input_tokens=_count(prompt_details, "cached_tokens"),
        reasoning_output_tokens=_count(completion_details, "reasoning_tokens"),
    )


def _count(details: Any, key: str) -> int | None:
    """An integer count from a usage details object, or None when absent."""
    if isinstance(details, dict):
        value = details.get(key)
        if type(value) is int:
            return value
    return None
