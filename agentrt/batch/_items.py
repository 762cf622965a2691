"""Batch inputs: what one item may be, its index, id and content hash.

An item is a prompt (a string or a list of messages) or a dict with a ``prompt`` key, an
optional ``id`` and per-item chain options. Items are numbered as they are read; the
results file keys each record by that index and a hash of the item, so that a resumed run
notices when the input at an index is no longer the one that was answered.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..messages import Message

__all__ = ["BatchItem", "item_key", "jsonable", "make_item"]


@dataclass(slots=True)
class BatchItem:
    """One input of a batch, normalised.

    Attributes:
        index: the 0-based position of the item in the input.
        prompt: what the chain is started with.
        options: per-item chain options (they override the batch's).
        input: what a record shows as its input: the item's ``id`` when it has one, else
            the item in JSON form.
        key: a hash of the whole item, so a changed input is noticed on resume.
        problem: why the item cannot be run (it then gets a failed record).
    """

    index: int
    prompt: Any
    options: dict[str, Any] = field(default_factory=dict)
    input: Any = None
    key: str = ""
    problem: str | None = None


def jsonable(value: Any) -> Any:
    """Return ``value`` as JSON-compatible data (messages and models dumped, the rest named)."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, Message):
        return value.model_dump(mode="json", exclude_defaults=True)
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return jsonable(dump(mode="json"))
    # Tools, callables, classes: their names, which are stable across runs (a repr holding
    # a memory address would change the hash on every run and defeat resume).
    name = getattr(value, "name", None) or getattr(value, "__qualname__", None)
    kind = type(value)
    return f"<{kind.__module__}.{kind.__qualname__}{' ' + str(name) if name else ''}>"


def item_key(value: Any) -> str:
    """A short, stable hash of an item's JSON form."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def make_item(index: int, raw: Any) -> BatchItem:
    """Normalise one raw input; a malformed one gets ``problem`` set instead of raising."""
    data = jsonable(raw)
    key = item_key(data)
    if isinstance(raw, str):
        return BatchItem(index, raw, input=data, key=key)
    if isinstance(raw, Mapping):
        options = dict(raw)
        item_id = options.pop("id", None)
        shown = jsonable(item_id) if item_id is not None else data
        if "prompt" not in options:
            return BatchItem(
                index,
                None,
                input=shown,
                key=key,
                problem=f"item {index} is a dict without a 'prompt' key "
                f"(its keys: {', '.join(map(str, raw)) or 'none'}); give each dict item a "
                "'prompt' (a string or a list of messages) and optionally an 'id'",
            )
        prompt = options.pop("prompt")
        return BatchItem(index, prompt, options, input=shown, key=key)
    if isinstance(raw, Sequence) and not isinstance(raw, (bytes, bytearray)):
        return BatchItem(index, list(raw), input=data, key=key)
    return BatchItem(
        index,
        None,
        input=data,
        key=key,
        problem=f"item {index} is a {type(raw).__name__}: an item is a prompt string, a "
        "list of messages, or a dict with a 'prompt' key",
    )
