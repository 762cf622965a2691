"""An MCP tool call is its ``execute_tool`` span and carries its W3C trace context to the server."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.trace import SpanKind, StatusCode
from test_otel_kit import Telemetry, telemetry

import agentrt.mcp
from agentrt.otel import _semconv as sc
from agentrt.testing import FunctionModel, ModelTurn, call

__all__ = ["telemetry"]  # fixtures, used by name

# CI's lowest-versions run leaves the mcp extra out (its floors lie above agentrt's) and
# ignores tests/test_mcp*; everywhere else the extra is installed and this runs.
pytest.importorskip("mcp", reason="the mcp extra is not installed (CI's lowest-versions run)")

# A stdio MCP server whose one tool answers with the ``_meta`` of the request it received.
SERVER = textwrap.dedent(
    """
    import json
    import anyio
    import mcp_types as types
    from mcp.server import Server
    from mcp.server.lowlevel.server import NotificationOptions
    from mcp.server.stdio import stdio_server

    TOOL = types.Tool(
        name="whoami",
        description="Returns the request's _meta.",
        input_schema={"type": "object", "properties": {}},
    )

    async def list_tools(ctx, params):
        return types.ListToolsResult(tools=[TOOL])

    async def call_tool(ctx, params):
        meta = ctx.meta.model_dump() if hasattr(ctx.meta, "model_dump") else dict(ctx.meta or {})
        text = json.dumps({k: v for k, v in meta.items() if k in ("traceparent", "tracestate")})
        return types.CallToolResult(content=[types.TextContent(type="text", text=text)])

    async def main():
        server = Server("meta-echo", on_list_tools=list_tools, on_call_tool=call_tool)
        options = server.create_initialization_options(NotificationOptions())
        async with stdio_server() as (read, write):
            await server.run(read, write, options)

    anyio.run(main)
    """
)


def whoami_model() -> FunctionModel:
    def turn(messages: list[Any], tools: Any) -> Any:
        if not any(m.role == "tool" for m in messages):
            return ModelTurn(tool_calls=[call("whoami")])
        return next(m.content for m in messages if m.role == "tool")

    return FunctionModel(turn)


@pytest.mark.anyio
async def test_an_mcp_call_is_one_execute_tool_span(telemetry: Telemetry, tmp_path: Path) -> None:
    script = tmp_path / "meta_echo.py"
    script.write_text(SERVER)
    async with agentrt.mcp.connect([sys.executable, str(script)]) as toolbox:
        chain = whoami_model().chain("go", tools=[toolbox], callbacks=[telemetry.handler])
        await chain.text()
    names = sorted(s.name for s in telemetry.spans())
    assert names == ["chat function", "chat function", "execute_tool whoami", "invoke_agent"]
    (tool_span,) = telemetry.named("execute_tool")
    assert tool_span.kind is SpanKind.INTERNAL
    attributes = dict(tool_span.attributes or {})
    assert attributes[sc.TOOL_NAME] == "whoami"
    assert attributes[sc.MCP_METHOD_NAME] == "tools/call"
    assert tool_span.status.status_code is StatusCode.UNSET


@pytest.mark.anyio
async def test_an_mcp_call_carries_the_execute_tool_trace_context(
    telemetry: Telemetry, tmp_path: Path
) -> None:
    script = tmp_path / "meta_echo.py"
    script.write_text(SERVER)
    async with agentrt.mcp.connect([sys.executable, str(script)]) as toolbox:
        chain = whoami_model().chain("go", tools=[toolbox], callbacks=[telemetry.handler])
        meta = json.loads(await chain.text())
    (tool_span,) = telemetry.named("execute_tool")
    # No global TracerProvider here: the SDK's own client span is non-recording and
    # injects its parent's context, the execute_tool span's.
    version, trace_id, span_id, flags = meta["traceparent"].split("-")
    assert int(trace_id, 16) == tool_span.context.trace_id
    assert int(span_id, 16) == tool_span.context.span_id
    assert version == "00" and int(flags, 16) & 1  # sampled
