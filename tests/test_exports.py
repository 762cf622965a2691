from __future__ import annotations

import agentrt

EXPECTED = {
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
}


def test_all_is_pinned() -> None:
    assert set(agentrt.__all__) - {"SQLiteLogger"} == EXPECTED
    for name in agentrt.__all__:
        assert hasattr(agentrt, name), name


def test_error_tree() -> None:
    assert issubclass(agentrt.ProviderError, agentrt.AgentrtError)
    for cls in (
        agentrt.AuthenticationError,
        agentrt.BadRequestError,
        agentrt.RateLimitError,
        agentrt.APIConnectionError,
        agentrt.APITimeoutError,
    ):
        assert issubclass(cls, agentrt.ProviderError)
    assert issubclass(agentrt.APITimeoutError, agentrt.APIConnectionError)
    assert issubclass(agentrt.ChainLimitError, agentrt.AgentrtError)
    assert issubclass(agentrt.CancelChain, agentrt.AgentrtError)
    assert issubclass(agentrt.ToolError, agentrt.AgentrtError)


def test_testing_module() -> None:
    from agentrt.testing import FunctionModel

    assert issubclass(FunctionModel, agentrt.AsyncModel)
