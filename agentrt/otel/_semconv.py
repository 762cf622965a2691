"""The OpenTelemetry GenAI semantic conventions agentrt follows: one version, one place.

The GenAI conventions have status Development. agentrt follows the text of release
``v1.41.1`` of ``open-telemetry/semantic-conventions`` (``docs/gen-ai/``), the last release
that holds them before they moved to ``open-telemetry/semantic-conventions-genai``. That
repository has no release yet, and its unreleased changes replace the
``gen_ai.client.token.usage`` histogram by counters; when it releases, this module is the
one to update.
"""

from __future__ import annotations

__all__ = [
    "DURATION_BUCKETS",
    "SCHEMA_URL",
    "SEMCONV_VERSION",
    "TOKEN_BUCKETS",
]

#: The semantic-conventions release whose ``docs/gen-ai`` agentrt follows.
SEMCONV_VERSION = "1.41.1"
SCHEMA_URL = f"https://opentelemetry.io/schemas/{SEMCONV_VERSION}"

# --- operation names and span kinds (gen-ai-spans.md, gen-ai-agent-spans.md) -----------------
OP_CHAT = "chat"
OP_INVOKE_AGENT = "invoke_agent"
OP_EXECUTE_TOOL = "execute_tool"

# --- attributes -----------------------------------------------------------------------------
OPERATION_NAME = "gen_ai.operation.name"
PROVIDER_NAME = "gen_ai.provider.name"
AGENT_NAME = "gen_ai.agent.name"
CONVERSATION_ID = "gen_ai.conversation.id"
OUTPUT_TYPE = "gen_ai.output.type"
REQUEST_MODEL = "gen_ai.request.model"
REQUEST_STREAM = "gen_ai.request.stream"
RESPONSE_ID = "gen_ai.response.id"
RESPONSE_MODEL = "gen_ai.response.model"
RESPONSE_FINISH_REASONS = "gen_ai.response.finish_reasons"
RESPONSE_TIME_TO_FIRST_CHUNK = "gen_ai.response.time_to_first_chunk"
USAGE_INPUT_TOKENS = "gen_ai.usage.input_tokens"
USAGE_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
USAGE_CACHE_READ_INPUT_TOKENS = "gen_ai.usage.cache_read.input_tokens"
USAGE_CACHE_CREATION_INPUT_TOKENS = "gen_ai.usage.cache_creation.input_tokens"
USAGE_REASONING_OUTPUT_TOKENS = "gen_ai.usage.reasoning.output_tokens"
TOOL_NAME = "gen_ai.tool.name"
TOOL_CALL_ID = "gen_ai.tool.call.id"
TOOL_DESCRIPTION = "gen_ai.tool.description"
TOOL_TYPE = "gen_ai.tool.type"
TOKEN_TYPE = "gen_ai.token.type"
SERVER_ADDRESS = "server.address"
SERVER_PORT = "server.port"
ERROR_TYPE = "error.type"
MCP_METHOD_NAME = "mcp.method.name"  # mcp.md: on the execute_tool span of an MCP call

# Opt-in content attributes: JSON strings on spans, in the conventions' JSON schemas
# (gen-ai-input-messages.json, gen-ai-output-messages.json, gen-ai-system-instructions.json,
# gen-ai-tool-definitions.json).
INPUT_MESSAGES = "gen_ai.input.messages"
OUTPUT_MESSAGES = "gen_ai.output.messages"
SYSTEM_INSTRUCTIONS = "gen_ai.system_instructions"
TOOL_DEFINITIONS = "gen_ai.tool.definitions"
TOOL_CALL_ARGUMENTS = "gen_ai.tool.call.arguments"
TOOL_CALL_RESULT = "gen_ai.tool.call.result"

#: ``generation option -> attribute`` for the request parameters a chat span records.
REQUEST_OPTIONS = {
    "max_tokens": "gen_ai.request.max_tokens",
    "temperature": "gen_ai.request.temperature",
    "top_p": "gen_ai.request.top_p",
    "top_k": "gen_ai.request.top_k",
    "stop": "gen_ai.request.stop_sequences",
    "seed": "gen_ai.request.seed",
    "frequency_penalty": "gen_ai.request.frequency_penalty",
    "presence_penalty": "gen_ai.request.presence_penalty",
}

#: agentrt provider prefix -> ``gen_ai.provider.name`` (a well-known value where one fits;
#: ``gcp.gemini`` is the value for the generativelanguage.googleapis.com endpoint).
PROVIDER_NAMES = {"openai": "openai", "anthropic": "anthropic", "gemini": "gcp.gemini"}

#: agentrt's normalised finish reasons -> the output-messages schema's ``FinishReason``.
OUTPUT_FINISH_REASONS = {
    "stop": "stop",
    "tool_calls": "tool_call",
    "length": "length",
    "content_filter": "content_filter",
}

# --- metrics (gen-ai-metrics.md) ------------------------------------------------------------
OPERATION_DURATION = "gen_ai.client.operation.duration"
TOKEN_USAGE = "gen_ai.client.token.usage"
TIME_TO_FIRST_CHUNK = "gen_ai.client.operation.time_to_first_chunk"

#: Explicit bucket boundaries the conventions give for the duration histograms (seconds).
DURATION_BUCKETS = (
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
)  # fmt: skip
#: Explicit bucket boundaries the conventions give for ``gen_ai.client.token.usage``.
TOKEN_BUCKETS = (
    1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864,
)  # fmt: skip

# --- agentrt's own names (the conventions define none for these) ------------------------------
#: Span event added to a ``chat`` span before each retry of its request.
RETRY_EVENT = "agentrt.retry"
RETRY_ATTEMPT = "agentrt.retry.attempt"
RETRY_DELAY = "agentrt.retry.delay"
#: Names of the content attributes of this span that were cut to the size limit.
TRUNCATED = "agentrt.content.truncated"
#: ``error.type`` of an operation ended by cancellation (asyncio's and trio's alike).
CANCELLED = "cancelled"
