"""``agentrt mcp serve`` (and agentrt.mcp.serve) driven by the mcp SDK's own client."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from mcp import Client, MCPError, StdioServerParameters

from agentrt.errors import UsageError
from agentrt.mcp._serve import build_server

pytestmark = pytest.mark.anyio

FUNCTIONS = str(Path(__file__).parent / "mcp_data" / "served_tools.py")
SERVE = ["-m", "agentrt", "mcp", "serve", "-T", "calculator", "--functions", FUNCTIONS]


@pytest.fixture(scope="module")
def http_url() -> Iterator[str]:
    process = subprocess.Popen(
        [sys.executable, *SERVE, "--http", "0"], stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stderr is not None
        line = process.stderr.readline()
        assert "serving MCP tools at http://" in line, line
        yield line.rsplit(" ", 1)[1].strip()
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stderr is not None:
            process.stderr.close()


async def _exercise(client: Client) -> None:
    listed = {t.name: t for t in (await client.list_tools()).tools}
    assert set(listed) == {"calculator", "shout", "where", "which"}
    # agentrt's own schema, description and docstring argument descriptions.
    assert listed["shout"].input_schema["properties"]["text"]["description"] == "what to shout."
    assert listed["shout"].description == "Upper-case the text."

    result = await client.call_tool("calculator", {"expression": "(17 + 25) * 3 / 2"})
    assert (result.is_error, result.content[0].text) == (False, "63.0")
    assert (await client.call_tool("shout", {"text": "hi"})).content[0].text == "HI"
    # Sync tools run in agentrt's worker threads; dual tools by their async half.
    assert (await client.call_tool("where", {})).content[0].text != "MainThread"
    assert (await client.call_tool("which", {})).content[0].text == "async half"

    invalid = await client.call_tool("shout", {"text": 3})
    assert invalid.is_error
    assert "invalid arguments for tool 'shout'" in invalid.content[0].text
    with pytest.raises(MCPError, match="unknown tool 'nope'"):
        await client.call_tool("nope", {})


async def test_agentrt_mcp_serve_over_stdio() -> None:
    params = StdioServerParameters(command=sys.executable, args=SERVE)
    async with Client(params) as client:
        await _exercise(client)


async def test_agentrt_mcp_serve_over_http(http_url: str) -> None:
    async with Client(http_url) as client:
        await _exercise(client)


def test_serve_refuses_what_it_cannot_serve() -> None:
    with pytest.raises(UsageError, match="server name"):
        build_server([len], name="")
    with pytest.raises(UsageError, match="no tools"):
        build_server([], name="empty")


def _agentrt(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agentrt", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_agentrt_tools_lists_an_mcp_servers_tools() -> None:
    served = shlex.join([sys.executable, *SERVE])
    done = _agentrt("tools", "--mcp", served, "--json")
    assert done.returncode == 0, done.stderr
    listed = {row["name"]: row for row in json.loads(done.stdout)}
    assert set(listed) == {"calculator", "shout", "where", "which"}
    assert listed["shout"]["server"] == "agentrt"
    assert listed["shout"]["parameters"]["required"] == ["text"]


def test_agentrt_chain_with_mcp_and_an_mcp_config(tmp_path: Path) -> None:
    config = tmp_path / "mcp.json"
    config.write_text(json.dumps({"mcpServers": {"calc": {"command": sys.executable,
                                                          "args": SERVE}}}))  # fmt: skip
    done = _agentrt(
        "chain", '{"expression": "6 * 7", "text": "hi"}', "--no-log", "--mcp-config", str(config)
    )
    assert done.returncode == 0, done.stderr
    assert "calc__calculator" in done.stdout and "returned 42" in done.stdout
    assert "calc__shout" in done.stdout and "returned HI" in done.stdout


def test_agentrt_chain_reports_an_mcp_server_that_cannot_start() -> None:
    done = _agentrt("chain", "hi", "--no-log", "--mcp", "no-such-mcp-server-command")
    assert done.returncode != 0
    assert "cannot connect to the MCP server 'no-such-mcp-server-command'" in done.stderr
