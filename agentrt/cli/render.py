"""What ``agentrt chain`` shows: the answer on stdout, the rest on stderr, or JSON.

stdout carries only the model's text: every turn's text as it streams, each turn on its own
line(s), so the last one is the final answer (``--json``'s ``text``); everything about the
run goes to stderr, one short line per event.
"""

from __future__ import annotations

import json
from typing import Any, TextIO

from ..callbacks import CallbackHandler
from ..messages import StreamChunk, ToolCall, ToolResult, Usage
from ..output import output_json

__all__ = ["ChainDisplay", "TextWriter", "chain_record", "describe_call", "usage_line"]

_MAX_ARGS = 120
_MAX_RESULT = 160
UNFINISHED = "the tool call was cancelled before it finished"


def _shorten(text: str, limit: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def describe_call(call: ToolCall) -> str:
    """Render a tool call as ``name(a=1, b="x")``, shortened."""
    if call.arguments is None:
        args = call.raw_arguments
    else:
        args = ", ".join(
            f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in call.arguments.items()
        )
    return f"{call.name}({_shorten(args, _MAX_ARGS)})"


def usage_line(usage: Usage | None, turns: int) -> str:
    """Render the usage summary printed at the end of a chain."""
    count = f"{turns} turn" + ("" if turns == 1 else "s")
    if usage is None:
        return f"[usage] {count}; the provider reported no usage"
    return (
        f"[usage] {count}: {usage.input_tokens} input + {usage.output_tokens} output "
        f"= {usage.total_tokens} tokens"
    )


class TextWriter:
    """Writes streamed text to stdout as it arrives, a line break between turns."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.turn: int | None = None
        self.line_open = False

    def write(self, chunk: StreamChunk) -> None:
        """Write one chunk and flush, so the text appears as it streams."""
        if not chunk.content:
            return
        if self.turn is not None and chunk.turn != self.turn and self.line_open:
            self.stream.write("\n")
        self.turn = chunk.turn
        self.stream.write(chunk.content)
        self.stream.flush()
        self.line_open = not chunk.content.endswith("\n")

    def end_line(self) -> None:
        """End an unfinished line (before other output, or at the end)."""
        if self.line_open:
            self.stream.write("\n")
            self.stream.flush()
            self.line_open = False


class ChainDisplay(CallbackHandler):
    """Shows each tool call with its result or error, one line on stderr.

    Args:
        err: where the lines go (stderr).
        text: the stdout writer; when both streams are one terminal, its open line is
            ended first so the two do not mix on one line.
    """

    def __init__(self, err: TextIO, text: TextWriter | None = None) -> None:
        self.err = err
        self.text = text
        self._share_terminal = text is not None and _isatty(text.stream) and _isatty(err)

    def line(self, message: str) -> None:
        """Write one line to stderr."""
        if self._share_terminal and self.text is not None:
            self.text.end_line()
        self.err.write(message + "\n")
        self.err.flush()

    def on_tool_end(self, response: Any, call: ToolCall, result: ToolResult) -> None:
        """Show a successful call and its result."""
        self.line(f"[tool] {describe_call(call)} -> {_shorten(result.content, _MAX_RESULT)}")

    def on_tool_error(self, response: Any, call: ToolCall, result: ToolResult) -> None:
        """Show a failed call and its error."""
        error = result.content.removeprefix("Error: ")
        self.line(f"[tool] {describe_call(call)} failed: {_shorten(error, _MAX_RESULT)}")


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _usage(usage: Usage | None) -> dict[str, int] | None:
    return usage.model_dump(exclude_none=True) if usage is not None else None


def _calls(response: Any) -> list[dict[str, Any]]:
    results = {r.tool_call_id: r for r in response.tool_results}
    calls = []
    for call in response.message.tool_calls:
        result = results.get(call.id)
        if result is None:
            output, error, duration = None, UNFINISHED, None
        elif result.is_error:
            output, duration = None, result.duration
            error = result.content.removeprefix("Error: ")
        else:
            output, error, duration = result.content, None, result.duration
        calls.append(
            {
                "turn": response.turn,
                "id": call.id,
                "name": call.name,
                "arguments": call.arguments,
                "raw_arguments": call.raw_arguments,
                "result": output,
                "error": error,
                "duration": duration,
            }
        )
    return calls


def chain_record(
    chain: Any, *, error: dict[str, Any] | None = None, log_path: str | None = None
) -> dict[str, Any]:
    """Build the ``--json`` record of a chain that ran (or started to).

    Args:
        chain: the chain.
        error: ``{"type", "message", "exit_code"}`` when the run failed.
        log_path: the log database it was written to, or ``None`` with ``--no-log``.
    """
    turns = [
        {
            "turn": r.turn,
            "status": r.status,
            "text": r.text_so_far,
            "finish_reason": r.finish_reason,
            "raw_finish_reason": r.raw_finish_reason,
            "output_mode": r.output_mode,
            "usage": _usage(r.usage),
            "error": f"{type(r.error).__name__}: {r.error}" if r.error is not None else None,
            "tool_calls": _calls(r),
        }
        for r in chain.responses
    ]
    return {
        "chain_id": chain.id,
        "model": chain.model,
        "status": chain.status,
        "truncated": chain.truncated,
        "text": chain.responses[-1].text_so_far if chain.responses else "",
        "output_mode": chain.output_mode,
        "output": output_json(chain.output_value),
        "turns": turns,
        "tool_calls": [c for turn in turns for c in turn["tool_calls"]],
        "usage": _usage(chain.usage),
        "error": error,
        "log_path": log_path,
    }
