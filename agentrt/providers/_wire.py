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

import http
import json
from collections import OrderedDict
from collections.abc import Hashable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from .._sse import loads
from ..errors import (
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ProviderError,
    RateLimitError,
    ServerError,
)

if TYPE_CHECKING:
    from .._sse import SSEEvent
    from ..messages import StreamEvent, TurnRequest

__all__ = [
    "OPTION_KEYS",
    "STATUS_ERRORS",
    "UNREADABLE",
    "Codec",
    "Decoder",
    "Encoded",
    "JSONCache",
    "dumps",
    "encode_body",
    "error_for_status",
    "error_message",
    "event_json",
    "generation_items",
    "malformed",
    "shorten",
    "status_phrase",
]

#: Keys of ``TurnRequest.options`` the driver handles itself: never sent as options.
OPTION_KEYS = frozenset({"extra_body", "extra_headers"})


def generation_items(options: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """The generation options of a request (``extra_body``/``extra_headers`` left out)."""
    return [(k, v) for k, v in options.items() if k not in OPTION_KEYS]


class Decoder(Protocol):
    """Turns one streamed answer's SSE events into agentrt events (no I/O)."""

    def feed(self, event: SSEEvent) -> list[StreamEvent]:
        """The events of one SSE event; raises ``ProviderError`` for an error event."""
        ...

    def close(self) -> list[StreamEvent]:
        """The closing events; raises ``APIConnectionError`` without the end marker."""
        ...


class Codec(Protocol):
    """A vendor's wire format: JSON and events, never HTTP.

    The codecs subclass it, so ``error_message`` and ``retry_after`` have their common
    defaults here.
    """

    name: ClassVar[str]
    env_key: ClassVar[str]
    default_base_url: ClassVar[str]
    env_base_url: ClassVar[str | None]
    generation_options: ClassVar[frozenset[str]]

    def route(self, model_name: str, *, stream: bool) -> tuple[str, dict[str, str] | None]:
        """The request path (after ``base_url``) and query parameters."""
        ...

    def auth_headers(self, key: str) -> dict[str, str]:
        """The headers that authenticate a request."""
        ...

    def request_body(
        self, model_name: str, request: TurnRequest, *, stream: bool, cache: dict[Any, Any]
    ) -> dict[str, Any]:
        """The JSON body; ``cache`` lives as long as the chain (encodings to reuse)."""
        ...

    def decoder(self) -> Decoder:
        """A new decoder for one streamed answer."""
        ...

    def events_from_body(self, payload: Any) -> list[StreamEvent]:
        """The events of a whole (non-streamed) JSON answer."""
        ...

    def error_message(self, status: int, payload: Any) -> str:
        """A readable message from an error body: ``error.message``, or its text."""
        return error_message(status, payload)

    def request_id(self, headers: Mapping[str, str]) -> str | None:
        """The provider's id of the request, from the response headers."""
        ...

    def retry_after(self, status: int, headers: Mapping[str, str], body: bytes) -> float | None:
        """A wait the error body asks for (Gemini's ``RetryInfo``); by default ``None``."""
        return None


#: Which exception an HTTP status (or an error event meaning it) is.
STATUS_ERRORS: dict[int, type[ProviderError]] = {
    401: AuthenticationError,
    403: AuthenticationError,
    408: APITimeoutError,
    429: RateLimitError,
}


def error_for_status(
    status: int,
    message: str,
    *,
    provider: str,
    request_id: str | None = None,
    body: str | None = None,
    kind: type[ProviderError] | None = None,
) -> ProviderError:
    """The one builder of provider errors from a status: the one status classification.

    401/403 are :class:`AuthenticationError`, 429 :class:`RateLimitError`, 408
    :class:`APITimeoutError`, 5xx and 529 :class:`ServerError`, other 4xx
    :class:`BadRequestError`, anything else :class:`ProviderError` (``kind`` overrides).
    """
    cls = kind or STATUS_ERRORS.get(status)
    if cls is None:
        if status >= 500:
            cls = ServerError
        elif status >= 400:
            cls = BadRequestError
        else:
            cls = ProviderError
    return cls(message, provider=provider, status=status, request_id=request_id, body=body)


_MAX_ERROR_TEXT = 500


def shorten(text: str, limit: int = _MAX_ERROR_TEXT) -> str:
    """Collapse whitespace and cut ``text`` to ``limit`` characters (with an ellipsis)."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def status_phrase(status: int) -> str:
    """``"HTTP 404 Not Found"``, or ``"HTTP 599"`` for a status without a phrase."""
    try:
        return f"HTTP {status} {http.HTTPStatus(status).phrase}"
    except ValueError:
        return f"HTTP {status}"


def error_message(status: int, payload: Any) -> str:
    """A readable message from an error body, the shape most APIs use.

    Understands ``{"error": {"message": ...}}``, ``{"error": "..."}``, ``{"message": ...}``,
    a list holding one of those, and plain text (whitespace collapsed, truncated).
    """
    if isinstance(payload, list) and payload:
        payload = payload[0]
    if isinstance(payload, dict):
        error = payload.get("error", payload)
        if isinstance(error, str) and error:
            return shorten(error)
        if isinstance(error, dict):
            message = error.get("message")
            if isinstance(message, str) and message:
                return shorten(message)
        payload = json.dumps(payload, ensure_ascii=False)
    if isinstance(payload, str) and payload.strip():
        return shorten(payload)
    return status_phrase(status)


def event_json(data: str) -> dict[str, Any]:
    """The JSON object of an SSE event's data; ``ValueError`` when it is not one."""
    value = loads(data)
    if not isinstance(value, dict):
        raise ValueError(f"the event is a JSON {type(value).__name__}, not an object")
    return value


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


#: The key, in a chain's encoding cache, of its model's :class:`ToolEncodings`.
TOOL_ENCODINGS = "agentrt tool encodings"


class ToolEncodings:
    """A model's encoded tool lists, shared by all its chains (least recently used out).

    A chain's tool list is usually the one every chain of the model sends: encoding it
    once per model instead of once per chain saves a ``json.dumps`` of every schema (and
    the snapshot that detects a schema edited in place) per chain. Entries are keyed by
    the tools' names, descriptions and the identity of their schema dicts, and hold those
    dicts (so the identities stay theirs); no function or closure is kept, and at most
    :attr:`size` lists.
    """

    __slots__ = ("_entries", "size")

    def __init__(self, size: int = 64) -> None:
        self.size = size
        self._entries: OrderedDict[Hashable, Any] = OrderedDict()

    def get(self, key: Hashable) -> Any:
        """The entry for ``key``, or ``None``."""
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
        return entry

    def __setitem__(self, key: Hashable, entry: Any) -> None:
        self._entries[key] = entry
        self._entries.move_to_end(key)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


def tool_store(cache: dict[Any, Any]) -> Any:
    """Where a codec keeps tool-list encodings: the model's store, else the chain's cache."""
    store = cache.get(TOOL_ENCODINGS)
    return cache if store is None else store
