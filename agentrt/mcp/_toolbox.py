"""``MCPToolbox``: an MCP server's tools as agentrt tools.

The model sees ``{prefix}__{tool}`` (sanitised to ``[A-Za-z0-9_-]``, at most 64 characters)
when a prefix is given; the server is always called by the tool's own name. A tool's
result becomes what the model reads: its text content, or its ``structuredContent`` as JSON
when it has no text; an ``isError`` result or a JSON-RPC error becomes an error result.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import MCPToolError, UsageError
from ..messages import ToolOutput
from ..tools import Tool, Toolbox
from ._connection import Connection

if TYPE_CHECKING:
    import mcp_types
    from anyio.from_thread import BlockingPortal

__all__ = ["MCPTool", "MCPToolbox", "MCPOutput", "model_name", "to_output"]

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
MAX_NAME = 64


def model_name(tool: str, prefix: str | None) -> str:
    """The name the model sees for ``tool``: prefixed, sanitised, at most 64 characters.

    A name cut to fit keeps a short hash of the whole, so two long names stay distinct.
    """
    full = f"{prefix}__{tool}" if prefix else tool
    name = _UNSAFE.sub("_", full)
    if not re.match(r"[A-Za-z_]", name):
        name = f"_{name}"
    if len(name) > MAX_NAME or name != full:
        digest = hashlib.sha256(full.encode()).hexdigest()[:8]
        if len(name) > MAX_NAME:
            name = f"{name[: MAX_NAME - 9]}_{digest}"
    return name


@dataclass
class MCPOutput:
    """What an MCP tool call gave, split for the model and for the application.

    Attributes:
        text: what the model reads.
        structured: the result's ``structuredContent``, if any.
        media: image and audio content blocks (``{"type", "mimeType", "data"}``).
        result: the SDK's ``CallToolResult``.
    """

    text: str
    structured: Any = None
    media: list[dict[str, Any]] = field(default_factory=list)
    result: Any = None


def to_output(result: mcp_types.CallToolResult) -> MCPOutput:
    """Split a ``CallToolResult`` into the model's text and the application's data."""
    import mcp_types as types

    texts: list[str] = []
    media: list[dict[str, Any]] = []
    for block in result.content:
        if isinstance(block, types.TextContent):
            texts.append(block.text)
        elif isinstance(block, (types.ImageContent, types.AudioContent)):
            media.append({"type": block.type, "mimeType": block.mime_type, "data": block.data})
            texts.append(f"[{block.type} {block.mime_type}, {len(block.data) * 3 // 4} bytes]")
        elif isinstance(block, types.EmbeddedResource):
            resource = block.resource
            if isinstance(resource, types.TextResourceContents):
                texts.append(resource.text)
            else:
                texts.append(f"[resource {resource.uri} ({resource.mime_type or 'binary'})]")
        elif isinstance(block, types.ResourceLink):
            texts.append(f"[resource link {block.uri}]")
        else:  # a content type newer than this code: keep its JSON rather than drop it
            texts.append(block.model_dump_json(by_alias=True, exclude_none=True))
    structured = result.structured_content
    text = "\n".join(texts)
    if not texts and structured is not None:
        text = json.dumps(structured, ensure_ascii=False, separators=(",", ":"))
    return MCPOutput(text, structured, media, result)


class MCPTool(Tool):
    """One tool of an MCP server (made by :meth:`MCPTool.of`, on ``Tool.from_schema``).

    Its schema is the server's own ``inputSchema``; the arguments get ``from_schema``'s
    light checks before the call, and the server validates the rest.

    Attributes:
        wire_name: the tool's own name on the server.
        source: where it comes from, e.g. ``"MCP server 'git' (uvx mcp-server-git)"``.
        output_schema: the tool's declared ``outputSchema``, if any.
        timeout: this tool's own timeout (``None``: the toolbox's ``timeout``).
    """

    wire_name: str
    source: str
    output_schema: dict[str, Any] | None

    @classmethod
    def of(
        cls,
        box: MCPToolbox,
        listed: mcp_types.Tool,
        name: str,
        call: Callable[..., Any],
        async_call: Callable[..., Any] | None,
    ) -> MCPTool:
        """Build the tool ``name`` for the server's tool ``listed``.

        ``call`` is its implementation; ``async_call``, when given, the async half of a
        dual tool (``call`` is then the sync half).
        """
        schema = dict(listed.input_schema or {})
        schema.setdefault("type", "object")
        schema.setdefault("properties", {})
        made = cls.from_schema(name, listed.description or listed.title or "", schema, call)
        assert isinstance(made, MCPTool)
        made.async_fn = async_call
        made.wire_name = listed.name
        made.source = box.source
        made.output_schema = listed.output_schema
        return made

    def __repr__(self) -> str:
        return f"<MCPTool {self.name} ({self.source})>"


class MCPToolbox(Toolbox):
    """The tools of one MCP server, usable in ``tools=[...]``.

    Made by :func:`agentrt.mcp.connect`; valid until its ``async with`` block ends.

    Attributes:
        name: the server's name in messages: its prefix, else what the server calls itself.
        prefix: the prefix of the names the model sees, or ``None``.
        timeout: seconds a call may take unless the tool has its own ``timeout``.
        source: ``"MCP server '<name>' (<command or URL>)"``, named in collision errors.
    """

    def __init__(
        self,
        connection: Connection,
        *,
        prefix: str | None,
        timeout: float | None,
        portal: BlockingPortal | None = None,
    ) -> None:
        self._connection = connection
        self.prefix = prefix
        self.timeout = timeout
        self.name = connection.name
        self.source = f"MCP server {connection.name!r} ({connection.target.describe()})"
        self._portal = portal
        self._version = -1
        self._tools: list[Tool] = []
        self._by_name: dict[str, MCPTool] = {}

    def tools(self) -> list[Tool]:
        """Return the server's tools from its latest listing.

        A chain takes this list when it is created and keeps it: a list change the server
        announces shows in the next chain (or turn of a conversation), never mid-turn.
        """
        if self._version != self._connection.version:
            self._rebuild()
        return list(self._tools)

    @property
    def tools_version(self) -> int:
        """A number that changes whenever the server's tool list changes (for refreshing)."""
        return self._connection.version

    def __getitem__(self, name: str) -> MCPTool:
        """The tool named ``name`` (the model's name or the server's own).

        Raises:
            KeyError: there is no such tool; the message lists those there are.
        """
        self.tools()
        found = self._by_name.get(name)
        if found is None:
            for tool in self._by_name.values():
                if tool.wire_name == name:
                    return tool
            raise KeyError(
                f"{self.source} has no tool {name!r}; it has: {', '.join(self._by_name) or 'none'}"
            )
        return found

    @property
    def protocol_version(self) -> str:
        """The MCP protocol version negotiated with the server."""
        return self._connection.protocol_version

    def _rebuild(self) -> None:
        version = self._connection.version
        tools: list[MCPTool] = []
        by_name: dict[str, MCPTool] = {}
        for listed in self._connection.listing:
            name = model_name(listed.name, self.prefix)
            if name in by_name:  # two names sanitised alike: keep both, distinctly
                digest = hashlib.sha256(listed.name.encode()).hexdigest()[:8]
                name = f"{name[: MAX_NAME - 9]}_{digest}"
            tool = self._make(listed, name)
            tools.append(tool)
            by_name[name] = tool
        self._tools, self._by_name, self._version = list(tools), by_name, version

    def _make(self, listed: mcp_types.Tool, name: str) -> MCPTool:
        box = self
        holder: list[MCPTool] = []

        async def call(**arguments: Any) -> ToolOutput:
            return await box._call(holder[0], arguments)

        portal = self._portal
        if portal is None:
            tool = MCPTool.of(self, listed, name, call, None)
        else:
            # connect_sync(): the connection lives on the portal's loop; sync chains call
            # through it from a worker thread, async chains (any loop) via a thread hop.
            def call_sync(**arguments: Any) -> ToolOutput:
                result: ToolOutput = portal.call(box._call, holder[0], arguments)
                return result

            async def call_from_any_loop(**arguments: Any) -> ToolOutput:
                import anyio.to_thread

                return await anyio.to_thread.run_sync(
                    portal.call, box._call, holder[0], arguments, abandon_on_cancel=True
                )

            tool = MCPTool.of(self, listed, name, call_sync, call_from_any_loop)
        holder.append(tool)
        return tool

    async def _call(self, tool: MCPTool, arguments: dict[str, Any]) -> ToolOutput:
        timeout = tool.timeout if tool.timeout is not None else self.timeout
        result = await self._connection.call(tool.wire_name, arguments, timeout)
        output = to_output(result)
        if result.is_error:
            error = MCPToolError(
                output.text or f"the MCP tool {tool.wire_name!r} failed without a message",
                server=self.name,
                result=result,
            )
            error.structured = output.structured
            raise error
        return ToolOutput(output.text, output.structured, tuple(output.media))

    def __repr__(self) -> str:
        return f"<MCPToolbox {self.source} tools={len(self.tools())}>"


def check_prefix(prefix: str | None) -> str | None:
    """Check ``prefix=``.

    Raises:
        UsageError: not a string, or nothing usable once sanitised.
    """
    if prefix is None:
        return None
    if not isinstance(prefix, str) or not prefix.strip("_- "):
        raise UsageError(f"prefix= must be a non-empty string such as 'git', got {prefix!r}")
    return prefix
