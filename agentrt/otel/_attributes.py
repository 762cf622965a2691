"""What the spans and metrics say about a provider, a request and a response.

Attribute values are worked out here from agentrt's objects; a provider's are worked out
once and kept (``Provider``), so a turn only copies prepared dictionaries. A few values live
on private fields of the core's objects (the provider of a response, whether it streams):
they are read here only, each falling back to a public attribute of the same name first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from . import _semconv as sc

__all__ = [
    "Provider",
    "error_name",
    "extra_usage",
    "provider_of",
    "request_options",
    "server",
    "streamed",
    "wants_output_type",
]

#: ``Usage`` fields holding cache and reasoning counts, when a provider reports them.
_EXTRA_USAGE = (
    ("cache_read_input_tokens", sc.USAGE_CACHE_READ_INPUT_TOKENS),
    ("cache_creation_input_tokens", sc.USAGE_CACHE_CREATION_INPUT_TOKENS),
    ("reasoning_output_tokens", sc.USAGE_REASONING_OUTPUT_TOKENS),
)


@dataclass(slots=True)
class Provider:
    """What the spans and metrics say about one provider instance, worked out once."""

    model: str
    secrets: tuple[str, ...]
    attributes: dict[str, Any]  # provider name, request model, server address and port
    chat_name: str = ""
    chat: dict[str, Any] = field(default_factory=dict)  # a chat span's first attributes
    metric: dict[str, Any] = field(default_factory=dict)  # a chat's metric attributes
    metric_input: dict[str, Any] = field(default_factory=dict)
    metric_output: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.chat_name = f"{sc.OP_CHAT} {self.model}"
        self.chat = {sc.OPERATION_NAME: sc.OP_CHAT, **self.attributes}
        self.metric = self.chat
        self.metric_input = {**self.chat, sc.TOKEN_TYPE: "input"}
        self.metric_output = {**self.chat, sc.TOKEN_TYPE: "output"}


def error_name(error: BaseException | None) -> str:
    if error is None or not isinstance(error, Exception):
        return sc.CANCELLED
    return type(error).__name__


def provider_of(owner: Any) -> Any:
    """The provider object of a response or chain (agentrt keeps it on private fields)."""
    provider = getattr(owner, "provider", None) or getattr(owner, "_provider", None)
    if provider is None:
        model = getattr(owner, "_model", None)
        provider = getattr(model, "provider", None)
    return provider


_EXTRA_BY_CLASS: dict[type, tuple[tuple[str, str], ...]] = {}


def extra_usage(kind: type) -> tuple[tuple[str, str], ...]:
    """The cache and reasoning fields ``kind`` has, looked up once per class.

    A missing attribute of a pydantic model goes through a costly ``__getattr__``.
    """
    found = _EXTRA_BY_CLASS.get(kind)
    if found is None:
        fields = getattr(kind, "model_fields", None)
        found = tuple(
            (name, attribute)
            for name, attribute in _EXTRA_USAGE
            if (name in fields if isinstance(fields, dict) else hasattr(kind, name))
        )
        _EXTRA_BY_CLASS[kind] = found
    return found


def server(base_url: Any) -> tuple[str | None, int | None]:
    if not isinstance(base_url, str) or not base_url:
        return None, None
    try:
        parts = urlsplit(base_url)
        port = parts.port
    except ValueError:
        return None, None
    if parts.hostname is None:
        return None, None
    if port is None:
        port = {"https": 443, "http": 80}.get(parts.scheme)
    return parts.hostname, port


def request_options(options: dict[str, Any]) -> dict[str, Any]:
    """The ``gen_ai.request.*`` attributes of the generation options that were set."""
    found: dict[str, Any] = {}
    for option, value in options.items():
        attribute = sc.REQUEST_OPTIONS.get(option)
        if attribute is None or value is None:
            continue
        if option == "stop":
            value = [value] if isinstance(value, str) else value
            if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
                found[attribute] = list(value)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            found[attribute] = value
    return found


def streamed(response: Any) -> bool:
    # AsyncResponse keeps it private; a public ``stream`` attribute would win.
    stream = getattr(response, "stream", None)
    if stream is None:
        stream = getattr(response, "_stream", False)
    return stream is True


def wants_output_type(chain: Any) -> bool:
    if chain is None:
        return False
    return getattr(chain, "output_type", None) is not None
