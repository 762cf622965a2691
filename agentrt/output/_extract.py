"""JSON out of a model's text: whole answers, fenced answers, and answers still streaming."""

from __future__ import annotations

import json
import re
from typing import Any

import pydantic_core

from ._spec import OutputInvalid

__all__ = ["extract_json", "partial_json"]

# ```json ... ``` (or a bare ``` fence); the language tag is optional.
_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[ \t]*\r?\n(.*?)(?:```|\Z)", re.DOTALL)
_DECODER = json.JSONDecoder()


def extract_json(text: str) -> Any:
    """Parse the JSON value in a model's answer.

    The answer may be the bare JSON value, a fenced block (```` ```json ````), or JSON after
    some prose; the first parseable candidate in that order wins.

    Raises:
        OutputInvalid: no JSON value found; the message says what was seen.
    """
    stripped = text.strip()
    if not stripped:
        raise OutputInvalid("the answer was empty: reply with the JSON value only")
    try:
        return json.loads(stripped)
    except json.JSONDecodeError as exc:
        first_error = exc
    fences = sorted(_FENCE.finditer(text), key=lambda m: m.group(1).lower() not in ("json", ""))
    for match in fences:
        found, value = _loads(match.group(2))
        if found:
            return value
    for match in re.finditer(r"[\[{]", text):
        try:
            value, _ = _DECODER.raw_decode(text, match.start())
        except ValueError:
            continue
        return value
    raise OutputInvalid(
        f"the answer is not valid JSON ({first_error.msg} at line {first_error.lineno} column "
        f"{first_error.colno}): reply with the JSON value only, no prose"
    )


def _loads(text: str) -> tuple[bool, Any]:
    try:
        return True, json.loads(text)
    except ValueError:
        return False, None


def partial_json(text: str) -> Any:
    """Best-effort parse of JSON that is still streaming in; ``None`` when nothing parses yet.

    Incomplete strings are kept as far as they came; a fence or prose before the JSON is
    skipped.
    """
    start = _json_start(text)
    if start < 0:
        return None
    try:
        return pydantic_core.from_json(
            text[start:].rstrip("`\n\r\t "), allow_partial=_PARTIAL_STRINGS
        )
    except ValueError:
        return None


def _partial_mode() -> Any:
    # pydantic-core 2.24 added "trailing-strings" (keep an unfinished string); older
    # versions (pydantic 2.9) drop it and take a bool.
    try:
        pydantic_core.from_json('"a', allow_partial="trailing-strings")
    except (TypeError, ValueError):
        return True
    return "trailing-strings"


_PARTIAL_STRINGS: Any = _partial_mode()


def _json_start(text: str) -> int:
    fence = text.find("```")
    if fence >= 0:
        newline = text.find("\n", fence)
        if newline < 0:
            return -1
        text_start = newline + 1
    else:
        text_start = 0
    for index in range(text_start, len(text)):
        char = text[index]
        if char in "{[":
            return index
        if fence < 0 and not char.isspace() and index == text_start:
            # A bare value (a number, a string) at the very start.
            return index
    return -1
