"""Local validation of an answer, what to tell the model when it fails, and the final error.

Validation always runs here, whatever the mode: a strict provider mode does not guarantee
the value (refusals, ``max_tokens`` truncation and compatible servers that ignore the
schema all break it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..errors import OutputAttempt, OutputValidationError
from ._extract import extract_json
from ._spec import WRAP_KEY, OutputInvalid, OutputSpec
from ._strict import dialect
from ._wire import OUTPUT_TOOL_NAME, ResolvedMode

__all__ = ["exhausted", "retry_message", "truncated_message", "validate_answer"]

_DIALECT_PROVIDERS = ("openai", "anthropic", "gemini")


def validate_answer(spec: OutputSpec, raw: str, *, mode: ResolvedMode, provider: str) -> Any:
    """Validate the model's answer into the caller's value.

    Args:
        spec: the output spec.
        raw: the answer text (``native``/``prompted``) or the final-result tool's arguments
            (``tool``).
        mode: the resolved mode the request used.
        provider: the provider's name (its dialect's changes are undone first).

    Raises:
        OutputInvalid: the text to send back to the model.
    """
    value = extract_json(raw)
    if mode == "prompted":
        # The prompt shows the type's own schema; a model may still answer with the wrapper.
        if spec.wrapped and isinstance(value, dict) and set(value) == {WRAP_KEY}:
            try:
                return spec.validate_value(value, wrapped=True)
            except OutputInvalid:
                pass  # {"result": ...} may be the value itself (a dict output)
        return spec.validate_value(value, wrapped=False)
    if provider in _DIALECT_PROVIDERS:
        value = dialect(spec, provider).normalize(value)  # type: ignore[arg-type]
    return spec.validate_value(value, wrapped=True)


def retry_message(error: OutputInvalid | str, mode: ResolvedMode) -> str:
    """Say what the chain tells the model after an invalid answer.

    It is sent as a user message, or in ``tool`` mode as the final-result tool's error result.
    """
    what = {
        "tool": f"the arguments of {OUTPUT_TOOL_NAME}",
        "native": "your answer",
        "prompted": "your answer",
    }[mode]
    again = (
        f"Call {OUTPUT_TOOL_NAME} again with corrected arguments."
        if mode == "tool"
        else "Reply again with the corrected JSON only."
    )
    return f"{what[0].upper()}{what[1:]} did not validate:\n{error}\n{again}"


def truncated_message(mode: ResolvedMode) -> str:
    """The validation error of an answer cut by the token limit."""
    return (
        "the answer was cut off by the token limit (finish_reason 'length') before the JSON "
        "was complete" + ("" if mode == "tool" else "; reply with a shorter JSON value")
    )


def exhausted(spec: OutputSpec, attempts: Sequence[OutputAttempt]) -> OutputValidationError:
    """The error raised when every allowed attempt failed validation."""
    count = len(attempts)
    last = " ".join(attempts[-1].error.split()) if attempts else "no answer"
    first_line = last if len(last) <= 160 else last[:157] + "..."
    return OutputValidationError(
        f"the model's answer failed validation as {spec.name} in {count} attempt"
        f"{'s' if count != 1 else ''} (last: {first_line}); see .attempts for each raw answer "
        "and error",
        attempts,
    )
