"""MCP tool calls through agentrt beside the ``mcp`` SDK's client alone.

``python -m benchmarks.mcp_bench [--calls 1000] [--batch 1] [--repeats 3]`` runs, over stdio
and over streamable HTTP against ``tools/mcp_servers/demo.py``:

- ``sdk``: ``mcp.Client.call_tool("echo")`` ``--calls`` times (``--batch`` at once);
- ``toolbox``: the same calls through an ``MCPToolbox`` tool (the connection's checks and
  the call's own cancel scope, the result conversion), without a chain;
- ``chain``: one chain on ``FunctionModel`` whose turns make those calls, ``--batch`` per
  turn (the whole path: model turn, tool runner, callbacks, MCP).

It reports calls per second and this process's CPU time per call (the servers run in their
own processes, so their CPU is not counted), and agentrt's overhead: the CPU agentrt adds
per call beyond the SDK's own, as a share of the SDK's. ``chain`` also pays for the model
turns of ``FunctionModel``; ``toolbox`` isolates the MCP layer.

CPU per call on a shared machine depends on how cold the process is when an answer wakes
it: the same Python work costs several times its in-process (``benchmarks.micro``) figure
after a wait, more after HTTP's longer waits than after stdio's. Compare ways of one run,
not runs of different days.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio

from agentrt import mcp
from agentrt.messages import Message, ToolSpec
from agentrt.testing import FunctionModel, ModelTurn, call

DEMO = str(Path(__file__).resolve().parent.parent / "tools" / "mcp_servers" / "demo.py")


@contextmanager
def http_server() -> Iterator[str]:
    """Run the demo server over HTTP on 127.0.0.1; yield its URL."""
    process = subprocess.Popen(
        [sys.executable, DEMO, "--http", "0"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        yield f"http://127.0.0.1:{int(line.split()[1])}/mcp"
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


async def _batches(calls: int, batch: int, one: Callable[[], Awaitable[Any]]) -> None:
    done = 0
    while done < calls:
        size = min(batch, calls - done)
        if size == 1:
            await one()
        else:
            async with anyio.create_task_group() as tg:
                for _ in range(size):
                    tg.start_soon(one)
        done += size


async def _timed(run: Callable[[], Awaitable[None]]) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    await run()
    return time.perf_counter() - wall, time.process_time() - cpu


async def measure_sdk(target: str | list[str], calls: int, batch: int) -> tuple[float, float]:
    """Time the SDK's client alone; returns (wall seconds, CPU seconds)."""
    from mcp import Client, StdioServerParameters

    server: Any = (
        target
        if isinstance(target, str)
        else StdioServerParameters(command=target[0], args=target[1:])
    )
    async with Client(server) as client:
        await client.list_tools()

        async def one() -> None:
            result = await client.call_tool("echo", {"text": "hi"}, read_timeout_seconds=60)
            assert result.content[0].text == "hi"  # type: ignore[union-attr]

        return await _timed(lambda: _batches(calls, batch, one))


async def measure_toolbox(target: str | list[str], calls: int, batch: int) -> tuple[float, float]:
    """Time calls through an MCPToolbox tool, no chain."""
    async with mcp.connect(target, timeout=60) as box:
        echo = box["echo"]

        async def one() -> None:
            assert (await echo.fn(text="hi")).content == "hi"

        return await _timed(lambda: _batches(calls, batch, one))


async def measure_chain(target: str | list[str], calls: int, batch: int) -> tuple[float, float]:
    """Time one chain whose turns make ``calls`` calls, ``batch`` per turn."""
    turns = -(-calls // batch)
    left = [calls]

    def turn(messages: list[Message], tools: list[ToolSpec]) -> str | ModelTurn:
        if left[0] <= 0:
            return "done"
        size = min(batch, left[0])
        left[0] -= size
        return ModelTurn(tool_calls=[call("echo", text="hi") for _ in range(size)])

    async with mcp.connect(target, timeout=60) as box:
        chain = FunctionModel(turn).chain("bench", tools=[box], max_turns=turns + 1)

        async def run() -> None:
            await chain.text()

        wall, cpu = await _timed(run)
    results = chain.tool_results
    assert len(results) == calls and all(r.content == "hi" for r in results)
    return wall, cpu


WAYS: dict[str, Callable[[str | list[str], int, int], Awaitable[tuple[float, float]]]] = {
    "sdk": measure_sdk,
    "toolbox": measure_toolbox,
    "chain": measure_chain,
}


async def bench(
    calls: int, batch: int, *, repeats: int = 1, transports: tuple[str, ...] = ("stdio", "http")
) -> list[dict[str, Any]]:
    """Run every measurement; return one row per transport and way (medians of repeats).

    The ways alternate within each repeat, so a load that comes and goes on a shared
    machine falls on all of them alike.
    """
    rows: list[dict[str, Any]] = []
    with http_server() as url:
        targets: dict[str, str | list[str]] = {"stdio": [sys.executable, DEMO], "http": url}
        for transport in transports:
            target = targets[transport]
            for fn in WAYS.values():
                await fn(target, min(calls, 50), batch)  # warm up: imports, caches
            measured: dict[str, list[tuple[float, float]]] = {way: [] for way in WAYS}
            for _ in range(repeats):
                for way, fn in WAYS.items():
                    measured[way].append(await fn(target, calls, batch))
            medians = {
                way: (
                    statistics.median(w for w, _ in runs),
                    statistics.median(c for _, c in runs),
                )
                for way, runs in measured.items()
            }
            sdk_cpu = medians["sdk"][1] / calls
            for way, (wall, cpu) in medians.items():
                per_call = cpu / calls
                rows.append(
                    {
                        "transport": transport,
                        "way": way,
                        "calls": calls,
                        "batch": batch,
                        "repeats": repeats,
                        "calls_per_s": round(calls / wall, 1),
                        "cpu_us_per_call": round(per_call * 1e6, 1),
                        "overhead_vs_sdk": None
                        if way == "sdk"
                        else round((per_call - sdk_cpu) / sdk_cpu, 3),
                    }
                )
    return rows


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print a table (or JSON)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=1, help="calls at once (per turn)")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each way (medians)")
    parser.add_argument(
        "--transport", action="append", choices=["stdio", "http"], help="default: both"
    )
    parser.add_argument("--backend", default="asyncio", choices=["asyncio", "trio"])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    transports = tuple(args.transport or ("stdio", "http"))

    async def run() -> list[dict[str, Any]]:
        return await bench(args.calls, args.batch, repeats=args.repeats, transports=transports)

    rows = anyio.run(run, backend=args.backend)
    if args.json:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    sys.stdout.write(
        f"{'transport':<9} {'way':<8} {'calls/s':>9} {'CPU µs/call':>12} {'overhead':>9}\n"
    )
    for row in rows:
        overhead = row["overhead_vs_sdk"]
        shown = "" if overhead is None else f"{overhead:+.1%}"
        sys.stdout.write(
            f"{row['transport']:<9} {row['way']:<8} {row['calls_per_s']:>9} "
            f"{row['cpu_us_per_call']:>12} {shown:>9}\n"
        )


if __name__ == "__main__":
    main()
