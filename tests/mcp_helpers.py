"""Shared pieces of the MCP tests: the demo server's command lines and a model driving it."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio

from agentrt.messages import Message, ToolSpec
from agentrt.testing import FunctionModel, ModelTurn, ScriptedCall

ROOT = Path(__file__).resolve().parent.parent
DEMO = str(ROOT / "tools" / "mcp_servers" / "demo.py")
SILENT = str(ROOT / "tools" / "mcp_servers" / "silent.py")
STDIO = [sys.executable, DEMO]


@contextmanager
def http_server(*args: str, sse: bool = False) -> Iterator[str]:
    """Run the demo server over streamable HTTP (or legacy SSE) on 127.0.0.1; yield its URL."""
    process = subprocess.Popen(
        [sys.executable, DEMO, "--sse" if sse else "--http", "0", *args],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # the server prints its port once it listens
        assert line.startswith("PORT "), f"the demo server did not start: {line!r}"
        path = "/sse" if sse else "/mcp"
        yield f"http://127.0.0.1:{int(line.split()[1])}{path}"
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


def scripted(*turns: list[ScriptedCall] | str) -> tuple[FunctionModel, list[list[str]]]:
    """A model that makes the given calls turn by turn, then answers with the last tool text.

    Returns:
        The model, and the tool names it was offered at each turn.
    """
    offered: list[list[str]] = []
    script = list(turns)

    def turn(messages: list[Message], tools: list[ToolSpec]) -> str | ModelTurn:
        offered.append([t.name for t in tools])
        step = script.pop(0) if script else None
        if isinstance(step, list):
            return ModelTurn(tool_calls=step)
        if isinstance(step, str):
            return step
        return "|".join(m.content for m in messages if m.role == "tool")

    return FunctionModel(turn), offered


async def eventually(check: Callable[[], Any], *, within: float = 5.0) -> Any:
    """Poll ``check`` (sync or async) until it returns something truthy, for a bounded time."""
    with anyio.fail_after(within):
        while True:
            value = check()
            if hasattr(value, "__await__"):
                value = await value
            if value:
                return value
            await anyio.sleep(0.02)
