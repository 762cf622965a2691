"""``agentrt batch``: run one chain per input line, records to a JSON Lines file.

Inputs: ``.jsonl`` (each line a prompt string, a list of messages, or an object with
``prompt``, an optional ``id`` and per-item chain options), ``.csv`` (a ``prompt`` column,
optionally an ``id`` column) or any other file as plain text, one prompt per non-blank line.
The file is read twice, lazily: once to count and check it (so a malformed line fails
before anything runs, and the progress bar knows the total), once to run it.

Ctrl-C cancels the running chains, writes the records that had finished and exits with
130; the same command then resumes, skipping what the results file already holds.
"""

from __future__ import annotations

import argparse
import csv
import functools
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio

from .._model import get_async_model
from ..batch import BatchSummary, RateLimit, run_batch
from .chain_cmd import DEFAULT_MODEL, MODEL_ENV, _exit_now_if_threads_linger, gather_tools
from .exit_codes import EPILOG, CLIError, ExitCode, exit_code_for

__all__ = ["InputFile", "add_batch_parser", "run_batch_command"]


def _positive(kind: type[int] | type[float]) -> Any:
    def parse(value: str) -> int | float:
        try:
            number = kind(value)
        except ValueError:
            number = 0
        if not number > 0:
            raise argparse.ArgumentTypeError(f"expected a positive number, got {value!r}")
        return number

    return parse


def add_batch_parser(commands: Any) -> None:
    """Add the ``batch`` command to the ``agentrt`` subcommands."""
    parser = commands.add_parser(
        "batch",
        help="run one chain per input, writing a JSON Lines record for each",
        description="Run one chain per input (.jsonl, .csv with a prompt column, or plain "
        "text, one prompt per line), appending a JSON record per input to the results file. "
        "Running the same command again resumes: completed inputs are skipped.",
        epilog=EPILOG + "\n  (batch) 1 also means some inputs failed: see their records",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("input", help="the inputs: FILE.jsonl, FILE.csv or a text file")
    parser.add_argument(
        "-m", "--model", help=f"model id (default: ${MODEL_ENV}, else {DEFAULT_MODEL})"
    )
    parser.add_argument(
        "-T", "--tool", dest="tools", action="append", default=[], metavar="TOOL",
        help="offer a bundled tool by name (repeatable)",
    )  # fmt: skip
    parser.add_argument(
        "--functions", action="append", default=[], metavar="FILE.py",
        help="offer the public functions and tools defined in a Python file (repeatable)",
    )  # fmt: skip
    parser.add_argument(
        "--schema",
        metavar="SCHEMA",
        help="a JSON Schema (a .json file or inline JSON) each answer is validated against "
        "(the record's output)",
    )
    parser.add_argument("-s", "--system", help="system prompt of every chain")
    parser.add_argument(
        "-o", "--output", required=True, metavar="RESULTS.jsonl", help="the results file"
    )
    parser.add_argument(
        "--concurrency", type=_positive(int), default=64, metavar="N",
        help="chains at once (default: 64; with --ray, per actor)",
    )  # fmt: skip
    parser.add_argument("--rpm", type=_positive(float), metavar="N", help="requests per minute")
    parser.add_argument("--tpm", type=_positive(float), metavar="N", help="tokens per minute")
    parser.add_argument(
        "--max-turns", type=_positive(int), default=10, metavar="N",
        help="turn limit of each chain (default: 10)",
    )  # fmt: skip
    parser.add_argument(
        "--unordered", action="store_true", help="write records as they finish (faster)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    parser.add_argument(
        "--ray",
        metavar="ADDRESS",
        help="run on a Ray cluster (an address, ray://..., 'auto', or 'local' to start one); "
        "needs the ray extra",
    )
    parser.set_defaults(run=run_batch_command)


class InputFile:
    """The inputs of a file: iterable (lazily, again each time) with a length."""

    def __init__(self, path: str) -> None:
        self.path = Path(path).expanduser()
        if not self.path.is_file():
            raise CLIError(f"no such input file: {path}", ExitCode.USAGE)
        suffix = self.path.suffix.lower()
        self.kind = "jsonl" if suffix in (".jsonl", ".ndjson") else suffix.lstrip(".")
        self._count = sum(1 for _ in self._read(check=True))

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[Any]:
        return self._read(check=False)

    def _read(self, *, check: bool) -> Iterator[Any]:
        with self.path.open(encoding="utf-8", newline="" if self.kind == "csv" else None) as f:
            if self.kind == "csv":
                yield from self._csv(f, check=check)
                return
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                if self.kind != "jsonl":
                    yield line.rstrip("\r\n")
                    continue
                try:
                    value = json.loads(line)
                except ValueError as exc:
                    raise CLIError(
                        f"{self.path} line {number} is not JSON: {exc}", ExitCode.USAGE
                    ) from exc
                yield value

    def _csv(self, f: Any, *, check: bool) -> Iterator[Any]:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or "prompt" not in reader.fieldnames:
            raise CLIError(
                f"{self.path} has no 'prompt' column (columns: "
                f"{', '.join(reader.fieldnames or []) or 'none'})",
                ExitCode.USAGE,
            )
        has_id = "id" in reader.fieldnames
        for row in reader:
            prompt = row.get("prompt") or ""
            if not prompt.strip():
                continue
            yield {"prompt": prompt, "id": row["id"]} if has_id else prompt


def _schema(value: str | None) -> Any:
    if value is None:
        return None
    text = Path(value).read_text(encoding="utf-8") if Path(value).is_file() else value
    try:
        schema = json.loads(text)
    except ValueError as exc:
        raise CLIError(
            f"--schema: neither a JSON file nor inline JSON: {exc}", ExitCode.USAGE
        ) from exc
    if not isinstance(schema, dict):
        raise CLIError("--schema: a JSON Schema is a JSON object", ExitCode.USAGE)
    return schema


def run_batch_command(args: argparse.Namespace) -> int:
    """Run ``agentrt batch`` and return its exit code.

    Raises:
        CLIError: bad usage (input file, schema, tools).
        AgentrtError: the model or a tool is unknown, or a key is missing.
    """
    items = InputFile(args.input)
    output_type = _schema(args.schema)
    gather_tools(args.tools, args.functions)  # fail now on an unknown tool or a bad file
    model_id = args.model or os.environ.get(MODEL_ENV) or DEFAULT_MODEL
    limit = RateLimit(args.rpm, args.tpm) if args.rpm or args.tpm else None
    state: dict[str, Any] = {}
    if args.ray:
        batch = _ray_batch(args, model_id, items, output_type, limit)
    else:
        batch = run_batch(
            get_async_model(model_id),
            items,
            tools=gather_tools(args.tools, args.functions),
            system=args.system,
            output_type=output_type,
            concurrency=args.concurrency,
            ordered=not args.unordered,
            progress=not args.no_progress,
            results_path=args.output,
            rate_limit=limit,
            max_turns=args.max_turns,
        )

    async def main() -> None:
        async with batch:
            state["batch"] = batch
            async for _ in batch:
                pass

    code = ExitCode.OK
    try:
        anyio.run(main)
    except KeyboardInterrupt:
        code = ExitCode.INTERRUPTED
    except Exception as exc:
        print(f"agentrt: error: {exc}", file=sys.stderr)
        code = exit_code_for(exc)
    summary: BatchSummary = batch.summary
    print(_summary_line(summary, args.output), file=sys.stderr)
    if code == ExitCode.INTERRUPTED:
        print(
            "agentrt: interrupted; the finished records are written: run the same command "
            "again to resume",
            file=sys.stderr,
        )
        _exit_now_if_threads_linger(code)
    elif code == ExitCode.OK and summary.failed:
        code = ExitCode.ERROR
    return int(code)


def _summary_line(summary: BatchSummary, path: str) -> str:
    failures = ", ".join(f"{kind} {n}" for kind, n in sorted(summary.failures.items()))
    parts = [
        f"{summary.done} record(s) in {path}: {summary.completed} completed",
        f"{summary.failed} failed" + (f" ({failures})" if failures else ""),
    ]
    if summary.cancelled:
        parts.append(f"{summary.cancelled} cancelled")
    if summary.resumed:
        parts.append(f"{summary.resumed} from an earlier run")
    usage = summary.usage
    parts.append(
        f"{usage.total_tokens} tokens ({usage.input_tokens} in, {usage.output_tokens} out)"
    )
    parts.append(f"{summary.duration:.1f} s")
    return "agentrt: " + "; ".join(parts)


def _ray_batch(
    args: argparse.Namespace, model_id: str, items: InputFile, output_type: Any, limit: Any
) -> Any:
    try:
        from ..ray import ChainSpec
        from ..ray import run_batch as run_ray_batch
    except ImportError as exc:  # pragma: no cover - the test extra installs ray
        raise CLIError(
            f"--ray needs the ray extra: pip install 'agentrt[ray]' ({exc})", ExitCode.USAGE
        ) from exc
    spec = ChainSpec(
        model_id,
        tools_factory=functools.partial(gather_tools, list(args.tools), list(args.functions)),
        system=args.system,
        output_type=output_type,
        max_turns=args.max_turns,
    )
    return run_ray_batch(
        spec,
        items,
        per_actor=args.concurrency,
        ordered=not args.unordered,
        address=None if args.ray == "local" else args.ray,
        results_path=args.output,
        rate_limit=limit,
        progress=not args.no_progress,
    )
