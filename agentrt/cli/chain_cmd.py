"""``agentrt chain``: run one chain from the command line.

The async core runs under ``anyio.run``. On Ctrl-C, anyio's asyncio runner cancels the
run: the chain ends as ``cancelled``, its callbacks (and so the SQLite log) complete under
their shield, and only then does ``KeyboardInterrupt`` reach this module, which reports it
with exit code 130.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sqlite3
import sys
import threading
from pathlib import Path
from typing import Any, TextIO

import anyio

from .._model import AsyncModel, get_async_model
from ..callbacks import CallbackHandler
from ..errors import AgentrtError, UsageError
from ..logs import SQLiteLogger, default_logs_path
from ..output import load_schema, output_spec
from ..toolbox import HTTP_ALLOW_ENV, allowed_hosts_from_env, bundled_tool
from ..toolbox.registry import ToolSettings
from ..tools import collect_tools
from .exit_codes import CLIError, ExitCode, cli_message, exit_code_for
from .functions import load_functions
from .render import ChainDisplay, TextWriter, chain_record, usage_line

__all__ = ["DEFAULT_MODEL", "MODEL_ENV", "run_chain"]

#: Environment variable naming the default model.
MODEL_ENV = "AGENTRT_MODEL"
DEFAULT_MODEL = "offline"


def read_prompt(prompt: str | None, stdin: TextIO | None) -> str:
    """Return the prompt argument, else standard input when it is not a terminal.

    Raises:
        CLIError: there is no prompt.
    """
    if prompt is None and stdin is not None and not stdin.isatty():
        prompt = stdin.read()
    if prompt is None or not prompt.strip():
        raise CLIError(
            'no prompt: pass one as an argument (agentrt chain "...") or on standard input',
            ExitCode.USAGE,
        )
    return prompt


def gather_tools(names: list[str], functions: list[str]) -> list[Any]:
    """Build the tools of ``-T`` names and ``--functions`` files.

    Raises:
        UnknownToolError: a ``-T`` name is not a bundled tool.
        CLIError: a ``--functions`` file cannot be used, or two tools share a name.
    """
    settings = ToolSettings(root=Path.cwd(), allowed_hosts=tuple(allowed_hosts_from_env()))
    try:
        tools: list[Any] = [bundled_tool(name, settings) for name in dict.fromkeys(names)]
    except ValueError as exc:  # a malformed AGENTRT_HTTP_ALLOW entry
        raise CLIError(f"{HTTP_ALLOW_ENV}: {exc}", ExitCode.USAGE) from exc
    for path in functions:
        tools.extend(load_functions(path))
    try:
        collect_tools(tools)
    except (UsageError, TypeError, ValueError) as exc:
        raise CLIError(f"cannot offer these tools: {exc}", ExitCode.USAGE) from exc
    return tools


def open_logger(args: argparse.Namespace) -> SQLiteLogger | None:
    """Open the log database unless ``--no-log``.

    Raises:
        CLIError: the database cannot be opened.
    """
    if args.no_log:
        return None
    path = Path(args.log_path) if args.log_path else default_logs_path()
    logger = SQLiteLogger(path)
    try:
        return logger.open()
    except (OSError, RuntimeError, sqlite3.Error) as exc:
        raise CLIError(
            f"cannot open the log database {str(path)!r}: {exc}; "
            "pass --log-path elsewhere or --no-log"
        ) from exc


class ChainRun:
    """One ``agentrt chain`` invocation: its model, handlers, and what happened."""

    def __init__(
        self,
        args: argparse.Namespace,
        model: AsyncModel,
        prompt: str,
        tools: list[Any],
        logger: SQLiteLogger | None,
        schema: dict[str, Any] | None = None,
    ) -> None:
        self.args = args
        self.model = model
        self.prompt = prompt
        self.tools = tools
        self.logger = logger
        self.schema = schema
        self.writer = TextWriter(sys.stdout)
        # With --schema stdout gets the validated JSON at the end, not the streamed text.
        quiet = args.json or schema is not None
        self.display = ChainDisplay(sys.stderr, None if quiet else self.writer)
        self.chain: Any = None
        self.error: BaseException | None = None

    async def run(self) -> None:
        """Run the chain, streaming its text unless ``--json``."""
        handlers: list[CallbackHandler] = [self.display]
        if self.logger is not None:
            handlers.append(self.logger)
        async with self.model:
            self.chain = self.model.chain(
                self.prompt,
                system=self.args.system,
                tools=self.tools,
                max_turns=self.args.max_turns,
                callbacks=handlers,
                output_type=self.schema,
                output_mode=self.args.output_mode,
            )
            try:
                async for chunk in self.chain:
                    if not self.args.json and self.schema is None:
                        self.writer.write(chunk)
                if self.schema is not None and not self.args.json:
                    output = await self.chain.output()
                    sys.stdout.write(json.dumps(output, ensure_ascii=False) + "\n")
                    sys.stdout.flush()
            except AgentrtError as exc:
                self.error = exc
            finally:
                self.writer.end_line()

    def report(self, code: ExitCode) -> None:
        """Print the end of the run: usage then the error on stderr, or the JSON record."""
        chain, error = self.chain, self.error
        if chain is not None and self.args.json:
            record = chain_record(
                chain,
                error=_error_record(error, code),
                log_path=str(self.logger.path) if self.logger is not None else None,
            )
            sys.stdout.write(json.dumps(record, ensure_ascii=False) + "\n")
            sys.stdout.flush()
        elif chain is not None and (chain.usage is not None or error is None):
            self.display.line(usage_line(chain.usage, len(chain.responses)))
        if chain is not None and chain.truncated:
            self.display.line(
                "agentrt: warning: the answer was cut by the model's token limit "
                "(finish reason 'length'); it is incomplete"
            )
        if code == ExitCode.INTERRUPTED:
            logged = " and logged as cancelled" if self.logger is not None else ""
            self.display.line(f"agentrt: interrupted; the chain was stopped{logged}")
        elif error is not None:
            self.display.line(f"agentrt: error: {cli_message(error)}")
        elif chain is not None and chain.status == "cancelled" and chain.error is not None:
            self.display.line(f"agentrt: the chain was cancelled: {chain.error}")


def _error_record(error: BaseException | None, code: ExitCode) -> dict[str, Any] | None:
    if code == ExitCode.INTERRUPTED:
        return {"type": "KeyboardInterrupt", "message": "interrupted", "exit_code": int(code)}
    if error is None:
        return None
    return {"type": type(error).__name__, "message": cli_message(error), "exit_code": int(code)}


def run_chain(args: argparse.Namespace) -> int:
    """Run ``agentrt chain`` and return its exit code.

    Raises:
        CLIError: bad usage or an unusable log database.
        AgentrtError: the model or a ``-T`` tool is unknown, or a key is missing.
    """
    prompt = read_prompt(args.prompt, sys.stdin)
    tools = [*gather_tools(args.tools, args.functions), *getattr(args, "extra_tools", ())]
    schema = None
    if args.schema is not None:
        try:
            schema = load_schema(args.schema)
            output_spec(schema)  # a bad schema is refused here, before any call
        except UsageError as exc:
            message = str(exc)
            if not message.startswith("--schema"):
                message = f"--schema: {message}"
            raise CLIError(message, ExitCode.USAGE) from exc
    model_id = args.model or os.environ.get(MODEL_ENV) or DEFAULT_MODEL
    model = get_async_model(model_id, base_url=args.base_url, stream=not args.no_stream)
    # What the library logs (a truncated answer, a failed tool) the command line shows in
    # its own words on stderr; without this, logging's last-resort handler would print
    # the library's records too.
    logging.getLogger("agentrt").addHandler(logging.NullHandler())
    logger = open_logger(args)
    run = ChainRun(args, model, prompt, tools, logger, schema)
    code = ExitCode.OK
    try:
        anyio.run(run.run)
    except KeyboardInterrupt:
        code = ExitCode.INTERRUPTED
    finally:
        if logger is not None:
            logger.close()
    if code == ExitCode.OK and run.error is not None:
        code = exit_code_for(run.error)
    run.report(code)
    if code == ExitCode.INTERRUPTED:
        _exit_now_if_threads_linger(code)
    return int(code)


def _exit_now_if_threads_linger(code: ExitCode) -> None:
    """Exit at once when an abandoned sync tool still runs in a worker thread.

    Python cannot stop a thread, and the interpreter would wait for it at exit; after
    Ctrl-C everything worth keeping is already logged and flushed.
    """
    main = threading.main_thread()
    if any(t is not main and t.is_alive() and not t.daemon for t in threading.enumerate()):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(int(code))
