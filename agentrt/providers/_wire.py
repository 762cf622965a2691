"""JSON encoding of request bodies, with the parts a chain sends again encoded once.

Every turn of a chain sends the whole conversation (and the same tool declarations) again.
Encoding all of it anew on every turn made a chain's CPU grow with the square of its
length, so a provider keeps the JSON text of each part it has encoded in a
:class:`JSONCache` and places it in the next body as an :class:`Encoded` value.

A part is found by the values its encoding is made from, never by object: messages and
schemas are mutable, and one edited in place is simply encoded again. The cache holds a
bounded amount of text and starts afresh when it is full.
"""

from __future__ import annotations

import json
from collections.abc import Hashable
from typing import Any

from ..errors import ServerError

__all__ = ["UNREADABLE", "Encoded", "JSONCache", "dumps", "encode_body", "malformed"]

#: What decoding an event or body of an unexpected shape raises (a pydantic
#: ``ValidationError`` is a ``ValueError``): caught where events are decoded, never leaked.
UNREADABLE = (TypeError, ValueError, AttributeError, KeyError, IndexError)


def malformed(
    provider: str, what: str, data: Any, cause: BaseException | None = None
) -> ServerError:
    """The error for a complete event or body that agentrt cannot interpret.

    The one rule for every provider: the server answered, but with something that is not
    what its API documents, so it is a :class:`~agentrt.errors.ServerError` (a stream that
    ends early is an ``APIConnectionError`` instead). The start of the data is quoted.
    """
    text = data if isinstance(data, str) else repr(data)
    reason = f" ({type(cause).__name__}: {cause})" if cause is not None else ""
    return ServerError(
        f"{what} could not be interpreted{reason}: {text[:200]!r}", provider=provider
    )


#: The encoding of every request body: compact, UTF-8 rather than ``\u`` escapes.
dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


class Encoded:
    """A value of a request body given as its JSON text."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


def encode_body(body: dict[str, Any]) -> bytes:
    """Encode a request body as ``json.dumps`` would; :class:`Encoded` values are used as is.

    The top level is written item by item, so that the large parts (already encoded) are not
    walked again and the small ones skip the encoder's setup.
    """
    parts: list[str] = []
    for key, value in body.items():
        if type(key) is not str:
            # json.dumps turns such keys into strings its own way: let it.
            return dumps({k: _decoded(v) for k, v in body.items()}).encode()
        kind = type(value)
        if kind is Encoded:
            text = value.text
        elif kind is str:
            text = _string(value)
        elif value is True:
            text = "true"
        elif value is False:
            text = "false"
        elif value is None:
            text = "null"
        elif kind is int:
            text = int.__repr__(value)
        else:
            text = dumps(value)
        parts.append(f"{_string(key)}:{text}")
    return ("{" + ",".join(parts) + "}").encode()


_string = json.encoder.encode_basestring  # what the encoder uses for str with ensure_ascii=False


def _decoded(value: Any) -> Any:
    return json.loads(value.text) if type(value) is Encoded else value


class JSONCache:
    """JSON text of request parts, by a key made of what each part's encoding depends on."""

    __slots__ = ("_entries", "_size", "limit")

    def __init__(self, limit: int = 4_000_000) -> None:
        self._entries: dict[Hashable, Any] = {}
        self._size = 0
        #: How many characters of JSON text the cache holds before it starts afresh.
        self.limit = limit

    def get(self, key: Hashable) -> Any:
        """Return what was stored under ``key``, or ``None``."""
        return self._entries.get(key)

    def put(self, key: Hashable, text: str, entry: Any = None) -> None:
        """Store ``entry`` (by default ``text``, the JSON it holds) under ``key``."""
        self._size += len(text)
        if self._size > self.limit:
            self._entries.clear()
            self._size = len(text)
        self._entries[key] = text if entry is None else entry
