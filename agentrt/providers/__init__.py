"""Providers, found by the model-id prefix and imported on first use."""

from __future__ import annotations

import importlib

from ..errors import UnknownModelError
from .base import Provider

__all__ = ["PROVIDERS", "Provider", "provider_class"]

#: prefix -> (module, class name, environment variable of its API key or None)
PROVIDERS: dict[str, tuple[str, str, str | None]] = {
    "offline": ("agentrt.providers.offline", "OfflineProvider", None),
    "openai": ("agentrt.providers.openai", "OpenAIProvider", "OPENAI_API_KEY"),
    "anthropic": ("agentrt.providers.anthropic", "AnthropicProvider", "ANTHROPIC_API_KEY"),
    "gemini": ("agentrt.providers.gemini", "GeminiProvider", "GEMINI_API_KEY"),
}


def provider_class(model_id: str) -> tuple[type[Provider], str]:
    """Return the provider class and the model name for ``"provider:name"``.

    Raises:
        UnknownModelError: the prefix names no provider, or the id has no model name.
    """
    prefix, _, name = model_id.partition(":")
    if prefix not in PROVIDERS:
        known = ", ".join(f"{p}:<name>" for p in PROVIDERS)
        raise UnknownModelError(
            f"unknown model id {model_id!r}: expected 'provider:name' with one of {known}"
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
