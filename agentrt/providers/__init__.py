"""Providers, found by the model-id prefix and imported on first use."""

from __future__ import annotations

import difflib
import functools
import importlib

from ..errors import UnknownModelError
from .base import Provider

__all__ = ["PROVIDERS", "Provider", "provider_class", "remote_generation_options"]

#: prefix -> (module, class name, environment variable of its API key or None)
PROVIDERS: dict[str, tuple[str, str, str | None]] = {
    "offline": ("agentrt.providers.offline", "OfflineProvider", None),
    "openai": ("agentrt.providers.openai", "OpenAIProvider", "OPENAI_API_KEY"),
    "anthropic": ("agentrt.providers.anthropic", "AnthropicProvider", "ANTHROPIC_API_KEY"),
    "gemini": ("agentrt.providers.gemini", "GeminiProvider", "GEMINI_API_KEY"),
}

#: Name starts that tell the provider of a bare model name (``"gpt-4o"`` -> ``openai``).
_FAMILIES = (
    ("gpt", "openai"),
    ("o1", "openai"),
    ("o3", "openai"),
    ("o4", "openai"),
    ("chatgpt", "openai"),
    ("claude", "anthropic"),
    ("gemini", "gemini"),
    ("gemma", "gemini"),
)


def _suggestion(model_id: str) -> str:
    """The closest valid id for a model id with an unknown prefix, or ``""``."""
    prefix, sep, name = model_id.partition(":")
    if sep:
        lowered = prefix.strip().lower()
        if lowered in PROVIDERS:
            return f"{lowered}:{name}"
        close = difflib.get_close_matches(lowered, list(PROVIDERS), n=1, cutoff=0.6)
        return f"{close[0]}:{name}" if close else ""
    bare = model_id.strip().lower()
    for start, provider in _FAMILIES:
        if bare.startswith(start):
            return f"{provider}:{model_id.strip()}"
    close = difflib.get_close_matches(bare, list(PROVIDERS), n=1, cutoff=0.6)
    return close[0] if close and close[0] == "offline" else ""


def provider_class(model_id: str) -> tuple[type[Provider], str]:
    """Return the provider class and the model name for ``"provider:name"``.

    Raises:
        UnknownModelError: the prefix names no provider, or the id has no model name; the
            message suggests the closest valid id (``"gpt-4o"`` -> ``"openai:gpt-4o"``).
    """
    if not isinstance(model_id, str):
        raise UnknownModelError(
            f"a model id is a string such as 'openai:gpt-4.1-mini' or 'offline', got {model_id!r}"
        )
    prefix, _, name = model_id.partition(":")
    if prefix not in PROVIDERS:
        known = ", ".join(f"{p}:<name>" for p in PROVIDERS)
        close = _suggestion(model_id)
        hint = f"; did you mean {close!r}?" if close else ""
        raise UnknownModelError(
            f"unknown model id {model_id!r}{hint} (expected 'provider:name' with one of {known})"
        )
    if not name:
        if prefix != "offline":
            raise UnknownModelError(
                f"model id {model_id!r} names no model: write it as '{prefix}:<model name>'"
            )
        name = "default"
    module_name, class_name, _ = PROVIDERS[prefix]
    cls: type[Provider] = getattr(importlib.import_module(module_name), class_name)
    return cls, name


@functools.cache
def remote_generation_options() -> frozenset[str]:
    """The generation options any remote provider accepts (what offline models take)."""
    names: set[str] = set()
    for prefix, (module_name, class_name, _) in PROVIDERS.items():
        if prefix == "offline":
            continue
        cls = getattr(importlib.import_module(module_name), class_name)
        names.update(getattr(cls, "generation_options", ()))
    return frozenset(names)
