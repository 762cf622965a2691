"""An MCP server for agentrt's tests and benchmarks, written on the ``mcp`` SDK's low-level server.

Run it over stdio (``python tools/mcp_servers/demo.py``), streamable HTTP
(``python tools/mcp_servers/demo.py --http 0``: it binds 127.0.0.1, prints ``PORT <n>`` on
stdout once listening) or the legacy HTTP+SSE transport (``--sse 0``, at ``/sse``).
``--prefix-tools X`` renames every tool ``X_<name>``. ``--legacy`` (stdio) serves only the
handshake-era protocol (``initialize``, ``list_changed`` notifications).

Its tools exercise what a client must handle: plain text, structured content with and
without text, ``isError`` results, a JSON-RPC error, a slow call whose server-side
cancellations are recorded, a crash mid-call, a huge result, an image, and a tool list that
changes while connected (announced on ``subscriptions/listen`` to 2026-07-28 clients and
with the ``list_changed`` notification to legacy ones).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import socket
import sys
from typing import Any

import anyio
import mcp_types as types
from mcp.server import Server
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel.server import NotificationOptions
from mcp.server.subscriptions import InMemorySubscriptionBus, ListenHandler, ToolsListChanged
from mcp.shared.exceptions import MCPError

# A 1x1 transparent PNG.
PNG = base64.b64encode(
    bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
        "1f15c4890000000d49444154789c63000100000500010d0a2db40000000049454e44ae426082"
    )
).decode()

OBJECT = "object"


def _schema(**props: str) -> dict[str, Any]:
    return {
        "type": OBJECT,
        "properties": {name: {"type": kind} for name, kind in props.items()},
        "required": list(props),
    }


BASE_TOOLS: list[types.Tool] = [
    types.Tool(name="echo", description="Echo the text back.", input_schema=_schema(text="string")),
    types.Tool(
        name="add",
        description="Add two integers.",
        input_schema=_schema(a="integer", b="integer"),
        output_schema={"type": OBJECT, "properties": {"sum": {"type": "integer"}}},
    ),
    types.Tool(
        name="structured_only",
        description="Return structured content and no text.",
        input_schema=_schema(n="integer"),
    ),
    types.Tool(name="fail", description="Always fails (isError).", input_schema=_schema()),
    types.Tool(
        name="rpc_error", description="Answers with a JSON-RPC error.", input_schema=_schema()
    ),
    types.Tool(
        name="sleep",
        description="Sleep for some seconds (tagged, to be found by 'sleeping').",
        input_schema={
            "type": OBJECT,
            "properties": {"seconds": {"type": "number"}, "tag": {"type": "string"}},
            "required": ["seconds"],
        },
    ),
    types.Tool(
        name="cancelled",
        description="The tags of the sleep calls cancelled on the server so far.",
        input_schema=_schema(),
    ),
    types.Tool(
        name="sleeping",
        description="The tags of the sleep calls running on the server now.",
        input_schema=_schema(),
    ),
    types.Tool(
        name="crash", description="Exit the server process mid-call.", input_schema=_schema()
    ),
    types.Tool(name="big", description="Return n characters.", input_schema=_schema(n="integer")),
    types.Tool(name="image", description="Return an image and a caption.", input_schema=_schema()),
    types.Tool(name="add_tool", description="Add the tool 'extra'.", input_schema=_schema()),
    types.Tool(name="pid", description="The server's process id.", input_schema=_schema()),
    types.Tool(
        name="header",
        description="An HTTP request header, as the server received it.",
        input_schema=_schema(name="string"),
    ),
]
EXTRA = types.Tool(name="extra", description="Added while connected.", input_schema=_schema())


class Demo:
    """The server's state: its tool list and what it observed."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.tools = list(BASE_TOOLS)
        self.cancelled: list[str] = []
        self.sleeping: list[str] = []
        self.bus = InMemorySubscriptionBus()

    def listed(self) -> list[types.Tool]:
        if not self.prefix:
            return self.tools
        return [t.model_copy(update={"name": f"{self.prefix}_{t.name}"}) for t in self.tools]

    async def list_tools(
        self, ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(tools=self.listed())

    async def call_tool(
        self, ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        name = params.name.removeprefix(f"{self.prefix}_") if self.prefix else params.name
        args = params.arguments or {}
        if name not in {t.name for t in self.tools}:
            raise MCPError(code=types.INVALID_PARAMS, message=f"unknown tool {params.name}")
        if name == "echo":
            return _text(str(args["text"]))
        if name == "add":
            total = int(args["a"]) + int(args["b"])
            return types.CallToolResult(
                content=[types.TextContent(type="text", text=str(total))],
                structured_content={"sum": total},
            )
        if name == "structured_only":
            return types.CallToolResult(content=[], structured_content={"n": args["n"], "ok": True})
        if name == "fail":
            return types.CallToolResult(
                content=[types.TextContent(type="text", text="it broke")], is_error=True
            )
        if name == "rpc_error":
            raise MCPError(code=-32042, message="the custom failure")
        if name == "sleep":
            tag = str(args.get("tag", ""))
            self.sleeping.append(tag)
            try:
                await anyio.sleep(float(args["seconds"]))
            except anyio.get_cancelled_exc_class():
                self.cancelled.append(tag)
                raise
            finally:
                self.sleeping.remove(tag)
            return _text("slept")
        if name == "sleeping":
            return _text(json.dumps(self.sleeping))
        if name == "cancelled":
            return _text(json.dumps(self.cancelled))
        if name == "crash":
            sys.stdout.flush()
            os._exit(3)
        if name == "big":
            return _text("x" * int(args["n"]))
        if name == "image":
            return types.CallToolResult(
                content=[
                    types.TextContent(type="text", text="a pixel"),
                    types.ImageContent(type="image", data=PNG, mime_type="image/png"),
                ]
            )
        if name == "add_tool":
            if EXTRA not in self.tools:
                self.tools.append(EXTRA)
            await self.bus.publish(ToolsListChanged())
            if ctx.protocol_version not in _modern():
                await ctx.session.send_tool_list_changed()
            return _text("added")
        if name == "extra":
            return _text("extra works")
        if name == "pid":
            return _text(str(os.getpid()))
        if name == "header":
            request = ctx.request
            headers = getattr(request, "headers", None) or {}
            return _text(str(headers.get(str(args["name"]), "")))
        raise AssertionError(name)  # pragma: no cover

    def server(self) -> Server[Any]:
        server: Server[Any] = Server(
            "agentrt-demo",
            version="1.0",
            on_list_tools=self.list_tools,
            on_call_tool=self.call_tool,
            on_subscriptions_listen=ListenHandler(self.bus),
        )
        return server


def _modern() -> tuple[str, ...]:
    from mcp_types.version import MODERN_PROTOCOL_VERSIONS

    return tuple(MODERN_PROTOCOL_VERSIONS)


def _text(text: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)])


async def _serve_stdio(server: Server[Any], legacy: bool) -> None:
    from mcp.server.runner import serve_loop
    from mcp.server.stdio import stdio_server

    options = server.create_initialization_options(NotificationOptions(tools_changed=True))
    async with stdio_server() as (read, write):
        if not legacy:
            await server.run(read, write, options)
            return
        # The SDK's handshake-only loop: a 2026-07-28 probe is refused, so clients fall back
        # to initialize and get list changes as notifications.
        async with server.lifespan(server) as state:
            await serve_loop(server, read, write, lifespan_state=state, init_options=options)


def _listen(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    print(f"PORT {sock.getsockname()[1]}", flush=True)
    return sock


async def _serve_sse(server: Server[Any], port: int) -> None:
    # The legacy HTTP+SSE transport: GET /sse streams, POST /messages/ sends.
    import uvicorn
    from mcp.server.sse import SseServerTransport
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Mount, Route

    sse = SseServerTransport("/messages/")
    options = server.create_initialization_options(NotificationOptions(tools_changed=True))

    async def handle(request: Request) -> Response:
        async with sse.connect_sse(request.scope, request.receive, request._send) as (read, write):
            await server.run(read, write, options)
        return Response()

    app = Starlette(
        routes=[
            Route("/sse", endpoint=handle, methods=["GET"]),
            Mount("/messages/", app=sse.handle_post_message),
        ]
    )
    config = uvicorn.Config(app, log_level="warning")
    await uvicorn.Server(config).serve(sockets=[_listen(port)])


async def _serve_http(server: Server[Any], port: int) -> None:
    import uvicorn

    app = server.streamable_http_app()
    config = uvicorn.Config(app, log_level="warning", lifespan="on")
    await uvicorn.Server(config).serve(sockets=[_listen(port)])


def main(argv: list[str] | None = None) -> None:
    """Run the demo server."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--http", type=int, default=None, metavar="PORT")
    parser.add_argument("--sse", type=int, default=None, metavar="PORT")
    parser.add_argument("--legacy", action="store_true", help="handshake-era protocol only")
    parser.add_argument("--prefix-tools", default="")
    args = parser.parse_args(argv)
    server = Demo(args.prefix_tools).server()
    if args.sse is not None:
        anyio.run(_serve_sse, server, args.sse)
    elif args.http is not None:
        anyio.run(_serve_http, server, args.http)
    else:
        anyio.run(_serve_stdio, server, args.legacy)


if __name__ == "__main__":
    main()
