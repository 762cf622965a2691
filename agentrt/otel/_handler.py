"""``OTelHandler``: agentrt's callback hooks turned into GenAI spans and metrics.

Span tree of one chain (names and kinds from the conventions, see ``_semconv``)::

    invoke_agent {name}        INTERNAL  on_chain_start .. after the chain's on_done callbacks
    ├── chat {model}           CLIENT    on_turn_start .. on_turn_end (covers every retry)
    ├── execute_tool {tool}    INTERNAL  on_tool_start .. on_tool_end / on_tool_error
    └── chat {model}           ...

How spans become current: each start hook attaches its span to the OpenTelemetry context of
the task running the hook, and the matching end hook resets it. agentrt runs a chain's hooks
in the task that runs the chain (and a tool's start hook, the tool and its end hook in one
task, a sync tool's thread getting a copy of that context), so spans the application makes
inside a tool, a model call or an ``on_done`` callback nest where they belong. The chain
span is ended by an ``on_done`` callback registered in ``on_chain_end``: it runs after every
other ``on_done`` callback of the chain, so those run inside the chain's span.

Token counts are recorded on ``chat`` spans only: a parent never repeats its children's.
All hooks are plain ``def``: agentrt calls them without a cancel-shield scope, and a hook
never suspends, so cancellation cannot cut one short.
"""

from __future__ import annotations

import contextvars
import os
import weakref
from dataclasses import dataclass
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from ..callbacks import CallbackHandler
from ..errors import CancelChain, UsageError
from ..messages import ToolCall, ToolResult
from . import _content
from . import _semconv as sc
from ._attributes import (
    Provider,
    error_name,
    extra_usage,
    provider_of,
    request_options,
    server,
    streamed,
    wants_output_type,
)

__all__ = ["CAPTURE_CONTENT_ENV", "DEFAULT_MAX_CONTENT_CHARS", "OTelHandler"]

#: The environment variable that turns content capture on when ``capture_content=None``.
CAPTURE_CONTENT_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
#: The most characters one captured content attribute may have.
DEFAULT_MAX_CONTENT_CHARS = 16_384

_ON = frozenset({"true", "1", "yes", "on", "span_only", "span_and_event"})
_OFF = frozenset({"", "false", "0", "no", "off", "no_content", "event_only"})


def capture_from_env() -> bool:
    """Whether :data:`CAPTURE_CONTENT_ENV` asks for content capture.

    Raises:
        UsageError: the variable holds a value that is neither on nor off.
    """
    raw = os.environ.get(CAPTURE_CONTENT_ENV, "")
    value = raw.strip().lower()
    if value in _ON:
        return True
    if value in _OFF:
        return False
    raise UsageError(
        f"{CAPTURE_CONTENT_ENV}={raw!r} is not understood: set it to 'true' to record "
        "message content on spans, or 'false' (the default) not to"
    )


@dataclass(slots=True)
class _Open:
    """One open span, the token that made it current and what its end needs."""

    span: trace.Span
    token: contextvars.Token[Any]
    provider: Provider
    context: otel_context.Context | None = None  # chains: the parent of their children
    tools: dict[int, _Open] | None = None  # chains: their open tool spans
    chain: int = 0  # tools: the key of their chain
    cut: tuple[str, ...] = ()  # content attributes cut when the span started


def _reset(token: contextvars.Token[Any]) -> None:
    # A token is only valid in the context that made it: after an abandoned generator is
    # finalised elsewhere there is nothing of ours to reset there.
    try:
        token.var.reset(token)
    except (ValueError, RuntimeError):
        pass


class OTelHandler(CallbackHandler):
    """A ``CallbackHandler`` that records GenAI spans and metrics with OpenTelemetry.

    Pass it in ``callbacks=[...]`` of one model, chain or prompt, or let
    :func:`agentrt.otel.instrument` register one for every model in the process.

    Args:
        tracer_provider: where spans go; the global tracer provider by default.
        meter_provider: where metrics go; the global meter provider by default.
        capture_content: record messages, system instructions, tool definitions and tool
            arguments and results on the spans; ``None`` reads
            ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`` (off unless ``true``).
        max_content_chars: the most characters one content attribute may have; longer
            values are cut (still valid JSON) and named in ``agentrt.content.truncated``.

    Raises:
        UsageError: a provider of the wrong type, a non-bool ``capture_content``, a
            ``max_content_chars`` under 64, or an environment variable not understood.
    """

    def __init__(
        self,
        *,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
        capture_content: bool | None = None,
        max_content_chars: int = DEFAULT_MAX_CONTENT_CHARS,
    ) -> None:
        if tracer_provider is not None and not isinstance(tracer_provider, trace.TracerProvider):
            raise UsageError(
                f"tracer_provider must be an opentelemetry TracerProvider, got "
                f"{tracer_provider!r}; pass opentelemetry.sdk.trace.TracerProvider() or None"
            )
        if meter_provider is not None and not isinstance(meter_provider, metrics.MeterProvider):
            raise UsageError(
                f"meter_provider must be an opentelemetry MeterProvider, got "
                f"{meter_provider!r}; pass opentelemetry.sdk.metrics.MeterProvider() or None"
            )
        if capture_content is not None and not isinstance(capture_content, bool):
            raise UsageError(
                f"capture_content must be True, False or None (read {CAPTURE_CONTENT_ENV}), "
                f"got {capture_content!r}"
            )
        if (
            not isinstance(max_content_chars, int)
            or isinstance(max_content_chars, bool)
            or max_content_chars < 64
        ):
            raise UsageError(
                f"max_content_chars must be an int of at least 64, got {max_content_chars!r}"
            )
        from .. import __version__

        self.capture_content = capture_from_env() if capture_content is None else capture_content
        self.max_content_chars = max_content_chars
        self._tracer = trace.get_tracer(
            "agentrt", __version__, tracer_provider, schema_url=sc.SCHEMA_URL
        )
        meter = metrics.get_meter("agentrt", __version__, meter_provider, schema_url=sc.SCHEMA_URL)
        self._duration = meter.create_histogram(
            sc.OPERATION_DURATION,
            unit="s",
            description="GenAI operation duration.",
            explicit_bucket_boundaries_advisory=sc.DURATION_BUCKETS,
        )
        self._tokens = meter.create_histogram(
            sc.TOKEN_USAGE,
            unit="{token}",
            description="Number of input and output tokens used.",
            explicit_bucket_boundaries_advisory=sc.TOKEN_BUCKETS,
        )
        self._first_chunk = meter.create_histogram(
            sc.TIME_TO_FIRST_CHUNK,
            unit="s",
            description="Time to receive the first chunk of a streamed response.",
            explicit_bucket_boundaries_advisory=sc.DURATION_BUCKETS,
        )
        self._providers: weakref.WeakKeyDictionary[Any, Provider] = weakref.WeakKeyDictionary()
        self._chains: dict[int, _Open] = {}
        self._turns: dict[int, _Open] = {}
        self._tools: dict[int, _Open] = {}

    def __repr__(self) -> str:
        return f"<OTelHandler capture_content={self.capture_content}>"

    # --- providers ---------------------------------------------------------------------

    def _provider(self, provider: Any, model_id: str) -> Provider:
        if provider is not None:
            try:
                known = self._providers.get(provider)
            except TypeError:  # not weak-referenceable: work it out each time
                known = None
            if known is not None:
                return known
        prefix, _, model = model_id.partition(":")
        prefix = getattr(provider, "name", None) or prefix
        model = getattr(provider, "model_name", None) or model or model_id
        name = sc.PROVIDER_NAMES.get(prefix, prefix)
        address, port = server(getattr(provider, "base_url", None))
        key: Any = getattr(provider, "api_key", None)
        secret = key.get_secret_value() if hasattr(key, "get_secret_value") else key
        attributes: dict[str, Any] = {sc.PROVIDER_NAME: name, sc.REQUEST_MODEL: model}
        if address is not None:
            attributes[sc.SERVER_ADDRESS] = address
            if port is not None:
                attributes[sc.SERVER_PORT] = port
        info = Provider(
            model, _content.redactor([secret] if isinstance(secret, str) else ()), attributes
        )
        if provider is not None:
            try:
                self._providers[provider] = info
            except TypeError:
                pass
        return info

    # --- chains ------------------------------------------------------------------------

    def on_chain_start(self, chain: Any) -> None:
        """Open the ``invoke_agent`` span and make it current."""
        provider = self._provider(provider_of(chain), chain.model)
        name = getattr(chain, "name", None)
        attributes = {sc.OPERATION_NAME: sc.OP_INVOKE_AGENT, **provider.attributes}
        if name:
            attributes[sc.AGENT_NAME] = name
        conversation = getattr(chain, "conversation_id", None)
        if conversation:
            attributes[sc.CONVERSATION_ID] = conversation
        if wants_output_type(chain):
            attributes[sc.OUTPUT_TYPE] = "json"
        span = self._tracer.start_span(
            f"{sc.OP_INVOKE_AGENT} {name}" if name else sc.OP_INVOKE_AGENT,
            kind=SpanKind.INTERNAL,
            attributes=attributes,
        )
        ctx = trace.set_span_in_context(span)
        self._chains[id(chain)] = _Open(span, otel_context.attach(ctx), provider, ctx, {})

    def on_chain_end(self, chain: Any) -> None:
        """Record how the chain ended; its span ends after the chain's ``on_done`` callbacks."""
        state = self._chains.get(id(chain))
        if state is None:
            return
        if state.tools:
            for key, tool in state.tools.items():  # calls cut short by cancellation
                self._tools.pop(key, None)
                self._end_tool(tool, sc.CANCELLED, "the tool call was cancelled")
            state.tools.clear()
        error = chain.error
        if chain.status == "failed" or (
            chain.status == "cancelled" and not isinstance(error, CancelChain)
        ):
            self._fail(state.span, error_name(error), error, state.provider)
        chain.on_done(self._end_chain)

    def _end_chain(self, chain: Any) -> None:
        state = self._chains.pop(id(chain), None)
        if state is not None:
            state.span.end()
            _reset(state.token)

    # --- turns -------------------------------------------------------------------------

    def on_turn_start(self, response: Any) -> None:
        """Open the ``chat`` span (it covers every retry of the request)."""
        chain = response.chain
        parent = self._chains.get(id(chain)) if chain is not None else None
        provider = (
            parent.provider
            if parent is not None
            else self._provider(provider_of(response), response.model)
        )
        request = response.request
        attributes = provider.chat
        extra = request_options(request.options)
        if streamed(response):
            extra[sc.REQUEST_STREAM] = True
        if chain is not None:
            conversation = getattr(chain, "conversation_id", None)
            if conversation:
                extra[sc.CONVERSATION_ID] = conversation
        # A typed output asked for (output_type=) travels in TurnRequest.output.
        if getattr(request, "output", None) is not None or wants_output_type(chain):
            extra[sc.OUTPUT_TYPE] = "json"
            if parent is not None and response.turn == 0:  # the chain asked for it too
                parent.span.set_attribute(sc.OUTPUT_TYPE, "json")
        if extra:
            attributes = {**attributes, **extra}
        span = self._tracer.start_span(
            provider.chat_name,
            parent.context if parent is not None else None,
            kind=SpanKind.CLIENT,
            attributes=attributes,
        )
        cut: list[str] = []
        if self.capture_content:
            content: dict[str, Any] = {}
            if request.system:
                value = _content.system_instructions(request.system)
                if self._record(content, sc.SYSTEM_INSTRUCTIONS, value, provider):
                    cut.append(sc.SYSTEM_INSTRUCTIONS)
            value = _content.input_messages(request.messages)
            if self._record(
                content, sc.INPUT_MESSAGES, value, provider, _content.message_dropped_marker
            ):
                cut.append(sc.INPUT_MESSAGES)
            if request.tools:
                value = _content.tool_definitions(request.tools)
                if self._record(content, sc.TOOL_DEFINITIONS, value, provider):
                    cut.append(sc.TOOL_DEFINITIONS)
            if cut:
                content[sc.TRUNCATED] = cut
            span.set_attributes(content)
        token = otel_context.attach(trace.set_span_in_context(span))
        state = _Open(span, token, provider)
        if cut:
            state.cut = tuple(cut)
        self._turns[id(response)] = state

    def on_retry(self, response: Any, attempt: int, error: BaseException, delay: float) -> None:
        """Add a retry event to the turn's ``chat`` span."""
        state = self._turns.get(id(response))
        if state is not None:
            state.span.add_event(
                sc.RETRY_EVENT,
                {
                    sc.RETRY_ATTEMPT: attempt,
                    sc.RETRY_DELAY: float(delay),
                    sc.ERROR_TYPE: error_name(error),
                },
            )

    def on_turn_end(self, response: Any) -> None:
        """Close the ``chat`` span with the answer's attributes; record the metrics."""
        state = self._turns.pop(id(response), None)
        if state is None:
            return
        span, provider = state.span, state.provider
        end: dict[str, Any] = {}
        metric, metric_input, metric_output = (
            provider.metric,
            provider.metric_input,
            provider.metric_output,
        )
        response_id = getattr(response, "response_id", None)
        if response_id:
            end[sc.RESPONSE_ID] = response_id
        response_model = getattr(response, "response_model", None)
        if response_model:
            end[sc.RESPONSE_MODEL] = response_model
            metric = {**metric, sc.RESPONSE_MODEL: response_model}
        if response.status == "completed":
            if response.finish_reason:
                end[sc.RESPONSE_FINISH_REASONS] = (response.finish_reason,)
            if self.capture_content:
                message = response.message
                value = _content.output_messages(
                    message.content, message.tool_calls, response.finish_reason
                )
                if self._record(end, sc.OUTPUT_MESSAGES, value, provider):
                    end[sc.TRUNCATED] = [*state.cut, sc.OUTPUT_MESSAGES]
        else:
            error_type = error_name(response.error)
            self._fail(span, error_type, response.error, provider)
            metric = {**metric, sc.ERROR_TYPE: error_type}
        if metric is not provider.metric:
            metric_input = {**metric, sc.TOKEN_TYPE: "input"}
            metric_output = {**metric, sc.TOKEN_TYPE: "output"}
        usage = response.usage
        if usage is not None:
            end[sc.USAGE_INPUT_TOKENS] = usage.input_tokens
            end[sc.USAGE_OUTPUT_TOKENS] = usage.output_tokens
            for field_name, attribute in extra_usage(type(usage)):
                count = getattr(usage, field_name, None)
                if isinstance(count, int):
                    end[attribute] = count
            self._tokens.record(usage.input_tokens, metric_input)
            self._tokens.record(usage.output_tokens, metric_output)
        first = response.time_to_first_chunk
        if first is not None and streamed(response):
            end[sc.RESPONSE_TIME_TO_FIRST_CHUNK] = first
            self._first_chunk.record(first, metric)
        if response.duration is not None:
            self._duration.record(response.duration, metric)
        span.set_attributes(end)
        span.end()
        _reset(state.token)

    # --- tools -------------------------------------------------------------------------

    def on_tool_start(self, response: Any, call: ToolCall) -> None:
        """Open the ``execute_tool`` span and make it current for the tool."""
        chain = response.chain
        key = id(chain) if chain is not None else 0
        parent = self._chains.get(key)
        provider = (
            parent.provider
            if parent is not None
            else self._provider(provider_of(response), response.model)
        )
        attributes: dict[str, Any] = {
            sc.OPERATION_NAME: sc.OP_EXECUTE_TOOL,
            sc.TOOL_NAME: call.name,
            sc.TOOL_CALL_ID: call.id,
            sc.TOOL_TYPE: "function",
        }
        tools = getattr(chain, "tools", None) if chain is not None else None
        tool = tools.get(call.name) if isinstance(tools, dict) else None
        description = getattr(tool, "description", None)
        if description:
            attributes[sc.TOOL_DESCRIPTION] = description
        if getattr(tool, "wire_name", None) is not None:  # an agentrt.mcp tool
            # The MCP conventions: with GenAI instrumentation around the call, the MCP
            # attributes go on its execute_tool span rather than on a span of their own.
            attributes[sc.MCP_METHOD_NAME] = "tools/call"
        span = self._tracer.start_span(
            f"{sc.OP_EXECUTE_TOOL} {call.name}",
            parent.context if parent is not None else None,
            kind=SpanKind.INTERNAL,
            attributes=attributes,
        )
        cut: tuple[str, ...] = ()
        if self.capture_content:
            arguments: Any = call.arguments if call.arguments is not None else call.raw_arguments
            content: dict[str, Any] = {}
            if self._record(content, sc.TOOL_CALL_ARGUMENTS, arguments, provider):
                cut = (sc.TOOL_CALL_ARGUMENTS,)
                content[sc.TRUNCATED] = list(cut)
            span.set_attributes(content)
        token = otel_context.attach(trace.set_span_in_context(span))
        state = _Open(span, token, provider, chain=key, cut=cut)
        self._tools[id(call)] = state
        if parent is not None and parent.tools is not None:
            parent.tools[id(call)] = state

    def on_tool_end(self, response: Any, call: ToolCall, result: ToolResult) -> None:
        """Close the ``execute_tool`` span of a call that succeeded."""
        state = self._pop_tool(call)
        if state is None:
            return
        if self.capture_content:
            content: dict[str, Any] = {}
            value = _content.result_value(result.content)
            if self._record(content, sc.TOOL_CALL_RESULT, value, state.provider):
                content[sc.TRUNCATED] = [*state.cut, sc.TOOL_CALL_RESULT]
            state.span.set_attributes(content)
        state.span.end()
        _reset(state.token)

    def on_tool_error(self, response: Any, call: ToolCall, result: ToolResult) -> None:
        """Close the ``execute_tool`` span of a call that failed, timed out or was refused."""
        state = self._pop_tool(call)
        if state is None:
            return
        # An error result without an exception is a call the chain cut short (cancelled).
        error = result.error
        error_type = getattr(result, "error_type", None) or (
            type(error).__name__ if error is not None else sc.CANCELLED
        )
        self._end_tool(state, error_type, result.content)

    def _pop_tool(self, call: ToolCall) -> _Open | None:
        state = self._tools.pop(id(call), None)
        if state is not None:
            chain = self._chains.get(state.chain)
            if chain is not None and chain.tools is not None:
                chain.tools.pop(id(call), None)
        return state

    def _end_tool(self, state: _Open, error_type: str, message: str) -> None:
        span = state.span
        span.set_attribute(sc.ERROR_TYPE, error_type)
        # A tool's error text may quote its arguments: it is content.
        description = message if self.capture_content else error_type
        span.set_status(
            Status(StatusCode.ERROR, _content.redact(description, state.provider.secrets))
        )
        span.end()
        _reset(state.token)

    # --- helpers -----------------------------------------------------------------------

    def _fail(
        self, span: trace.Span, error_type: str, error: BaseException | None, provider: Provider
    ) -> None:
        span.set_attribute(sc.ERROR_TYPE, error_type)
        if error_type == sc.CANCELLED or error is None:
            description = sc.CANCELLED
        else:
            # agentrt's own messages carry no content; a failure of the user's code may.
            own = type(error).__module__.startswith("agentrt")
            description = str(error) if own or self.capture_content else error_type
        span.set_status(Status(StatusCode.ERROR, _content.redact(description, provider.secrets)))

    def _record(
        self,
        target: dict[str, Any],
        attribute: str,
        value: Any,
        provider: Provider,
        dropped: Any = None,
    ) -> bool:
        """Put a content attribute, capped, into ``target``; return whether it was cut."""
        if dropped is None:
            text, cut = _content.cap_json(value, self.max_content_chars, provider.secrets)
        else:
            text, cut = _content.cap_json(value, self.max_content_chars, provider.secrets, dropped)
        target[attribute] = text
        return cut
