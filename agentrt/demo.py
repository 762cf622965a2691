"""The quick-start demo: a chain on the offline model with a sync, an async and a dual tool.

Run it with ``python -m agentrt.demo``. It needs no network and no API key.
"""

from __future__ import annotations

import anyio

import agentrt
from agentrt import CallbackHandler, ToolCall, ToolResult, async_tool_is, tool


@tool
def add(a: int, b: int) -> int:
    """Add two integers (a sync tool: it runs in a worker thread)."""
    return a + b


@tool
async def word_count(text: str) -> int:
    """Count the words of a text (an async tool: it runs on the event loop)."""
    await anyio.sleep(0.01)
    return len(text.split())


async def _capital_async(country: str) -> str:
    await anyio.sleep(0.01)
    return {"france": "Paris", "japan": "Tokyo"}.get(country.lower(), "unknown")


@async_tool_is(_capital_async)
def capital(country: str) -> str:
    """Look up a capital (a dual tool: async chains await the async implementation)."""
    return {"france": "Paris", "japan": "Tokyo"}.get(country.lower(), "unknown")


class ShowTools(CallbackHandler):
    """Print each tool call and its result as the chain runs."""

    def on_tool_start(self, response: object, call: ToolCall) -> None:  # noqa: D102
        print(f"  -> {call.name}({call.raw_arguments})")

    def on_tool_end(self, response: object, call: ToolCall, result: ToolResult) -> None:  # noqa: D102
        print(f"  <- {call.name}: {result.content} ({result.duration * 1000:.1f} ms)")

    def on_tool_error(self, response: object, call: ToolCall, result: ToolResult) -> None:  # noqa: D102
        print(f"  <- {call.name} failed: {result.content}")


async def main() -> None:
    """Run the demo chain and print what happens."""
    model = agentrt.get_async_model("offline")
    prompt = (
        "Add these, count words and find a capital: "
        '{"a": 2, "b": 3, "text": "hello agentrt world", "country": "France"}'
    )
    print(f"model: {model.model_id}\nprompt: {prompt}\n")
    with agentrt.track_usage() as usage:
        chain = model.chain(prompt, tools=[add, word_count, capital], callbacks=[ShowTools()])

        @chain.on_done
        async def log_it(c: agentrt.AsyncChain) -> None:
            print(f"\n[on_done] chain {c.status} after {len(c.responses)} turns")

        async for chunk in chain:
            print(chunk.content, end="", flush=True)
    print(f"usage: {chain.usage}")
    print(f"tracked by track_usage(): {usage.by_model}")


if __name__ == "__main__":
    anyio.run(main)
