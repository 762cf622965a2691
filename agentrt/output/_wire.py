"""The request pieces each output mode needs, per provider, as pure functions.

Nothing here does I/O or knows a codec's internals: each function returns a JSON fragment
that the provider's codec merges into its request body (:func:`merge_body`), or a value the
chain uses (the final-result :class:`~agentrt.messages.ToolSpec`, the prompted system text).

Modes (``output_mode=``):

- ``native``: the provider's own schema mode (OpenAI ``response_format`` ``json_schema``;
  Anthropic ``output_config.format``; Gemini ``responseMimeType`` + ``responseJsonSchema``).
- ``tool``: a final-result tool whose arguments are the output; forced when it is the only
  tool, and ``tool_choice`` "required" beside other tools (the model calls tools until it
  calls this one).
- ``prompted``: the schema in the system prompt, the JSON extracted from the answer text.
- ``auto``: :func:`resolve_mode` picks one of the three per provider and situation.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Collection, Mapping
from typing import Any, Literal, get_args

from ..errors import UsageError
from ..messages import ToolSpec
from ._spec import OutputSpec
from ._strict import dialect, logger

__all__ = [
    "OUTPUT_TOOL_NAME",
    "OutputMode",
    "ResolvedMode",
    "ToolChoice",
    "check_tool_choice",
    "merge_body",
    "native_body",
    "native_json",
    "output_tool",
    "output_tool_choice",
    "output_tool_wire",
    "prompted_system",
    "request_fragment",
    "resolve_mode",
    "tool_choice_body",
]

OutputMode = Literal["auto", "native", "tool", "prompted"]
ResolvedMode = Literal["native", "tool", "prompted"]
#: ``"auto"``, ``"required"``, ``"none"`` or the name of one offered tool.
ToolChoice = str

#: The final-result tool of ``tool`` mode.
OUTPUT_TOOL_NAME = "final_result"

_DIALECT_PROVIDERS = ("openai", "anthropic", "gemini")
_MODES: tuple[str, ...] = get_args(OutputMode)
_CHOICES = ("auto", "required", "none")


def resolve_mode(mode: str, provider: str, *, spec: OutputSpec, has_tools: bool) -> ResolvedMode:
    """Pick the mode a request uses.

    ``auto``: OpenAI → ``native`` (strict ``json_schema``, also beside tools); Anthropic →
    ``tool`` (tool use works on every Claude model and API version, ``output_config`` only
    on recent ones); Gemini → ``native`` without tools and ``tool`` with them (Gemini 2.x
    rejects function calling together with a response schema); any other provider (the
    offline model, ``FunctionModel``) → ``native``.

    An explicit ``native`` on Anthropic for a schema Anthropic cannot express (a free-form
    ``dict``) becomes ``tool``, with a warning on the ``agentrt.output`` logger.

    Raises:
        UsageError: ``mode`` is not one of the four.
    """
    if mode not in _MODES:
        raise UsageError(
            f"output_mode={mode!r} is not one of {', '.join(map(repr, _MODES))}"
            f"{_did_you_mean(mode, _MODES)}"
        )
    if mode == "auto":
        if provider == "anthropic":
            return "tool"
        if provider == "gemini" and has_tools:
            return "tool"
        return "native"
    if mode == "native" and provider == "anthropic" and not dialect(spec, "anthropic").strict:
        logger.warning(
            "output type %s cannot be expressed in Anthropic's output_config schema (%s): "
            "using output_mode='tool' instead",
            spec.name,
            dialect(spec, "anthropic").reason,
        )
        return "tool"
    return mode  # type: ignore[return-value]


def native_body(spec: OutputSpec, provider: str) -> dict[str, Any]:
    """The body fragment of ``native`` mode for ``provider``.

    Raises:
        ValueError: the provider has no native mode here.
    """
    if provider == "openai":
        d = dialect(spec, "openai")
        schema: dict[str, Any] = {"name": spec.name, "schema": d.schema, "strict": d.strict}
        if spec.description:
            schema["description"] = spec.description
        return {"response_format": {"type": "json_schema", "json_schema": schema}}
    if provider == "anthropic":
        d = dialect(spec, "anthropic")
        return {"output_config": {"format": {"type": "json_schema", "schema": d.schema}}}
    if provider == "gemini":
        d = dialect(spec, "gemini")
        return {
            "generationConfig": {
                "responseMimeType": "application/json",
                "responseJsonSchema": d.schema,
            }
        }
    raise ValueError(f"provider {provider!r} has no native schema mode")


def native_json(spec: OutputSpec, provider: str) -> str:
    """The JSON text of each top-level value of :func:`native_body`, encoded once per type.

    For OpenAI that is the ``response_format`` object: a codec can place the text in its
    body as it is, instead of encoding the schema again on every turn of every chain.
    """
    key = f"{provider}/native-json"
    text = spec.data.dialects.get(key)
    if text is None:
        (value,) = native_body(spec, provider).values()
        text = spec.data.dialects[key] = _dumps(value)
    return str(text)


_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def output_tool(spec: OutputSpec, provider: str | None = None) -> ToolSpec:
    """The final-result tool of ``tool`` mode, as a provider-neutral :class:`ToolSpec`.

    Its parameters are the provider's dialect of the object schema (non-strict forms for
    Anthropic and Gemini tools, whose codecs send plain tool schemas), else the object schema.
    """
    schema = spec.object_schema
    strict = False
    if provider in _DIALECT_PROVIDERS:
        converted = dialect(spec, provider)  # type: ignore[arg-type]
        schema = converted.schema
        # Only OpenAI's tool format takes a strict flag; the others send the schema plainly.
        strict = provider == "openai" and converted.strict
    description = (
        f"Call this tool to give your final answer: {spec.description} "
        "Its arguments are the answer; call it once, when you are done."
    )
    return ToolSpec(OUTPUT_TOOL_NAME, description, schema, strict=strict)


def output_tool_wire(spec: OutputSpec, provider: str) -> dict[str, Any]:
    """The final-result tool in ``provider``'s own tool format (strict where it can be).

    Raises:
        ValueError: unknown provider.
    """
    tool = output_tool(spec, provider)
    if provider == "openai":
        return {
            "type": "function",
            "function": {
                "name": tool.name,
                "description": tool.description,
                "parameters": tool.parameters,
                "strict": tool.strict,
            },
        }
    if provider == "anthropic":
        return {"name": tool.name, "description": tool.description, "input_schema": tool.parameters}
    if provider == "gemini":
        return {
            "name": tool.name,
            "description": tool.description,
            "parametersJsonSchema": tool.parameters,
        }
    raise ValueError(f"provider {provider!r} has no tool format here")


def output_tool_choice(other_tools: Collection[str]) -> ToolChoice:
    """Choose ``tool_choice`` for ``tool`` mode.

    The final-result tool is forced when it is alone; beside other tools some tool call is
    required (the model calls tools, then the final-result tool).
    """
    return "required" if other_tools else OUTPUT_TOOL_NAME


def prompted_system(spec: OutputSpec, system: str | None) -> str:
    """The system prompt of ``prompted`` mode: the caller's, then the schema."""
    schema = json.dumps(spec.schema, ensure_ascii=False, separators=(",", ":"))
    instruction = (
        "Answer with one JSON value that matches this JSON Schema, and nothing else (no prose; "
        f"a ```json fence is allowed):\n{schema}"
    )
    return f"{system}\n\n{instruction}" if system else instruction


def check_tool_choice(choice: Any, tool_names: Collection[str]) -> None:
    """Refuse a ``tool_choice`` that cannot work, at the call that passed it.

    Raises:
        UsageError: not a string, or the name of no offered tool.
    """
    if choice is None:
        return
    if not isinstance(choice, str):
        raise UsageError(
            f"tool_choice={choice!r} must be 'auto', 'required', 'none' or a tool's name"
        )
    if choice in _CHOICES:
        if choice == "required" and not tool_names:
            raise UsageError("tool_choice='required' needs tools: pass tools=[...]")
        return
    if choice not in tool_names:
        names = sorted(tool_names)
        offered = f"the tools offered are {', '.join(names)}" if names else "no tools are offered"
        raise UsageError(
            f"tool_choice={choice!r} is not 'auto', 'required', 'none' or the name of an offered "
            f"tool ({offered}){_did_you_mean(choice, [*_CHOICES, *names])}"
        )


def tool_choice_body(
    provider: str, choice: ToolChoice | None, parallel_tool_calls: bool | None
) -> dict[str, Any]:
    """The body fragment for ``tool_choice`` and ``parallel_tool_calls`` on ``provider``.

    OpenAI: ``tool_choice`` ("auto"/"required"/"none", or ``{"type": "function", ...}``)
    and ``parallel_tool_calls``. Anthropic: ``tool_choice`` ``{"type": "auto" | "any" |
    "none" | "tool"}`` with ``disable_parallel_tool_use``. Gemini: ``toolConfig.
    functionCallingConfig`` (``AUTO``/``ANY``/``NONE``, ``allowedFunctionNames``); Gemini
    has no switch for parallel calls, so ``parallel_tool_calls=False`` is refused.

    Raises:
        UsageError: ``parallel_tool_calls=False`` on Gemini, or a non-bool value.
        ValueError: unknown provider.
    """
    if parallel_tool_calls is not None and not isinstance(parallel_tool_calls, bool):
        raise UsageError(f"parallel_tool_calls={parallel_tool_calls!r} must be True or False")
    if choice is None and parallel_tool_calls is None:
        return {}
    if provider == "openai":
        body: dict[str, Any] = {}
        if choice is not None:
            body["tool_choice"] = (
                choice if choice in _CHOICES else {"type": "function", "function": {"name": choice}}
            )
        if parallel_tool_calls is not None:
            body["parallel_tool_calls"] = parallel_tool_calls
        return body
    if provider == "anthropic":
        kind = {"auto": "auto", "required": "any", "none": "none", None: "auto"}.get(choice, "tool")
        value: dict[str, Any] = {"type": kind}
        if kind == "tool":
            value["name"] = choice
        if parallel_tool_calls is not None and kind != "none":
            value["disable_parallel_tool_use"] = not parallel_tool_calls
        return {"tool_choice": value}
    if provider == "gemini":
        if parallel_tool_calls is False:
            raise UsageError(
                "parallel_tool_calls=False: Gemini has no switch for parallel function calls; "
                "leave it unset, or mark side-effecting tools @tool(sequential=True)"
            )
        if choice is None:
            return {}
        config: dict[str, Any] = {
            "mode": {"auto": "AUTO", "required": "ANY", "none": "NONE"}.get(choice, "ANY")
        }
        if choice not in _CHOICES:
            config["allowedFunctionNames"] = [choice]
        return {"toolConfig": {"functionCallingConfig": config}}
    raise ValueError(f"provider {provider!r} has no tool_choice format here")


def request_fragment(provider: str, request: Any) -> dict[str, Any]:
    """Everything a ``TurnRequest`` asks of ``provider``'s body beyond messages and tools.

    The native schema piece (``request.output`` in ``native`` mode), and ``tool_choice`` /
    ``parallel_tool_calls`` (the request's own, else the output mode's choice). Codecs merge
    it with :func:`merge_body` before ``extra_body``, so a caller's vendor fields still win.
    """
    output = request.output
    choice = request.tool_choice
    fragment: dict[str, Any] = {}
    if output is not None:
        if output.mode == "native":
            fragment = native_body(output.spec, provider)
        if choice is None:
            choice = output.tool_choice
    if choice is not None and not request.tools:
        choice = None  # nothing to choose from: providers reject a choice without tools
    pieces = tool_choice_body(provider, choice, request.parallel_tool_calls)
    return merge_body(fragment, pieces) if fragment else pieces


def merge_body(body: dict[str, Any], fragment: Mapping[str, Any]) -> dict[str, Any]:
    """Merge a fragment into a request body in place (nested objects key by key)."""
    for key, value in fragment.items():
        current = body.get(key)
        if isinstance(current, dict) and isinstance(value, Mapping):
            merge_body(current, value)
        else:
            body[key] = value
    return body


def _did_you_mean(word: str, options: Collection[str]) -> str:
    close = difflib.get_close_matches(str(word), list(options), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""
