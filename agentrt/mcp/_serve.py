"""Publishing agentrt tools as an MCP server, on the ``mcp`` SDK's low-level server.

Each call goes through agentrt's own tool runner, exactly as in a chain: the arguments are
validated against the tool's schema (a failure is an ``isError`` result the client's model
can correct itself from), sync tools run in worker threads under agentrt's limiter, dual
tools run their async half, and a tool's ``timeout`` applies. An unknown tool name is a
JSON-RPC ``Invalid params`` error, as the MCP specification asks.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import anyio

from .._execute import ToolRunner
from ..callbacks import Hooks
from ..errors import UsageError
from ..messages import ToolCall
from ..tools import Tool, collect_tools

if TYPE_CHECKING:
    from mcp.server import Server

__all__ = ["build_server", "serve", "serve_async"]

_TRANSPORTS = ("stdio", "http")


def build_server(
    tools: Iterable[Any], *, name: str, limiter: anyio.CapacityLimiter | None = None
) -> Server[Any]:
    """Build the SDK's low-level ``Server`` offering ``tools``.

    Raises:
        UsageError: ``name`` is empty, or the tools cannot be offered together.
    """
    import mcp_types as types
    from mcp.server import Server
    from mcp.shared.exceptions import MCPError

    if not isinstance(name, str) or not name.strip():
        raise UsageError(f"serve() needs a server name such as name='calculator', got {name!r}")
    try:
        offered = collect_tools(tools)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"cannot serve these tools: {exc}") from exc
    if not offered:
        raise UsageError("serve() got no tools: pass functions, @tool objects or toolboxes")
    listed = [
        types.Tool(name=t.name, description=t.description or None, input_schema=t.parameters)
        for t in offered.values()
    ]
    runner = ToolRunner(offered, limiter=limiter, max_result_chars=None)
    hooks = Hooks()

    async def list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
        return types.ListToolsResult(tools=listed)

    async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        tool: Tool | None = offered.get(params.name)
        if tool is None:
            raise MCPError(
                code=types.INVALID_PARAMS,
                message=f"unknown tool {params.name!r}; the tools are: {', '.join(offered)}",
            )
        call = ToolCall(
            id=str(ctx.request_id), name=params.name, arguments=dict(params.arguments or {})
        )
        (result,) = await runner.run([call], hooks, None)
        text = result.content.removeprefix("Error: ") if result.is_error else result.content
        return types.CallToolResult(
            content=[types.TextContent(type="text", text=text)], is_error=result.is_error
        )

    return Server(name, version=_version(), on_list_tools=list_tools, on_call_tool=call_tool)


def _version() -> str:
    from .. import __version__

    return __version__


async def serve_async(
    tools: Iterable[Any],
    *,
    name: str,
    transport: str = "stdio",
    host: str = "127.0.0.1",
    port: int | None = None,
    limiter: anyio.CapacityLimiter | None = None,
) -> None:
    """Serve ``tools`` over MCP until cancelled (stdio: until the client closes stdin).

    Args:
        tools: functions, ``@tool`` objects and toolboxes, as ``tools=[...]`` takes them.
        name: the server's name, sent to clients.
        transport: ``"stdio"`` or ``"http"`` (streamable HTTP at ``/mcp``).
        host: the address to listen on (HTTP only).
        port: the port to listen on (HTTP only; ``None`` or 0: a free one, printed on stderr).
        limiter: the thread limiter of sync tools (default: anyio's).

    Raises:
        UsageError: a wrong argument.
    """
    if transport not in _TRANSPORTS:
        raise UsageError(f"transport must be 'stdio' or 'http', got {transport!r}")
    if transport == "stdio" and port is not None:
        raise UsageError("port= is for transport='http'; a stdio server has no port")
    if port is not None and (not isinstance(port, int) or not 0 <= port < 65536):
        raise UsageError(f"port must be an integer from 0 to 65535, got {port!r}")
    server = build_server(tools, name=name, limiter=limiter)
    if transport == "stdio":
        from mcp.server.stdio import stdio_server

        async with stdio_server() as (read, write):
            await server.run(read, write, server.create_initialization_options())
        return
    import uvicorn

    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port or 0))
    except OSError as exc:
        sock.close()
        raise UsageError(f"cannot listen on {host}:{port}: {exc}") from exc
    bound = sock.getsockname()[1]
    sys.stderr.write(f"agentrt: serving MCP tools at http://{host}:{bound}/mcp\n")
    sys.stderr.flush()
    app = server.streamable_http_app(host=host)
    config = uvicorn.Config(app, log_level="warning", lifespan="on")
    await uvicorn.Server(config).serve(sockets=[sock])


def serve(
    tools: Iterable[Any],
    *,
    name: str,
    transport: str = "stdio",
    host: str = "127.0.0.1",
    port: int | None = None,
) -> None:
    """Serve ``tools`` over MCP, blocking until stopped; see :func:`serve_async`."""
    anyio.run(lambda: serve_async(tools, name=name, transport=transport, host=host, port=port))
