"""``AsyncModel``, ``AsyncConversation`` and ``get_async_model``: the async entry points.

Every argument is checked here, at the call, so that a typo or a wrong type fails with a
:class:`~agentrt.errors.UsageError` naming it, never deep in a chain or the transport.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from typing import Any, Literal

import anyio

from . import _options as opt
from ._chain import (
    DEFAULT_MAX_TOOL_OUTPUT,
    AsyncChain,
    PromptType,
    committed_messages,
    prompt_messages,
    tool_messages,
)
from ._execute import ToolRunner
from ._response import AsyncResponse
from .callbacks import CallbackHandler, Hooks
from .errors import UsageError
from .messages import Message, StreamChunk, ToolResult, TurnRequest
from .output import OutputMode, plan_output
from .providers import provider_class
from .providers.base import Provider
from .tools import Tool, collect_tools

__all__ = ["AsyncConversation", "AsyncModel", "get_async_model"]

ToolErrors = Literal["model", "raise"]

#: The explicit parameters of ``chain()`` and their defaults.
CHAIN_SETTINGS: dict[str, Any] = {
    "system": None,
    "tools": (),
    "max_turns": 10,
    "before_call": None,
    "after_call": None,
    "on_chunk": None,
    "callbacks": (),
    "limiter": None,
    "stream": None,
    "max_tool_output": DEFAULT_MAX_TOOL_OUTPUT,
    "tool_errors": "model",
    "name": None,
    "output_type": None,
    "output_mode": "auto",
    "output_retries": 2,
    "tool_choice": None,
    "parallel_tool_calls": None,
    "temperature": None,
    "max_tokens": None,
    "top_p": None,
    "stop": None,
    "extra_body": None,
    "extra_headers": None,
}
NAMED_GENERATION = ("temperature", "max_tokens", "top_p", "stop")


def _handlers(callbacks: Any, where: str) -> tuple[CallbackHandler, ...]:
    if callbacks == ():  # the default: no handler (and no ABC check, the costly part)
        return ()
    if isinstance(callbacks, (str, bytes, CallbackHandler)) or not isinstance(callbacks, Iterable):
        raise UsageError(
            f"{where}: callbacks= takes a list of CallbackHandler instances, got {callbacks!r}"
        )
    handlers = tuple(callbacks)
    for handler in handlers:
        if not isinstance(handler, CallbackHandler):
            raise UsageError(
                f"{where}: callbacks=[...] takes CallbackHandler instances, got {handler!r}; "
                "subclass agentrt.CallbackHandler and override its hooks"
            )
    return handlers


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
        opt.check_bool("stream", stream, "AsyncModel()")
        self.provider = provider
        self.model_id = model_id or f"{provider.name}:{provider.model_name}"
        self.stream = stream
        self.callbacks = _handlers(callbacks, "AsyncModel()")
        body, headers = options.pop("extra_body", None), options.pop("extra_headers", None)
        extras = opt.merge_extras({}, body, headers, "AsyncModel()")
        #: Default generation options for every call (temperature, max_tokens, ...).
        self.options = {
            **opt.generation_options(type(provider), "get_async_model()", options),
            **extras,
        }

    def collect_tools(self, tools: Iterable[Any]) -> dict[str, Tool]:
        """Normalise ``tools=[...]`` for this model (hook for subclasses)."""
        return collect_tools(tools)

    def _call_options(
        self,
        where: str,
        generation: dict[str, Any],
        extra_body: Any,
        extra_headers: Any,
        **named: Any,
    ) -> dict[str, Any]:
        if not generation and extra_body is None and extra_headers is None:
            for value in named.values():
                if value is not None:
                    break
            else:  # the usual call: no option set here
                return dict(self.options)
        options = opt.generation_options(type(self.provider), where, generation, **named)
        return {
            **self.options,
            **options,
            **opt.merge_extras(self.options, extra_body, extra_headers, where),
        }

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
        output_type: Any = None,
        output_mode: OutputMode = "auto",
        tool_choice: str | None = None,
        parallel_tool_calls: bool | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        top_p: float | None = None,
        stop: str | list[str] | None = None,
        extra_body: dict[str, Any] | None = None,
        extra_headers: dict[str, str] | None = None,
        **generation: Any,
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
            output_type: the type of the answer (a pydantic model, dataclass, TypedDict,
                ``list[...]``, primitive, ``Literal``, ``Enum``, union of models, or a JSON
                Schema dict): ``await response.output()`` returns it validated.
            output_mode: ``"auto"``, ``"native"``, ``"tool"`` or ``"prompted"``.
            tool_choice: ``"auto"``, ``"required"``, ``"none"`` or a tool's name.
            parallel_tool_calls: whether the model may ask for several calls in one turn.
            temperature: sampling temperature.
            max_tokens: the most tokens the answer may have.
            top_p: nucleus sampling.
            stop: a stop sequence or a list of them.
            extra_body: vendor fields merged into the request body as they are.
            extra_headers: extra HTTP headers for the request.
            **generation: other generation options the provider accepts (``seed``,
                ``top_k``, ...); an unknown one raises ``UsageError``.

        Returns:
            A lazy response: iterate it or ``await response.text()``.

        Raises:
            UsageError: an argument of the wrong type, or an unknown option.
        """
        where = "prompt()"
        opt.check_optional_str("system", system, where)
        opt.check_callable("on_chunk", on_chunk, where)
        opt.check_bool("stream", stream, where, optional=True)
        handlers = _handlers(callbacks, where)
        options = self._call_options(
            where,
            generation,
            extra_body,
            extra_headers,
            temperature=temperature,
            max_tokens=max_tokens,
            top_p=top_p,
            stop=stop,
        )
        found = self.collect_tools(opt.tools_list(tools, where))
        specs = [t.spec for t in found.values()]
        messages = [*(history or ()), *prompt_messages(prompt)]
        output = plan_output(
            output_type,
            output_mode,
            0,  # one turn: no retries
            provider=self.provider.name,
            tool_names=list(found),
            tool_choice=tool_choice,
            parallel_tool_calls=parallel_tool_calls,
            where=where,
        )
        if output is not None:
            system, specs = output.system(system), output.tools(specs)
        request = TurnRequest(
            messages,
            system,
            specs,
            options,
            output=output.request if output is not None else None,
            tool_choice=tool_choice,
            parallel_tool_calls=parallel_tool_calls,
        )
        return AsyncResponse(
            self.provider,
            request,
            model=self.model_id,
            stream=self.stream if stream is None else stream,
            hooks=Hooks.combine(self.callbacks, handlers, on_chunk=on_chunk),
            output=output,
        )

    def chain(
        self,
        prompt: PromptType,
        *,
        system: str | None = None,
        tools: Iterable[Any] = (),
        max_turns: int = 10,
        before_call: Callable[..., Any] | None = None,
        after_call: Callable[..., Any] | None = None,
        on_chunk: Callable[[StreamChunk], Any] | None = None,
        callbacks: Iterable[CallbackHandler] = (),
        limiter: anyio.CapacityLimiter | None = None,
        stream: bool | None = None,
        max_tool_output: int | None = DEFAULT_MAX_TOOL_OUTPUT,
        tool_errors: ToolErrors = "model",
        name: str | None = None,
        output_type: Any = None,
        output_mode: OutputMode = "auto",
        output_retries: int = 2,
        tool_choice: str | None = None,
        parallel_tool_calls: bool | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        top_p: float | None = None,
        stop: str | list[str] | None = None,
        extra_body: dict[str, Any] | None = None,
        extra_headers: dict[str, str] | None = None,
        **generation: Any,
    ) -> AsyncChain:
        """Run turns until the model answers without tool calls.

        Args:
            prompt: a string, or a list of messages to start from.
            system: a system prompt.
            tools: tools (``@tool`` functions, plain functions, ``Toolbox`` objects).
            max_turns: the most model calls; a last turn that still asks for tools does
                not run them and the chain raises ``ChainLimitError``.
            before_call: ``before_call(tool, call)``, before each tool call; raise
                ``ToolError`` to refuse the call (the model reads the message) or
                ``CancelChain`` to end the chain.
            after_call: ``after_call(tool, call, result)``, after each tool call.
            on_chunk: called with every ``StreamChunk`` as it arrives.
            callbacks: ``CallbackHandler`` instances for this chain.
            limiter: an ``anyio.CapacityLimiter`` for the threads of sync tools.
            stream: override the model's ``stream`` setting.
            max_tool_output: characters of a tool result sent to the model (``None``: all).
            tool_errors: ``"model"`` (a tool's exception becomes an error result the model
                reads) or ``"raise"`` (it is raised out of the chain).
            name: a name for the chain (``chain.name``; in logs and traces).
            output_type: the type of the final answer (see :meth:`prompt`): ``await
                chain.output()`` returns it validated.
            output_mode: ``"auto"``, ``"native"``, ``"tool"`` or ``"prompted"``.
            output_retries: how many times an answer that fails validation is sent back
                with the error (each retry is a turn); then ``OutputValidationError``.
            tool_choice: ``"auto"``, ``"required"``, ``"none"`` or a tool's name.
            parallel_tool_calls: whether the model may ask for several calls in one turn.
            temperature: sampling temperature.
            max_tokens: the most tokens of each answer.
            top_p: nucleus sampling.
            stop: a stop sequence or a list of them.
            extra_body: vendor fields merged into each request body as they are.
            extra_headers: extra HTTP headers for each request.
            **generation: other generation options the provider accepts; an unknown one
                raises ``UsageError`` with the closest known name.

        Returns:
            A lazy chain: iterate it for every turn's text or ``await chain.text()`` for
            the final answer.

        Raises:
            UsageError: an argument of the wrong type, or an unknown option.
        """
        settings = {k: v for k, v in locals().items() if k in CHAIN_SETTINGS}
        return self._chain(prompt, settings, generation)

    def _chain(
        self,
        prompt: PromptType,
        settings: dict[str, Any],
        generation: dict[str, Any],
        *,
        history: list[Message] | None = None,
        conversation_id: str | None = None,
        prefer_sync: bool = False,
    ) -> AsyncChain:
        """Build a chain from checked ``settings`` (every key of ``CHAIN_SETTINGS``)."""
        where = "chain()"
        s = settings
        opt.check_optional_str("system", s["system"], where)
        opt.check_int("max_turns", s["max_turns"], where, minimum=1)
        # before_call, after_call, limiter and tool_errors are checked by the ToolRunner.
        opt.check_callable("on_chunk", s["on_chunk"], where)
        opt.check_bool("stream", s["stream"], where, optional=True)
        opt.check_int("max_tool_output", s["max_tool_output"], where, minimum=1, optional=True)
        opt.check_optional_str("name", s["name"], where)
        limiter = s["limiter"]
        handlers = _handlers(s["callbacks"], where)
        named = {k: s[k] for k in NAMED_GENERATION}
        options = self._call_options(
            where, generation, s["extra_body"], s["extra_headers"], **named
        )
        messages = prompt_messages(prompt)
        sources = tuple(opt.tools_list(s["tools"], where))
        found = self.collect_tools(sources)
        # The runner checks and normalises the hooks itself (a wrong one fails here).
        runner = ToolRunner(
            found,
            prefer_sync=prefer_sync,
            limiter=limiter,
            before_call=s["before_call"],
            after_call=s["after_call"],
            max_result_chars=s["max_tool_output"],
            tool_errors=s["tool_errors"],
        )
        output = plan_output(
            s["output_type"],
            s["output_mode"],
            s["output_retries"],
            provider=self.provider.name,
            tool_names=list(found),
            tool_choice=s["tool_choice"],
            parallel_tool_calls=s["parallel_tool_calls"],
            where=where,
        )
        stream = s["stream"]
        return AsyncChain(
            self.provider,
            self.model_id,
            messages,
            tools=found,
            tool_sources=sources,
            collect_tools=self.collect_tools,
            hooks=Hooks.combine(self.callbacks, handlers, on_chunk=s["on_chunk"]),
            options=options,
            stream=self.stream if stream is None else stream,
            system=s["system"],
            max_turns=s["max_turns"],
            runner=runner,
            history=history,
            name=s["name"],
            conversation_id=conversation_id,
            output=output,
            tool_choice=s["tool_choice"],
            parallel_tool_calls=s["parallel_tool_calls"],
        )

    def conversation(self, *, system: str | None = None) -> AsyncConversation:
        """Start a conversation that keeps its history across calls."""
        opt.check_optional_str("system", system, "conversation()")
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
    """A history that successive ``prompt`` and ``chain`` calls continue.

    A call adds to the history only when it ended in a way that leaves the history valid
    and worth continuing (see :func:`agentrt._chain.committed_messages`): a completed
    call adds its prompt and its turns; a failed one adds nothing, so a retry sends the
    question once.

    Attributes:
        id: a unique id of this conversation (``chain.conversation_id``).
        messages: the history so far.
    """

    def __init__(self, model: AsyncModel, *, system: str | None = None) -> None:
        self.model = model
        self.system = system
        self.messages: list[Message] = []
        self.id = uuid.uuid4().hex

    def chain(self, prompt: PromptType, **kwargs: Any) -> AsyncChain:
        """Continue the conversation with a chain (arguments of :meth:`AsyncModel.chain`).

        When it ends, its prompt and turns are added to the history as
        :func:`~agentrt._chain.committed_messages` says: all of them when it completed,
        the completed turns when it was cancelled, nothing when it failed.
        """
        return self._chain(prompt, kwargs)

    def _chain(self, prompt: PromptType, kwargs: dict[str, Any], **internal: Any) -> AsyncChain:
        kwargs.setdefault("system", self.system)
        settings = {k: kwargs.pop(k, default) for k, default in CHAIN_SETTINGS.items()}
        chain = self.model._chain(
            prompt,
            settings,
            kwargs,
            history=self.messages,
            conversation_id=self.id,
            **internal,
        )
        messages = self.messages

        def keep(c: AsyncChain) -> None:
            messages.extend(committed_messages(c))

        chain.on_done(keep)
        return chain

    def prompt(self, prompt: PromptType, **kwargs: Any) -> AsyncResponse:
        """Continue the conversation with one turn (arguments of :meth:`AsyncModel.prompt`).

        A completed turn adds the prompt and the answer to the history; tool calls it
        asked for (``prompt()`` does not run tools) get a "not run" error result so the
        history stays valid. A failed or cancelled turn adds nothing.
        """
        kwargs.setdefault("system", self.system)
        new = prompt_messages(prompt)
        response = self.model.prompt(new, history=self.messages, **kwargs)
        messages = self.messages

        def keep(r: AsyncResponse) -> None:
            if r.status == "completed":
                message = r.message
                not_run = [
                    ToolResult(
                        tool_call_id=c.id,
                        name=c.name,
                        content="Error: not run: conversation.prompt() does not run tools",
                        is_error=True,
                    )
                    for c in message.tool_calls
                ]
                messages.extend([*new, message, *tool_messages(not_run)])

        response.on_done(keep)
        return response


def get_async_model(
    model_id: str | AsyncModel,
    *,
    api_key: str | None = None,
    base_url: str | None = None,
    timeout: Any = 60.0,
    max_retries: int = 2,
    retry: Any = None,
    http_client: Any = None,
    limits: Any = None,
    stream: bool = True,
    callbacks: Iterable[CallbackHandler] = (),
    temperature: float | None = None,
    max_tokens: int | None = None,
    top_p: float | None = None,
    stop: str | list[str] | None = None,
    extra_body: dict[str, Any] | None = None,
    extra_headers: dict[str, str] | None = None,
    **generation: Any,
) -> AsyncModel:
    """Return a model for ``"provider:name"``.

    Args:
        model_id: ``"offline"``, ``"openai:<name>"``, ``"anthropic:<name>"``,
            ``"gemini:<name>"``; or an ``AsyncModel`` (returned as is).
        api_key: the key; defaults to the provider's variable (``OPENAI_API_KEY``,
            ``ANTHROPIC_API_KEY``, ``GEMINI_API_KEY``).
        base_url: the API root; defaults to ``OPENAI_BASE_URL``, ``ANTHROPIC_BASE_URL``
            or ``GOOGLE_GEMINI_BASE_URL``, then the vendor's URL.
        timeout: seconds (connect, each read, each write, pool wait), an
            ``httpx.Timeout``, or ``None`` for none.
        max_retries: retries of a failed request (0: none).
        retry: an ``agentrt.RetryPolicy``; overrides ``max_retries``.
        http_client: an ``httpx.AsyncClient`` to use as is (agentrt never closes it).
        limits: ``httpx.Limits`` for the client agentrt builds.
        stream: use the streaming endpoint (the default).
        callbacks: ``CallbackHandler`` instances for every call of this model.
        temperature: default sampling temperature.
        max_tokens: default most tokens per answer (Anthropic requires one: 4096 when
            unset).
        top_p: default nucleus sampling.
        stop: default stop sequence(s).
        extra_body: vendor fields merged into every request body.
        extra_headers: extra HTTP headers for every request.
        **generation: other default generation options the provider accepts.

    Raises:
        UnknownModelError: no provider has that prefix (the closest id is suggested).
        MissingAPIKeyError: a remote provider has no key; the message names the variable.
        UsageError: an argument of the wrong type, or an unknown option.
    """
    where = "get_async_model()"
    named = {"temperature": temperature, "max_tokens": max_tokens, "top_p": top_p, "stop": stop}
    if isinstance(model_id, AsyncModel):
        given = [k for k, v in named.items() if v is not None] + list(generation)
        provider_given = {
            "api_key": api_key is not None,
            "base_url": base_url is not None,
            "timeout": timeout != 60.0,
            "max_retries": max_retries != 2,
            "retry": retry is not None,
            "http_client": http_client is not None,
            "limits": limits is not None,
            "stream": stream is not True,
            "callbacks": bool(tuple(callbacks)),
            "extra_body": extra_body is not None,
            "extra_headers": extra_headers is not None,
        }
        given += [k for k, set_ in provider_given.items() if set_]
        if given:
            raise UsageError(
                f"{where}: options ({', '.join(given)}) cannot be given with a model "
                "instance; set them on the instance or per call"
            )
        return model_id
    cls, name = provider_class(model_id)
    if (
        api_key is not None
        and not isinstance(api_key, str)
        and type(api_key).__name__ != ("SecretStr")
    ):
        raise UsageError(f"{where}: api_key= takes a string, got {type(api_key).__name__}")
    opt.check_optional_str("base_url", base_url, where)
    opt.check_timeout(timeout, where)
    opt.check_int("max_retries", max_retries, where, minimum=0)
    opt.check_bool("stream", stream, where)
    handlers = _handlers(callbacks, where)
    options = opt.generation_options(cls, where, generation, **named)
    options.update(opt.merge_extras({}, extra_body, extra_headers, where))
    provider_options: dict[str, Any] = {
        "api_key": api_key,
        "base_url": base_url,
        "timeout": timeout,
        "max_retries": max_retries,
        "http_client": http_client,
        "limits": limits,
    }
    if retry is not None:
        provider_options["retry"] = retry
    provider = cls(name, **provider_options)
    model = AsyncModel(provider, model_id=f"{cls.name}:{name}", stream=stream, callbacks=handlers)
    model.options = options
    return model
