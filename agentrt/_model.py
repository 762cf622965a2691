"""``AsyncModel``, ``AsyncConversation`` and ``get_async_model``: the async entry points."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from ._chain import AsyncChain, PromptType, prompt_messages
from ._response import AsyncResponse
from .callbacks import CallbackHandler, Hooks
from .messages import Message, StreamChunk, TurnRequest
from .providers import provider_class
from .providers.base import Provider
from .tools import Tool, collect_tools

__all__ = ["AsyncConversation", "AsyncModel", "get_async_model"]


class AsyncModel:
    """A model to prompt and to run chains with; create it with :func:`get_async_model`.

    One instance holds one provider (and so one HTTP client, reused by every call); close
    it with ``await model.aclose()`` or ``async with``.
    """

    def __init__(
        self,
        provider: Provider,
        *,
        model_id: str | None = None,
        stream: bool = True,
        callbacks: Iterable[CallbackHandler] = (),
        **options: Any,
    ) -> None:
        self.provider = provider
        self.model_id = model_id or f"{provider.name}:{provider.model_name}"
        self.stream = stream
        self.callbacks = tuple(callbacks)
        Hooks(self.callbacks)  # validate now: a wrong object fails here, not mid-chain
        #: Default generation options for every call (temperature, max_tokens, ...).
        self.options = options

    def collect_tools(self, tools: Iterable[Any]) -> dict[str, Tool]:
        """Normalise ``tools=[...]`` for this model (hook for subclasses)."""
        return collect_tools(tools)

    def prompt(
        self,
        prompt: PromptType,
        *,
        system: str | None = None,
        tools: Iterable[Any] = (),
        on_chunk: Callable[[StreamChunk], Any] | None = None,
        callbacks: Iterable[CallbackHandler] = (),
        stream: bool | None = None,
        history: list[Message] | None = None,
        **options: Any,
    ) -> AsyncResponse:
        """Run one turn; tool calls are parsed, not run.

        Args:
            prompt: a string, or a list of messages to start from.
            system: a system prompt.
            tools: tools the model may ask for.
            on_chunk: called with every ``StreamChunk`` as it arrives.
            callbacks: ``CallbackHandler`` instances for this call.
            stream: override the model's ``stream`` setting.
            history: earlier messages to send before the prompt.
            **options: generation options passed to the provider.

        Returns:
            A lazy response: iterate it or ``await response.text()``.
        """
        specs = [t.spec for t in self.collect_tools(tools).values()]
        messages = [*(history or ()), *prompt_messages(prompt)]
        return AsyncResponse(
            self.provider,
            TurnRequest(messages, system, specs, {**self.options, **options}),
            model=self.model_id,
            stream=self.stream if stream is None else stream,
            hooks=Hooks.combine(self.callbacks, callbacks, on_chunk=on_chunk),
        )

    def chain(self, prompt: PromptType, **kwargs: Any) -> AsyncChain:
        """Run turns until the model answers without tool calls.

        Keyword arguments are those of :class:`AsyncChain`: ``system``, ``tools``,
        ``max_turns`` (default 10), ``before_call``, ``after_call``, ``on_chunk``,
        ``callbacks``, ``limiter``, ``stream``, ``max_tool_output`` and generation options.

        Returns:
            A lazy chain: iterate it or ``await chain.text()``.
        """
        return AsyncChain(self, prompt, **kwargs)

    def conversation(self, *, system: str | None = None) -> AsyncConversation:
        """Start a conversation that keeps its history across calls."""
        return AsyncConversation(self, system=system)

    async def aclose(self) -> None:
        """Close the provider's network resources."""
        await self.provider.aclose()

    async def __aenter__(self) -> AsyncModel:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<AsyncModel {self.model_id}>"


class AsyncConversation:
    """A history that successive ``prompt`` and ``chain`` calls continue."""

    def __init__(self, model: AsyncModel, *, system: str | None = None) -> None:
        self.model = model
        self.system = system
        self.messages: list[Message] = []

    def chain(self, prompt: PromptType, **kwargs: Any) -> AsyncChain:
        """Continue the conversation with a chain; its turns are added to the history."""
        kwargs.setdefault("system", self.system)
        return AsyncChain(self.model, prompt, history=self.messages, **kwargs)

    def prompt(self, prompt: PromptType, **kwargs: Any) -> AsyncResponse:
        """Continue the conversation with one turn; it is added to the history when done."""
        kwargs.setdefault("system", self.system)
        new = prompt_messages(prompt)
        response = self.model.prompt(new, history=self.messages, **kwargs)

        def keep(r: AsyncResponse) -> None:
            if r.status == "completed":
                self.messages.extend([*new, r.message])

        response.on_done(keep)
        return response


def get_async_model(model_id: str | AsyncModel, **options: Any) -> AsyncModel:
    """Return a model for ``"provider:name"``.

    Args:
        model_id: ``"offline"``, ``"openai:<name>"``, ``"anthropic:<name>"``,
            ``"gemini:<name>"``; or an ``AsyncModel`` (returned as is).
        **options: ``api_key``, ``base_url``, ``timeout``, ``max_retries``, ``http_client``,
            ``limits`` (provider options); ``stream`` (default ``True``), ``callbacks``;
            anything else is a default generation option (``temperature``, ...).

    Raises:
        UnknownModelError: no provider has that prefix.
        MissingAPIKeyError: a remote provider has no key; the message names the variable.
    """
    if isinstance(model_id, AsyncModel):
        if options:
            raise TypeError("options cannot be given with a model instance")
        return model_id
    cls, name = provider_class(model_id)
    provider_options = {k: options.pop(k) for k in _PROVIDER_OPTIONS if k in options}
    stream = options.pop("stream", True)
    callbacks = options.pop("callbacks", ())
    provider = cls(name, **provider_options)
    return AsyncModel(
        provider, model_id=f"{cls.name}:{name}", stream=stream, callbacks=callbacks, **options
    )


_PROVIDER_OPTIONS = ("api_key", "base_url", "timeout", "max_retries", "http_client", "limits")
