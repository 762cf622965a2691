"""The agentrt exception tree.

Errors::

    AgentrtError
    ├── UsageError                   wrong use of the API (bad model id, sync call in a loop)
    │   ├── UnknownModelError
    │   └── MissingAPIKeyError
    ├── ChainLimitError              max_turns reached; carries the responses so far
    ├── OutputValidationError        output_type: every answer failed validation (.attempts)
    ├── OutputRefusedError           output_type: the model refused (.text)
    ├── ToolError                    a tool call that could not be completed
    │   ├── ToolArgumentsError       arguments not JSON, or failed validation
    │   ├── UnknownToolError
    │   ├── ToolTimeoutError
    │   └── MCPToolError             an MCP tool's isError result, JSON-RPC error, lost server
    ├── MCPConnectionError           an MCP server could not be reached or did not answer
    └── ProviderError                the model provider failed; status, message, request id
        ├── AuthenticationError      401 / 403
        ├── BadRequestError          400 / 404 / 409 / 413 / 422, a blocked prompt
        ├── RateLimitError           429
        ├── ServerError              5xx, 529, an error event inside a stream
        └── APIConnectionError       no usable response: refused, reset, dropped mid-stream
            └── APITimeoutError

Signals (subclasses of ``AgentrtError`` but not failures)::

    CancelChain                      raised by a tool or ``before_call`` to end a chain cleanly

Tools may raise ``ToolError`` themselves: its message goes back to the model as the result.
No exception here ever holds an API key.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from .messages import ToolCall

__all__ = [
    "APIConnectionError",
    "APITimeoutError",
    "AgentrtError",
    "AuthenticationError",
    "BadRequestError",
    "CancelChain",
    "ChainLimitError",
    "MCPConnectionError",
    "MCPToolError",
    "MissingAPIKeyError",
    "OutputRefusedError",
    "OutputValidationError",
    "ProviderError",
    "RateLimitError",
    "ServerError",
    "ToolArgumentsError",
    "ToolError",
    "ToolTimeoutError",
    "UnknownModelError",
    "UnknownToolError",
    "UsageError",
]


def _rebuild(cls: type[BaseException], args: tuple[Any, ...], state: dict[str, Any]) -> Any:
    """Recreate a pickled agentrt exception without calling its ``__init__``."""
    error = cls.__new__(cls)
    BaseException.__init__(error, *args)
    error.__dict__.update(state)
    return error


class AgentrtError(Exception):
    """Base class of every agentrt exception.

    Every agentrt exception survives ``pickle`` with its message and attributes (errors
    cross process boundaries in batch runners and worker pools), whatever the arguments
    of its ``__init__``.
    """

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.args, self.__dict__))


class UsageError(AgentrtError):
    """The API was used in a way that cannot work; the message says what to do instead."""


class UnknownModelError(UsageError):
    """The model id names no known provider."""


class MissingAPIKeyError(UsageError):
    """A remote provider needs an API key and none was given."""

    def __init__(self, provider: str, env_var: str) -> None:
        self.provider = provider
        self.env_var = env_var
        super().__init__(
            f"no API key for {provider}: set the {env_var} environment variable "
            f"or pass api_key=... to get_async_model()"
        )


class ChainLimitError(AgentrtError):
    """The chain reached ``max_turns`` while the model still asked for tools."""

    def __init__(self, message: str, responses: Sequence[Any]) -> None:
        super().__init__(message)
        #: The ``Response`` of every turn that ran (pickled as finished copies with their
        #: text, usage, tool calls and results, detached from the model).
        self.responses = list(responses)


class CancelChain(AgentrtError):
    """Raise in a tool or in ``before_call`` to end the chain cleanly with what it has."""


class ToolError(AgentrtError):
    """A tool call failed; the message is what the model is told.

    Tools may raise it to send a clean message back to the model.
    """

    def __init__(self, message: str, *, call: ToolCall | None = None) -> None:
        super().__init__(message)
        self.call = call


class ToolArgumentsError(ToolError):
    """The model's arguments were not a JSON object or failed validation."""


class UnknownToolError(ToolError):
    """The model called a tool that was not offered."""


class ToolTimeoutError(ToolError):
    """The tool did not finish within its timeout."""


class ProviderError(AgentrtError):
    """The model provider returned an error or could not be reached.

    Attributes:
        provider: ``"openai"``, ``"anthropic"``, ``"gemini"``, ...
        status: the HTTP status, or ``None`` when there was no response.
        message: the provider's own error message.
        request_id: the provider's request id, when it sent one.
    """

    def __init__(
        self,
        message: str,
        *,
        provider: str = "",
        status: int | None = None,
        request_id: str | None = None,
        body: str | None = None,
    ) -> None:
        self.provider = provider
        self.status = status
        self.message = message
        self.request_id = request_id
        self.body = body
        parts = [p for p in (provider, f"HTTP {status}" if status else None) if p]
        prefix = f"{' '.join(parts)}: " if parts else ""
        suffix = f" (request id {request_id})" if request_id else ""
        super().__init__(f"{prefix}{message}{suffix}")


class AuthenticationError(ProviderError):
    """The provider rejected the API key (401/403): check the key and its permissions."""


class BadRequestError(ProviderError):
    """The provider rejected the request as invalid; retrying will not help."""


class RateLimitError(ProviderError):
    """The provider is rate limiting (429) and retries were exhausted."""


class ServerError(ProviderError):
    """The provider failed (5xx, 529 or an error event in a stream) and retries were exhausted."""


class APIConnectionError(ProviderError):
    """No usable response: the connection failed, or a stream broke part-way."""


class APITimeoutError(APIConnectionError):
    """The request timed out."""


class MCPConnectionError(AgentrtError):
    """An MCP server could not be reached, did not answer in time, or went away.

    Attributes:
        server: the server's name (its prefix, its config key or its command/URL).
    """

    def __init__(self, message: str, *, server: str = "") -> None:
        super().__init__(message)
        self.server = server


class MCPToolError(ToolError):
    """An MCP tool call failed: an ``isError`` result, a JSON-RPC error or a lost connection.

    Attributes:
        server: the server's name.
        code: the JSON-RPC error code, or ``None`` for an ``isError`` result.
        result: the MCP ``CallToolResult`` of an ``isError`` result, else ``None``.
        structured: that result's ``structuredContent`` (also on the ``ToolResult``).
    """

    def __init__(
        self, message: str, *, server: str = "", code: int | None = None, result: Any = None
    ) -> None:
        super().__init__(message)
        self.server = server
        self.code = code
        self.result = result
        self.structured: Any = None


# --- typed results (``output_type=``) --------------------------------------------------------


class OutputAttempt(NamedTuple):
    """One answer that failed validation: what the model sent and why it was refused."""

    #: The model's raw answer: the JSON text, or the final-result tool's arguments.
    raw: str
    #: The validation error, as it was sent back to the model.
    error: str


class OutputValidationError(AgentrtError):
    """The model's answer failed validation against ``output_type`` on every attempt.

    Attributes:
        attempts: one :class:`OutputAttempt` per answer, in order (the first answer and one
            per retry), each with the raw text and the error.
    """

    def __init__(self, message: str, attempts: Sequence[OutputAttempt] = ()) -> None:
        super().__init__(message)
        self.attempts: list[OutputAttempt] = list(attempts)


class OutputRefusedError(AgentrtError):
    """The model refused to produce the requested output.

    OpenAI reports a ``refusal``, Anthropic a ``stop_reason`` of ``"refusal"``.

    Attributes:
        text: the model's refusal text (may be empty when the provider sends none).
        provider: the provider's name, when known.
    """

    def __init__(self, text: str, *, provider: str = "") -> None:
        self.text = text
        self.provider = provider
        who = f"{provider}: " if provider else ""
        super().__init__(f"{who}the model refused to answer with the requested output: {text!r}")
