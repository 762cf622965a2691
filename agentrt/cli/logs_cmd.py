"""``agentrt logs``: show recent chains from the SQLite log database."""

from __future__ import annotations

import argparse
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

from ..logs import default_logs_path, recent_chains
from .exit_codes import CLIError

__all__ = ["format_chain", "run_logs"]


def run_logs(args: argparse.Namespace) -> int:
    """Print the ``-n`` most recent chains, as text or as one JSON list.

    Raises:
        CLIError: the database cannot be read.
    """
    path = Path(args.log_path) if args.log_path else default_logs_path()
    try:
        chains = recent_chains(path, args.n)
    except (sqlite3.Error, OSError, RuntimeError) as exc:
        raise CLIError(f"cannot read the log database {str(path)!r}: {exc}") from exc
    if args.json:
        print(json.dumps(chains, indent=2, ensure_ascii=False))
        return 0
    if not chains:
        print(f"no chains logged yet in {path}")
        return 0
    print("\n\n".join(format_chain(chain) for chain in reversed(chains)))
    return 0


def _usage(usage: dict[str, int] | None) -> str:
    if usage is None:
        return "usage not reported"
    return f"{usage['input_tokens']} in + {usage['output_tokens']} out tokens"


def _one_line(text: str | None, limit: int = 200) -> str:
    flat = " ".join((text or "").split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def format_chain(chain: dict[str, Any]) -> str:
    """Render one chain (as returned by ``recent_chains``) for a terminal."""
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(chain["started_at"]))
    duration = f"{chain['duration']:.2f} s" if chain["duration"] is not None else "?"
    lines = [
        f"chain {chain['id']}  {started}  {chain['model']}  {chain['status']}  "
        f"{len(chain['turns'])} turn(s)  {duration}  {_usage(chain['usage'])}",
        f"  prompt: {_one_line(chain['prompt'])}",
    ]
    if chain["system"]:
        lines.append(f"  system: {_one_line(chain['system'])}")
    if chain["error"]:
        lines.append(f"  error: {_one_line(chain['error'])}")
    for turn in chain["turns"]:
        reason = turn["finish_reason"] or turn["status"]
        lines.append(f"  turn {turn['turn']}: {reason}, {_usage(turn['usage'])}")
        if turn["error"]:
            lines.append(f"    error: {_one_line(turn['error'])}")
        for call in turn["tool_calls"]:
            outcome = (
                f"failed: {_one_line(call['error'], 120)}"
                if call["error"] is not None
                else f"-> {_one_line(call['result'], 120)}"
            )
            lines.append(f"    {call['name']}({_one_line(call['arguments'], 80)}) {outcome}")
        if turn["text"]:
            lines.append(f"    text: {_one_line(turn['text'])}")
    return "\n".join(lines)
