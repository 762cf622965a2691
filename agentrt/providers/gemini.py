"""Google Gemini (``generateContent`` / ``streamGenerateContent?alt=sse``).

Why this module looks the way it does, wire fact by wire fact:

* **Tools** are declared with ``parametersJsonSchema``, the field that takes full JSON Schema
  (``$ref``/``$defs``, ``additionalProperties``, ``anyOf``) and is mutually exclusive with
  the older OpenAPI-subset ``parameters``. The pydantic schema of a :class:`~agentrt.Tool`
  is therefore sent as is, with no lossy conversion. python-genai exposes the same field
  (``FunctionDeclaration.parameters_json_schema``) for schemas it cannot express as
  ``Schema``. A tool without parameters sends no schema at all, as the API allows.
* **Function calls** arrive as whole parts with ``args`` as a JSON object, never as
  fragments; each becomes one :class:`~agentrt.messages.ToolCallDelta`. Gemini sends an
  ``id`` only sometimes, so one is synthesised (``call_<index>_<hex>``) when it is absent.
* **Finish reasons**: Gemini reports ``STOP`` even when the turn asked for tools, so a
  turn with function calls is normalised to ``tool_calls``; safety-like reasons become
  ``content_filter``; the raw value is always kept.
* **A blocked prompt** (``promptFeedback.blockReason`` with no candidates) raises
  :class:`~agentrt.errors.BadRequestError`: nothing was generated, retrying the same prompt
  will not help, and it matches what OpenAI does for a flagged prompt (HTTP 400). An
  answer stopped *while* generating (``finishReason: SAFETY``) is not an error: it ends the
  turn with ``content_filter``.
* **Replay**: Gemini rejects replayed history that drops a ``thoughtSignature``. The
  assistant turn's raw ``parts`` are kept in ``provider_data["gemini_parts"]`` and sent back
  verbatim. Streamed text fragments are coalesced into one part (a signature that arrives
  on the last fragment moves onto the merged part), so streaming and non-streaming keep
  identical data.
* **Tool results** of consecutive ``tool`` messages become one ``user`` content of
  ``functionResponse`` parts, ``{"result": ...}`` or ``{"error": ...}`` as python-genai
  does, with the call's ``id`` when Gemini gave one.
* **Retries**: a 429 body carries ``google.rpc.RetryInfo.retryDelay`` (``"1.5s"``); it is
  honoured, capped, before the generic ``Retry-After`` logic.

The API key travels only in the ``x-goog-api-key`` header, never in the URL.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

from .._sse import SSEEvent
from ..errors import APIConnectionError, BadRequestError
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
    error_message,
    event_json,
    generation_items,
    tool_store,
)

__all__ = [
    "PROVIDER_DATA_KEY",
    "GeminiCodec",
    "GeminiDecoder",
    "TurnAssembler",
    "build_request_body",
    "normalise_finish",
    "retry_delay",
]

#: Key of ``Message.provider_data`` holding the assistant turn's raw Gemini parts.
PROVIDER_DATA_KEY = "gemini_parts"

#: Gemini's own finish reasons that mean "stopped by a content filter".
_CONTENT_FILTER = frozenset(
    {
        "SAFETY",
        "RECITATION",
        "BLOCKLIST",
        "PROHIBITED_CONTENT",
        "SPII",
        "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT",
        "IMAGE_RECITATION",
    }
)

#: agentrt option name -> generationConfig field, where the generic camelCase rule is wrong.
_OPTION_FIELDS = {
    "max_tokens": "maxOutputTokens",
    "stop": "stopSequences",
}

_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)s\s*$")
_RETRY_INFO_TYPE = "type.googleapis.com/google.rpc.RetryInfo"


# --- request -------------------------------------------------------------------------------


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(word[:1].upper() + word[1:] for word in rest)


def _generation_config(options: Mapping[str, Any]) -> dict[str, Any]:
    """Map agentrt generation options onto Gemini's ``generationConfig``.

    ``max_tokens`` becomes ``maxOutputTokens`` and ``stop`` (a string or a list)
    ``stopSequences``; any other option is passed on under its camelCase name
    (``top_p`` -> ``topP``, ``thinking_config`` -> ``thinkingConfig``). ``None`` values are
    left out.
    """
    config: dict[str, Any] = {}
    for name, value in generation_items(options):
        if value is None:
            continue
        field = _OPTION_FIELDS.get(name) or _camel(name)
        if field == "stopSequences" and isinstance(value, str):
            value = [value]
        config[field] = value
    return config


def _function_declaration(
    name: str, description: str, parameters: dict[str, Any]
) -> dict[str, Any]:
    declaration: dict[str, Any] = {"name": name}
    if description:
        declaration["description"] = description
    # A function without parameters leaves the schema unset, as the API documents.
    if parameters.get("properties") or parameters.get("$ref") or parameters.get("anyOf"):
        declaration["parametersJsonSchema"] = parameters
    return declaration


def _replayed_parts(message: Message) -> list[dict[str, Any]] | None:
    data = message.provider_data or {}
    parts = data.get(PROVIDER_DATA_KEY)
    if isinstance(parts, list) and parts:
        return parts
    return None


def _assistant_parts(message: Message) -> list[dict[str, Any]]:
    """Build parts for an assistant message that carries no Gemini data (another source)."""
    parts: list[dict[str, Any]] = []
    if message.content:
        parts.append({"text": message.content})
    for call in message.tool_calls:
        args = call.arguments if isinstance(call.arguments, dict) else {}
        parts.append({"functionCall": {"name": call.name, "args": args}})
    return parts


def _function_response(
    message: Message, call_names: dict[str, str], gemini_ids: set[str]
) -> dict[str, Any]:
    call_id = message.tool_call_id or ""
    name = message.name or call_names.get(call_id, "")
    key = "error" if message.is_error else "result"
    response: dict[str, Any] = {"name": name, "response": {key: message.content}}
    if call_id in gemini_ids:
        response["id"] = call_id
    return {"functionResponse": response}


def build_request_body(request: TurnRequest, cache: dict[Any, Any] | None = None) -> dict[str, Any]:
    """Translate one agentrt turn request into a ``GenerateContentRequest`` body.

    ``request.system`` and every ``system`` message go to ``systemInstruction``; ``user``
    maps to ``"user"`` and ``assistant`` to ``"model"``; consecutive contents of one role
    are merged, so a run of ``tool`` messages becomes a single ``user`` content of
    ``functionResponse`` parts.

    Args:
        request: the conversation, tools and generation options.
        cache: lives as long as the chain: the tool declarations' JSON is kept there.

    Returns:
        The JSON body for ``generateContent`` / ``streamGenerateContent``.
    """
    system_texts = [request.system] if request.system else []
    contents: list[dict[str, Any]] = []
    call_names: dict[str, str] = {}
    gemini_ids: set[str] = set()

    def append(role: str, parts: list[dict[str, Any]]) -> None:
        if not parts:
            return
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": parts})

    for message in request.messages:
        if message.role == "system":
            if message.content:
                system_texts.append(message.content)
        elif message.role == "user":
            append("user", [{"text": message.content}] if message.content else [])
        elif message.role == "assistant":
            for call in message.tool_calls:
                call_names[call.id] = call.name
            replayed = _replayed_parts(message)
            if replayed is not None:
                for part in replayed:
                    function_call = part.get("functionCall")
                    if isinstance(function_call, dict) and function_call.get("id"):
                        gemini_ids.add(str(function_call["id"]))
                # Copied so that merging later contents never mutates the caller's history.
                append("model", list(replayed))
            else:
                append("model", _assistant_parts(message))
        else:  # tool
            append("user", [_function_response(message, call_names, gemini_ids)])

    body: dict[str, Any] = {"contents": contents}
    if system_texts:
        body["systemInstruction"] = {"parts": [{"text": text} for text in system_texts]}
    specs = request.tools
    if specs:
        declarations = [
            _function_declaration(spec.name, spec.description, spec.parameters)
            for spec in request.tools
        ]
        tools: Any = [{"functionDeclarations": declarations}]
        if cache is not None:
            # Encoded once per model (the store its chains share) while the declarations
            # are equal: the entry holds a copy to compare with, since a schema may be
            # edited in place, and the schemas, so the ids in its key stay theirs.
            store = tool_store(cache)
            key = (
                "gemini tools",
                *[(t.name, t.description, id(t.parameters)) for t in request.tools],
            )
            entry = store.get(key)
            if entry is not None and entry[0] == tools:
                tools = entry[1]
            else:
                encoded = Encoded(dumps(tools))
                schemas = [t.parameters for t in specs]
                store[key] = (json.loads(encoded.text), encoded, schemas)
                tools = encoded
        body["tools"] = tools
    config = _generation_config(request.options)
    if config:
        body["generationConfig"] = config
    if request.output is not None or request.tool_choice or request.parallel_tool_calls is not None:
        merge_body(body, request_fragment("gemini", request))
    return body


# --- response ------------------------------------------------------------------------------


def normalise_finish(raw: str | None, has_tool_calls: bool) -> FinishReason:
    """Map Gemini's ``finishReason`` onto agentrt's four values.

    Args:
        raw: Gemini's value (``STOP``, ``MAX_TOKENS``, ``SAFETY``, ...), or ``None``.
        has_tool_calls: whether the turn produced function calls.

    Returns:
        ``length`` for ``MAX_TOKENS``, ``content_filter`` for safety-like reasons,
        otherwise ``tool_calls`` when the turn has function calls and ``stop`` when not.
    """
    if raw == "MAX_TOKENS":
        return "length"
    if raw in _CONTENT_FILTER:
        return "content_filter"
    return "tool_calls" if has_tool_calls else "stop"


def _usage(metadata: dict[str, Any]) -> Usage:
    prompt = int(metadata.get("promptTokenCount") or 0)
    prompt += int(metadata.get("toolUsePromptTokenCount") or 0)
    output = int(metadata.get("candidatesTokenCount") or 0)
    thoughts, cached = metadata.get("thoughtsTokenCount"), metadata.get("cachedContentTokenCount")
    output += int(thoughts or 0)
    total = metadata.get("totalTokenCount")
    return Usage.of(
        prompt,
        output,
        int(total) if total is not None else None,
        cache_read_input_tokens=cached if type(cached) is int else None,
        reasoning_output_tokens=thoughts if type(thoughts) is int else None,
    )


_TEXT_KEYS = frozenset({"text", "thought", "thoughtSignature"})


def _is_plain_text(part: dict[str, Any]) -> bool:
    return isinstance(part.get("text"), str) and part.keys() <= _TEXT_KEYS


class TurnAssembler:
    """Turn ``GenerateContentResponse`` objects into agentrt stream events.

    Streaming feeds one object per SSE event; non-streaming feeds the single response. The
    events assemble into the same result either way. I/O-free, so it is tested directly.
    """

    def __init__(self) -> None:
        self.parts: list[dict[str, Any]] = []
        self.tool_calls = 0
        self.raw_finish: str | None = None
        self.usage: Usage | None = None

    def feed(self, response: dict[str, Any]) -> Iterator[StreamEvent]:
        """Yield the events of one response object.

        Raises:
            BadRequestError: the prompt was blocked (``promptFeedback.blockReason``).
        """
        metadata = response.get("usageMetadata")
        if isinstance(metadata, dict):
            self.usage = _usage(metadata)
        candidates = response.get("candidates") or []
        feedback = response.get("promptFeedback") or {}
        if not candidates and feedback.get("blockReason"):
            reason = str(feedback["blockReason"])
            detail = feedback.get("blockReasonMessage")
            raise BadRequestError(
                f"Gemini blocked the prompt (blockReason {reason})"
                + (f": {detail}" if detail else "")
                + "; rephrase the prompt or adjust safetySettings",
                provider="gemini",
                body=json.dumps(feedback),
            )
        if not candidates:
            return
        candidate = candidates[0]
        for part in (candidate.get("content") or {}).get("parts") or []:
            if isinstance(part, dict):
                yield from self._part(part)
        if candidate.get("finishReason"):
            self.raw_finish = str(candidate["finishReason"])

    def _part(self, part: dict[str, Any]) -> Iterator[StreamEvent]:
        call = part.get("functionCall")
        if isinstance(call, dict):
            self.parts.append(part)
            index = self.tool_calls
            self.tool_calls += 1
            call_id = call.get("id") or f"call_{index}_{uuid.uuid4().hex[:12]}"
            args = call.get("args")
            if args is None:
                arguments = ""
            elif isinstance(args, str):
                # Not Gemini's documented shape; passed on raw so the chain reports it.
                arguments = args
            else:
                arguments = json.dumps(args, ensure_ascii=False)
            yield ToolCallDelta(
                index, id=str(call_id), name=str(call.get("name") or ""), arguments=arguments
            )
            return
        text = part.get("text")
        if _is_plain_text(part):
            self._keep_text(part)
        else:  # executableCode, inlineData, text with metadata, ...: kept as sent
            self.parts.append(part)
        if isinstance(text, str) and text and not part.get("thought"):
            yield TextDelta(text)

    def _keep_text(self, part: dict[str, Any]) -> None:
        last = self.parts[-1] if self.parts else None
        if (
            last is not None
            and _is_plain_text(last)
            and "thoughtSignature" not in last
            and bool(last.get("thought")) == bool(part.get("thought"))
        ):
            merged = {**last, "text": last["text"] + part["text"]}
            if "thoughtSignature" in part:
                merged["thoughtSignature"] = part["thoughtSignature"]
            self.parts[-1] = merged
        else:
            self.parts.append(dict(part))

    def finish(self) -> Iterator[StreamEvent]:
        """Yield the closing events: provider data, usage, and the finish reason."""
        # An empty unsigned text part carries nothing, and Gemini rejects empty parts.
        parts = [p for p in self.parts if p != {"text": ""}]
        if parts:
            yield ProviderDataEvent({PROVIDER_DATA_KEY: parts})
        if self.usage is not None:
            yield UsageEvent(self.usage)
        yield FinishEvent(self.raw_finish, normalise_finish(self.raw_finish, self.tool_calls > 0))


def retry_delay(payload: Any) -> float | None:
    """Return ``RetryInfo.retryDelay`` in seconds from a Google error body, if present."""
    if not isinstance(payload, dict):
        return None
    error = payload.get("error")
    details = error.get("details") if isinstance(error, dict) else None
    if not isinstance(details, list):
        return None
    for detail in details:
        if isinstance(detail, dict) and detail.get("@type") == _RETRY_INFO_TYPE:
            match = _DURATION.match(str(detail.get("retryDelay", "")))
            if match:
                return float(match.group(1))
    return None


class GeminiDecoder:
    """The events of one streamed answer, from its ``GenerateContentResponse`` events."""

    __slots__ = ("_assembler", "_received")

    def __init__(self) -> None:
        self._assembler = TurnAssembler()
        self._received = 0

    def feed(self, event: SSEEvent) -> list[StreamEvent]:
        """The events of one SSE event (an error object raises its error)."""
        if not event.data.strip():
            return []
        self._received += 1
        payload = event_json(event.data)
        _raise_for_error_object(payload)
        return list(self._assembler.feed(payload))

    def close(self) -> list[StreamEvent]:
        """The closing events; the last chunk must have carried a ``finishReason``."""
        if self._assembler.raw_finish is None:
            # Gemini's last chunk always carries finishReason: without it the stream was
            # cut (e.g. a connection closed early) and the answer is incomplete.
            raise APIConnectionError(
                f"the stream ended after {self._received} chunk(s) without a finishReason; "
                "the answer is incomplete",
                provider="gemini",
            )
        return list(self._assembler.finish())


def _raise_for_error_object(payload: dict[str, Any]) -> None:
    error = payload.get("error")
    if error is None:
        return
    code = error.get("code") if isinstance(error, dict) else None
    status = code if isinstance(code, int) and code >= 400 else 500
    raise error_for_status(
        status, _error_message(status, payload), provider="gemini", body=json.dumps(payload)
    )


def _error_message(status: int, payload: Any) -> str:
    message = error_message(status, payload)
    error = payload.get("error") if isinstance(payload, dict) else None
    code = error.get("status") if isinstance(error, dict) else None
    return f"{message} ({code})" if isinstance(code, str) and code else message


class GeminiCodec(Codec):
    """The Gemini API (Google AI Studio keys), over ``generateContent``: the codec.

    ``base_url`` is taken as python-genai takes it: ``https://generativelanguage.googleapis.com``
    (or ``GOOGLE_GEMINI_BASE_URL``); ``/v1beta/models/<name>:generateContent`` is appended.
    """

    name: ClassVar[str] = "gemini"
    env_key: ClassVar[str] = "GEMINI_API_KEY"
    default_base_url: ClassVar[str] = "https://generativelanguage.googleapis.com"
    env_base_url: ClassVar[str | None] = "GOOGLE_GEMINI_BASE_URL"
    generation_options: ClassVar[frozenset[str]] = frozenset(
        {
            "temperature",
            "max_tokens",
            "max_output_tokens",
            "top_p",
            "top_k",
            "stop",
            "stop_sequences",
            "seed",
            "candidate_count",
            "presence_penalty",
            "frequency_penalty",
            "response_mime_type",
            "response_schema",
            "response_json_schema",
            "response_logprobs",
            "logprobs",
            "thinking_config",
            "media_resolution",
            "response_modalities",
            "speech_config",
        }
    )

    def route(self, model_name: str, *, stream: bool) -> tuple[str, dict[str, str] | None]:
        """``/v1beta/models/<name>:generateContent``, or the SSE stream endpoint."""
        model = model_name if "/" in model_name else f"models/{model_name}"
        if stream:
            return f"/v1beta/{model}:streamGenerateContent", {"alt": "sse"}
        return f"/v1beta/{model}:generateContent", None

    def auth_headers(self, key: str) -> dict[str, str]:
        """The key in ``x-goog-api-key``, never in the URL."""
        return {"x-goog-api-key": key}

    def request_id(self, headers: Mapping[str, str]) -> str | None:
        """``x-request-id`` (or ``request-id``) when a server sends one."""
        return headers.get("x-request-id") or headers.get("request-id")

    def error_message(self, status: int, payload: Any) -> str:
        """``error.message`` of a Google error body, followed by ``error.status``."""
        return _error_message(status, payload)

    def retry_after(self, status: int, headers: Mapping[str, str], body: bytes) -> float | None:
        """``RetryInfo.retryDelay`` from the error body (else the headers decide)."""
        try:
            payload = json.loads(body)
        except ValueError:
            return None
        return retry_delay(payload)

    def request_body(
        self, model_name: str, request: TurnRequest, *, stream: bool, cache: dict[Any, Any]
    ) -> dict[str, Any]:
        """The ``GenerateContentRequest`` body (see :func:`build_request_body`)."""
        return build_request_body(request, cache)

    def decoder(self) -> GeminiDecoder:
        """A decoder of one streamed answer."""
        return GeminiDecoder()

    def events_from_body(self, payload: Any) -> list[StreamEvent]:
        """The events of a whole answer: one response object, or a JSON array of them."""
        assembler = TurnAssembler()
        items: list[StreamEvent] = []
        for response in payload if isinstance(payload, list) else [payload]:
            if not isinstance(response, dict):
                raise TypeError(f"the answer holds a JSON {type(response).__name__}")
            _raise_for_error_object(response)
            items += assembler.feed(response)
        items += assembler.finish()
        return items
