"""The command line's exit codes, one per kind of failure a script may branch on."""

from __future__ import annotations

from enum import IntEnum

from ..errors import (
    AgentrtError,
    ChainLimitError,
    MissingAPIKeyError,
    OutputRefusedError,
    OutputValidationError,
    ProviderError,
    UnknownModelError,
    UnknownToolError,
    UsageError,
)

__all__ = ["EPILOG", "CLIError", "ExitCode", "cli_message", "exit_code_for"]


class ExitCode(IntEnum):
    """Exit statuses of ``agentrt``."""

    OK = 0
    ERROR = 1
    USAGE = 2
    MISSING_KEY = 3
    UNKNOWN_MODEL = 4
    UNKNOWN_TOOL = 5
    PROVIDER = 6
    CHAIN_LIMIT = 7
    OUTPUT = 8
    INTERRUPTED = 130


_MEANINGS = {
    ExitCode.OK: "success",
    ExitCode.ERROR: "other error (e.g. the log database cannot be opened)",
    ExitCode.USAGE: "invalid usage: bad arguments, no prompt, a bad --functions file",
    ExitCode.MISSING_KEY: "the provider's API key is not set",
    ExitCode.UNKNOWN_MODEL: "unknown model id",
    ExitCode.UNKNOWN_TOOL: "unknown tool name given to -T",
    ExitCode.PROVIDER: "the provider failed (HTTP error, connection, timeout)",
    ExitCode.CHAIN_LIMIT: "the chain reached --max-turns while the model still asked for tools",
    ExitCode.OUTPUT: "the answer failed --schema validation on every attempt, or was refused",
    ExitCode.INTERRUPTED: "interrupted (Ctrl-C); the chain is logged as cancelled",
}

EPILOG = (
    "exit codes:\n"
    + "\n".join(f"  {int(code):<4} {meaning}" for code, meaning in _MEANINGS.items())
    + "\n\nenvironment:\n"
    "  OPENAI_API_KEY, ANTHROPIC_API_KEY, GEMINI_API_KEY   provider keys (never a flag)\n"
    "  OPENAI_BASE_URL, ANTHROPIC_BASE_URL, GOOGLE_GEMINI_BASE_URL   API roots (or --base-url)\n"
    "  AGENTRT_MODEL   the default model; AGENTRT_LOGS_PATH   the log database"
)

#: Library parameter names as the command line spells them.
_FLAGS = (
    ("max_turns=", "--max-turns "),
    ("base_url=", "--base-url "),
    ("system=", "--system "),
)


def cli_message(error: BaseException) -> str:
    """The message of ``error`` in the command line's terms (flags and variables)."""
    if isinstance(error, MissingAPIKeyError):
        return (
            f"no API key for {error.provider}: set the {error.env_var} environment variable "
            "(the command line reads keys only from the environment)"
        )
    message = str(error)
    for parameter, flag in _FLAGS:
        message = message.replace(parameter, flag)
    return message.replace(" or look at error.responses", " or look at the log (agentrt logs)")


class CLIError(Exception):
    """A failure to report as ``agentrt: error: <message>`` with an exit code."""

    def __init__(self, message: str, code: ExitCode = ExitCode.ERROR) -> None:
        super().__init__(message)
        self.code = code


def exit_code_for(error: BaseException) -> ExitCode:
    """Map an exception to the exit code documented in :data:`EPILOG`."""
    if isinstance(error, CLIError):
        return error.code
    if isinstance(error, KeyboardInterrupt):
        return ExitCode.INTERRUPTED
    for kind, code in _BY_TYPE:
        if isinstance(error, kind):
            return code
    return ExitCode.ERROR


# Most specific first: MissingAPIKeyError and UnknownModelError are UsageErrors.
_BY_TYPE: tuple[tuple[type[BaseException], ExitCode], ...] = (
    (MissingAPIKeyError, ExitCode.MISSING_KEY),
    (UnknownModelError, ExitCode.UNKNOWN_MODEL),
    (UnknownToolError, ExitCode.UNKNOWN_TOOL),
    (ProviderError, ExitCode.PROVIDER),
    (ChainLimitError, ExitCode.CHAIN_LIMIT),
    (OutputValidationError, ExitCode.OUTPUT),
    (OutputRefusedError, ExitCode.OUTPUT),
    (UsageError, ExitCode.USAGE),
    (AgentrtError, ExitCode.ERROR),
)
