"""agentrt: an asyncio-first runtime for LLM agents that call tools."""

from ._chain import AsyncChain
from ._model import AsyncConversation, AsyncModel, get_async_model
from ._response import AsyncResponse
from ._retry import RetryPolicy
from .batch import BatchResult, RateLimit, run_batch, run_batch_sync
from .callbacks import CallbackHandler, UsageTracker, track_usage
from .errors import (
    AgentrtError,
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    CancelChain,
    ChainLimitError,
    MCPConnectionError,
    MCPToolError,
    MissingAPIKeyError,
    OutputAttempt,
    OutputRefusedError,
    OutputValidationError,
    ProviderError,
    RateLimitError,
    ServerError,
    ToolArgumentsError,
    ToolError,
    ToolTimeoutError,
    UnknownModelError,
    UnknownToolError,
    UsageError,
)
from .logs import SQLiteLogger
from .messages import Message, StreamChunk, ToolCall, ToolOutput, ToolResult, Usage
from .sync import Chain, Conversation, Model, Response, get_model
from .tools import Tool, Toolbox, async_tool_is, tool

__version__ = "0.1.0"

__all__ = [
    "APIConnectionError",
    "APITimeoutError",
    "AgentrtError",
    "AsyncChain",
    "AsyncConversation",
    "AsyncModel",
    "AsyncResponse",
    "AuthenticationError",
    "BadRequestError",
    "BatchResult",
    "CallbackHandler",
    "CancelChain",
    "Chain",
    "ChainLimitError",
    "Conversation",
    "MCPConnectionError",
    "MCPToolError",
    "Message",
    "MissingAPIKeyError",
    "Model",
    "OutputAttempt",
    "OutputRefusedError",
    "OutputValidationError",
    "ProviderError",
    "RateLimit",
    "RateLimitError",
    "Response",
    "RetryPolicy",
    "SQLiteLogger",
    "ServerError",
    "StreamChunk",
    "Tool",
    "ToolArgumentsError",
    "ToolCall",
    "ToolError",
    "ToolOutput",
    "ToolResult",
    "ToolTimeoutError",
    "Toolbox",
    "UnknownModelError",
    "UnknownToolError",
    "Usage",
    "UsageError",
    "UsageTracker",
    "__version__",
    "async_tool_is",
    "get_async_model",
    "get_model",
    "run_batch",
    "run_batch_sync",
    "tool",
    "track_usage",
]
