"""Test doubles for users' own tests: a model whose turns come from a function.

Example::

    def script(messages, tools):
        if messages[-1].role == "user":
            return ModelTurn(tool_calls=[call("add", a=2, b=3)])
        return f"The sum is {messages[-1].content}"

    model = FunctionModel(script)
    assert await model.chain("add", tools=[add]).text() == "The sum is 5"
"""

from __future__ import annotations

import inspect
import itertools
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio.lowlevel

from ._model import AsyncModel
from .messages import (
    FinishEvent,
    FinishReason,
    Message,
    StreamEvent,
    TextDelta,
    ToolCallDelta,
    ToolSpec,
    TurnRequest,
    Usage,
    UsageEvent,
)
from .output import render_output
from .providers.base import Provider
from .providers.offline import split_words, usage_for

__all__ = ["FunctionModel", "ModelTurn", "ScriptedCall", "call"]


@dataclass
class ScriptedCall:
    """A tool call a ``FunctionModel`` turn makes; ``arguments`` is sent verbatim."""

    name: str
    arguments: str = "{}"
    id: str | None = None


def call(
    name: str, arguments: dict[str, Any] | str | None = None, /, *, id: str | None = None, **kw: Any
) -> ScriptedCall:
    """Describe a tool call: ``call("add", a=1, b=2)`` or ``call("add", '{"a": 1')``.

    A string is sent as the raw arguments exactly (use it to test malformed JSON).
    """
    if isinstance(arguments, str):
        raw = arguments
    else:
        raw = json.dumps({**(arguments or {}), **kw})
    return ScriptedCall(name, raw, id)


@dataclass
class ModelTurn:
    """What a ``FunctionModel`` function returns for one turn."""

    text: str = ""
    tool_calls: list[ScriptedCall] = field(default_factory=list)
    #: Reported usage; ``None`` reports none unless the model counts usage itself.
    usage: Usage | None = None
    finish_reason: FinishReason | None = None
    #: The answer to a request with ``output_type=``: a value (a model, a dict, ...),
    #: encoded as JSON the way the request's mode asks (text, or the final-result tool's
    #: arguments); or a ``str`` sent as the raw answer, to test invalid answers and retries.
    output: Any = None


TurnFunction = Callable[
    [list[Message], list[ToolSpec]],
    str | ModelTurn | Awaitable[str | ModelTurn],
]


class FunctionProvider(Provider):
    """The provider behind :class:`FunctionModel`."""

    name = "function"

    def __init__(self, fn: TurnFunction, model_name: str, *, count_usage: bool) -> None:
        super().__init__(model_name)
        self.fn = fn
        self.count_usage = count_usage
        self._ids = itertools.count()

    async def turn(self, request: TurnRequest, *, stream: bool) -> AsyncIterator[StreamEvent]:
        """Ask the function for the turn and stream it word by word."""
        result = self.fn(list(request.messages), list(request.tools))
        if (
            type(result) is not ModelTurn
            and type(result) is not str
            and inspect.isawaitable(result)
        ):
            result = await result
        spec = ModelTurn(text=result) if isinstance(result, str) else result
        if not isinstance(spec, ModelTurn):
            raise TypeError(
                f"FunctionModel's function must return a str or a ModelTurn, got {spec!r}"
            )
        if spec.output is not None:
            if request.output is None:
                raise TypeError(
                    "FunctionModel's function returned ModelTurn(output=...) for a request "
                    "without output_type=: return the text instead"
                )
            text, final = render_output(request.output, spec.output)
            calls = list(spec.tool_calls)
            if final is not None:
                calls.append(ScriptedCall(*final))
            spec = ModelTurn(
                text=spec.text + text, tool_calls=calls, usage=spec.usage,
                finish_reason=spec.finish_reason,
            )  # fmt: skip
        if spec.text:
            for piece in split_words(spec.text) if stream else [spec.text]:
                await anyio.lowlevel.checkpoint()
                yield TextDelta(piece)
        for index, scripted in enumerate(spec.tool_calls):
            call_id = scripted.id or f"fn_call_{next(self._ids)}"
            yield ToolCallDelta(index, call_id, scripted.name, scripted.arguments)
        usage = spec.usage
        if usage is None and self.count_usage:
            usage = usage_for(request, spec.text, [(c.name, c.arguments) for c in spec.tool_calls])
        if usage is not None:
            yield UsageEvent(usage)
        finish = spec.finish_reason or ("tool_calls" if spec.tool_calls else "stop")
        yield FinishEvent(finish, finish)


class FunctionModel(AsyncModel):
    """A model whose turns are produced by ``fn(messages, tools)``.

    ``fn`` may be sync or async and returns a string (the answer) or a :class:`ModelTurn`
    (text and/or tool calls). Text is streamed word by word. Use ``get_model(FunctionModel(
    fn))`` for the sync facade.

    Args:
        fn: produces each turn from the messages so far and the offered tools.
        name: the model name; the model id is ``"function:<name>"``.
        count_usage: report usage by the offline model's word-count rule when a turn
            gives none.
    """

    def __init__(
        self,
        fn: TurnFunction,
        *,
        name: str = "function",
        count_usage: bool = False,
        **options: Any,
    ) -> None:
        super().__init__(FunctionProvider(fn, name, count_usage=count_usage), **options)
