"""Schemas for the command line: a JSON Schema file, inline JSON, or llm's concise form.

The concise form (as the ``llm`` tool writes it) lists fields separated by commas, or by
newlines when there are any: ``name, age int, bio: a short bio``. Each field is a name, an
optional type (``str``, the default; ``int``; ``float``; ``bool``) and an optional ``:``
description. Every field is required.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from ..errors import UsageError

__all__ = ["concise_schema", "load_schema"]

_TYPES = {"str": "string", "int": "integer", "float": "number", "bool": "boolean"}
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


def concise_schema(text: str) -> dict[str, Any]:
    """Turn llm's concise schema form into a JSON Schema object.

    Raises:
        UsageError: an empty spec, a bad field name, an unknown type or a repeated field.
    """
    separator = "\n" if "\n" in text else ","
    fields = [part.strip() for part in text.split(separator) if part.strip()]
    if not fields:
        raise UsageError("the schema is empty: write fields like 'name, age int, bio: a short bio'")
    properties: dict[str, Any] = {}
    for entry in fields:
        head, _, description = entry.partition(":")
        words = head.split()
        if not words or len(words) > 2:
            raise UsageError(
                f"schema field {entry!r}: write 'name', 'name type' or 'name type: description'"
            )
        name = words[0]
        if not _NAME.fullmatch(name):
            raise UsageError(f"schema field {entry!r}: {name!r} is not a usable field name")
        kind = words[1] if len(words) == 2 else "str"
        if kind not in _TYPES:
            raise UsageError(
                f"schema field {entry!r}: unknown type {kind!r}; use one of {', '.join(_TYPES)}"
            )
        if name in properties:
            raise UsageError(f"schema field {name!r} is given twice")
        prop: dict[str, Any] = {"type": _TYPES[kind]}
        if description.strip():
            prop["description"] = description.strip()
        properties[name] = prop
    return {"type": "object", "properties": properties, "required": list(properties)}


def load_schema(arg: str) -> dict[str, Any]:
    """Read ``--schema``: a JSON Schema file, inline JSON, or the concise form.

    Raises:
        UsageError: a file that is not JSON, inline JSON that does not parse, or a concise
            form with errors; each message names the problem.
    """
    text = arg.strip()
    if text.startswith(("{", "[")):
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise UsageError(f"--schema looks like inline JSON but does not parse: {exc}") from exc
        return _schema_object(value, "the inline JSON")
    path = Path(arg).expanduser()
    if "\n" not in arg and len(arg) < 4096 and _is_file(path):
        try:
            value = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise UsageError(f"--schema file {str(path)!r} is not readable JSON: {exc}") from exc
        return _schema_object(value, f"the file {str(path)!r}")
    return concise_schema(arg)


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:
        return False


def _schema_object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise UsageError(f"--schema: {where} is not a JSON object (a JSON Schema is an object)")
    return value
