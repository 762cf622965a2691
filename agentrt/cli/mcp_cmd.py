"""MCP on the command line: ``agentrt mcp serve``, ``agentrt tools --mcp``, ``chain --mcp``.

:func:`register` adds the ``mcp`` command and the ``--mcp``/``--mcp-config`` options to the
parsers of ``chain`` and ``tools``, wrapping their commands: the other command modules know
nothing of MCP. The connections of ``chain --mcp`` live on a loop of their own
(:func:`agentrt.mcp.connect_sync`) for the whole run.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

from .exit_codes import CLIError, ExitCode

__all__ = ["register"]

Command = Callable[[argparse.Namespace], int]


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``agentrt mcp`` and the MCP options of ``agentrt chain`` and ``agentrt tools``."""
    chain = commands.choices["chain"]
    chain.add_argument(
        "--mcp",
        action="append",
        default=[],
        metavar="CMD_OR_URL",
        help="offer the tools of an MCP server: a command ('uvx mcp-server-git') or an "
        "http(s):// URL (repeatable)",
    )
    chain.add_argument(
        "--mcp-config",
        action="append",
        default=[],
        metavar="FILE.json",
        help='offer the tools of every server in an {"mcpServers": ...} file, each '
        "prefixed with its name (repeatable)",
    )
    chain.set_defaults(run=_with_mcp(chain.get_default("run")))

    tools = commands.choices["tools"]
    tools.add_argument(
        "--mcp",
        action="append",
        default=[],
        metavar="CMD_OR_URL",
        help="list the tools of this MCP server instead of the bundled ones (repeatable)",
    )
    tools.set_defaults(run=_tools_or_mcp(tools.get_default("run")))

    mcp = commands.add_parser("mcp", help="serve agentrt tools over the Model Context Protocol")
    actions = mcp.add_subparsers(dest="mcp_command", metavar="ACTION")
    actions.required = True
    serve = actions.add_parser(
        "serve",
        help="serve bundled tools and --functions files as an MCP server",
        description="Serve tools as an MCP server, over stdio (the default) or streamable "
        "HTTP on 127.0.0.1 (--http PORT; 0 picks a free port).",
    )
    serve.add_argument(
        "-T", "--tool", dest="tools", action="append", default=[], metavar="TOOL",
        help="serve a bundled tool by name (repeatable; see 'agentrt tools')",
    )  # fmt: skip
    serve.add_argument(
        "--functions", action="append", default=[], metavar="FILE.py",
        help="serve the public functions and tools defined in a Python file (repeatable)",
    )  # fmt: skip
    serve.add_argument("--http", type=int, default=None, metavar="PORT", help="serve over HTTP")
    serve.add_argument("--host", default="127.0.0.1", help="HTTP address (default: 127.0.0.1)")
    serve.add_argument("--name", default="agentrt", help="the server's name (default: agentrt)")
    serve.set_defaults(run=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    """Run ``agentrt mcp serve`` until the client leaves or Ctrl-C.

    Raises:
        CLIError: no tools, or tools that cannot be served.
    """
    from ..mcp import serve
    from .chain_cmd import gather_tools

    if not args.tools and not args.functions:
        raise CLIError("nothing to serve: pass -T TOOL or --functions FILE.py", ExitCode.USAGE)
    tools = gather_tools(args.tools, args.functions)
    if args.http is None:
        serve(tools, name=args.name)
    else:
        serve(tools, name=args.name, transport="http", host=args.host, port=args.http)
    return 0


def _with_mcp(run: Command) -> Command:
    def run_with_mcp(args: argparse.Namespace) -> int:
        if not args.mcp and not args.mcp_config:
            return run(args)
        from ..mcp import connect_sync, load_config_sync

        with ExitStack() as stack:
            boxes: list[Any] = [stack.enter_context(connect_sync(t)) for t in args.mcp]
            for path in args.mcp_config:
                boxes.extend(stack.enter_context(load_config_sync(path)))
            args.extra_tools = boxes
            return run(args)

    return run_with_mcp


def _tools_or_mcp(run: Command) -> Command:
    def run_tools(args: argparse.Namespace) -> int:
        if not args.mcp:
            return run(args)
        from ..mcp import connect_sync

        described: list[dict[str, Any]] = []
        for target in args.mcp:
            with connect_sync(target) as box:
                described.extend(
                    {
                        "server": box.name,
                        "name": t.name,
                        "description": t.description,
                        "parameters": t.parameters,
                    }
                    for t in box.tools()
                )
        if args.json:
            print(json.dumps(described, indent=2))
            return 0
        for row in described:
            summary = (row["description"] or "").split("\n\n")[0].replace("\n", " ")
            print(f"{row['name']}: {summary}  [{row['server']}]")
            print(f"  schema: {json.dumps(row['parameters'])}")
        return 0

    return run_tools
