"""The ``agentrt`` command: argument parsing and dispatch to one module per command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from .. import __version__
from ..errors import AgentrtError
from .batch_cmd import add_batch_parser
from .chain_cmd import MODEL_ENV, run_chain
from .exit_codes import EPILOG, CLIError, ExitCode, cli_message, exit_code_for
from .info_cmds import run_models, run_tools
from .logs_cmd import run_logs
from .mcp_cmd import register as register_mcp

__all__ = ["build_parser", "main"]

Command = Callable[[argparse.Namespace], int]


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    return number


def _log_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--log-path",
        metavar="PATH",
        help="the SQLite log database (default: $AGENTRT_LOGS_PATH, else the user data "
        "directory, e.g. ~/.local/share/agentrt/logs.db)",
    )


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser of every command."""
    parser = argparse.ArgumentParser(
        prog="agentrt",
        description="Run LLM agents that call tools, and inspect their logs.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"agentrt {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    chain = commands.add_parser(
        "chain",
        help="run a prompt, letting the model call tools until it answers",
        description="Run a prompt, letting the model call tools until it answers. The "
        "answer streams to stdout; tool calls and usage go to stderr.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    chain.add_argument(
        "prompt", nargs="?", help="the prompt (read from standard input when omitted)"
    )
    chain.add_argument(
        "-m",
        "--model",
        help=f"model id such as offline or openai:gpt-4.1-mini (default: ${MODEL_ENV}, "
        "else offline)",
    )
    chain.add_argument(
        "-T",
        "--tool",
        dest="tools",
        action="append",
        default=[],
        metavar="TOOL",
        help="offer a bundled tool by name (repeatable; see 'agentrt tools')",
    )
    chain.add_argument(
        "--functions",
        action="append",
        default=[],
        metavar="FILE.py",
        help="offer the public functions and tools defined in a Python file (repeatable)",
    )
    chain.add_argument(
        "--base-url",
        metavar="URL",
        help="the provider's API root, e.g. http://127.0.0.1:8000/v1 for an OpenAI-compatible "
        "server (default: $OPENAI_BASE_URL, $ANTHROPIC_BASE_URL or $GOOGLE_GEMINI_BASE_URL, "
        "else the vendor's URL); the key comes from the provider's variable, e.g. "
        "$OPENAI_API_KEY",
    )
    chain.add_argument("-s", "--system", help="system prompt")
    chain.add_argument(
        "--max-turns",
        type=_positive_int,
        default=10,
        metavar="N",
        help="stop with exit code 7 after N model calls (default: 10)",
    )
    chain.add_argument(
        "--schema",
        metavar="SCHEMA",
        help="ask for JSON matching SCHEMA (a JSON Schema file, inline JSON, or a concise "
        "form such as 'name, age int, bio: a short bio') and print the validated JSON",
    )
    chain.add_argument(
        "--output-mode",
        choices=("auto", "native", "tool", "prompted"),
        default="auto",
        help="how --schema is asked for (default: auto, per provider)",
    )
    chain.add_argument("--no-stream", action="store_true", help="use the non-streaming endpoint")
    chain.add_argument(
        "--json", action="store_true", help="print one JSON record instead of the text"
    )
    _log_options(chain)
    chain.add_argument("--no-log", action="store_true", help="do not log this chain")
    chain.set_defaults(run=run_chain)

    models = commands.add_parser("models", help="list providers and whether their API key is set")
    models.add_argument("--json", action="store_true", help="print JSON")
    models.set_defaults(run=run_models)

    tools = commands.add_parser("tools", help="list the bundled tools and their schemas")
    tools.add_argument("--json", action="store_true", help="print JSON")
    tools.set_defaults(run=run_tools)

    logs = commands.add_parser("logs", help="show recent logged chains")
    logs.add_argument(
        "-n", type=_positive_int, default=5, metavar="N", help="how many chains (default: 5)"
    )
    logs.add_argument("--json", action="store_true", help="print JSON")
    _log_options(logs)
    logs.set_defaults(run=run_logs)
    register_mcp(commands)
    add_batch_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``agentrt`` command line and return its exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    command: Command = args.run
    try:
        return command(args)
    except KeyboardInterrupt:
        print("agentrt: interrupted", file=sys.stderr)
        return int(ExitCode.INTERRUPTED)
    except (CLIError, AgentrtError) as exc:
        print(f"agentrt: error: {cli_message(exc)}", file=sys.stderr)
        return int(exit_code_for(exc))
