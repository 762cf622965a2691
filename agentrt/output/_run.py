"""The output contract of one chain, as plain decisions: no I/O, no event loop.

An :class:`OutputRun` is made when a chain (or a prompt) with ``output_type=`` is created:
it checks the arguments at once and resolves the mode. It then says what each request
carries (:attr:`OutputRun.request`) and, after each turn, what the turn means
(:meth:`OutputRun.judge`): the validated value, a retry with the error sent back, or "not
an answer yet, run the tools". It raises :class:`~agentrt.OutputRefusedError` for a refusal
and :class:`~agentrt.OutputValidationError` once ``retries`` retries failed too.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import OutputAttempt, OutputRefusedError, OutputValidationError, UsageError
from ..messages import Message, ToolCall, ToolResult, ToolSpec
from ._extract import partial_json
from ._spec import WRAP_KEY, OutputInvalid, OutputSpec, output_spec
from ._validate import exhausted, retry_message, truncated_message, validate_answer
from ._wire import (
    OUTPUT_TOOL_NAME,
    ResolvedMode,
    check_tool_choice,
    output_tool,
    output_tool_choice,
    prompted_system,
    resolve_mode,
    tool_choice_body,
)

__all__ = [
    "Continue",
    "judge_prompt",
    "judge_turn",
    "plan_output",
    "refusal_of",
    "Done",
    "OutputRequest",
    "OutputRun",
    "PartialOutput",
    "Retry",
    "Verdict",
]


@dataclass(frozen=True)
class OutputRequest:
    """What a provider's codec needs to ask for the output (on ``TurnRequest.output``).

    Attributes:
        spec: the output spec (its schema and dialects).
        mode: the resolved mode.
        tool_choice: the mode's ``tool_choice`` (``tool`` mode: the final-result tool, or
            "required" beside other tools), sent when the request names none.
    """

    spec: OutputSpec
    mode: ResolvedMode
    tool_choice: str | None = None


@dataclass
class Done:
    """The turn gave a valid output."""

    value: Any
    #: Results for the turn's tool calls (``tool`` mode), so history stays valid.
    results: list[ToolResult] = field(default_factory=list)


@dataclass
class Retry:
    """The turn's output failed validation: send ``messages`` and ask again."""

    attempt: OutputAttempt
    #: Results for the turn's tool calls (``tool`` mode: the final-result call's error).
    results: list[ToolResult] = field(default_factory=list)
    #: A user message with the error (``native``/``prompted`` modes).
    messages: list[Message] = field(default_factory=list)


@dataclass
class Continue:
    """The turn called tools (and not the final-result tool): run them as usual."""


Verdict = Done | Retry | Continue


class OutputRun:
    """One chain's (or prompt's) output contract.

    Args:
        output_type: see :func:`~agentrt.output.output_spec`.
        mode: ``"auto"``, ``"native"``, ``"tool"`` or ``"prompted"``.
        retries: how many retries after an invalid answer (``output_retries=``).
        provider: the provider's name (``"openai"``, ``"offline"``, ...).
        tool_names: the names of the tools the chain offers.
        tool_choice: the caller's ``tool_choice=``, or ``None``.

    Raises:
        UsageError: a bad type, mode, retry count or ``tool_choice``; a tool named like the
            final-result tool in ``tool`` mode.
    """

    def __init__(
        self,
        output_type: Any,
        mode: str = "auto",
        retries: int = 2,
        *,
        provider: str,
        tool_names: Collection[str] = (),
        tool_choice: str | None = None,
    ) -> None:
        if type(retries) is not int or retries < 0:
            raise UsageError(f"output_retries={retries!r} must be an integer >= 0")
        self.spec = output_spec(output_type)
        self.provider = provider
        self.retries = retries
        self.mode: ResolvedMode = resolve_mode(
            mode, provider, spec=self.spec, has_tools=bool(tool_names)
        )
        names = list(tool_names)
        if self.mode == "tool":
            if OUTPUT_TOOL_NAME in names:
                raise UsageError(
                    f"a tool is named {OUTPUT_TOOL_NAME!r}, the name of the final-result tool "
                    "of output_mode='tool': rename the tool or pick another output_mode"
                )
            names.append(OUTPUT_TOOL_NAME)
        check_tool_choice(tool_choice, names)
        if self.mode == "tool" and tool_choice == "none":
            raise UsageError(
                "tool_choice='none' with output_mode='tool': the model could not call the "
                "final-result tool; use output_mode='native' or 'prompted'"
            )
        # The mode's own choice; a caller's tool_choice travels on the request and wins.
        mode_choice = output_tool_choice(tool_names) if self.mode == "tool" else None
        self.request = OutputRequest(self.spec, self.mode, mode_choice)
        self.attempts: list[OutputAttempt] = []

    # --- what each request carries ---------------------------------------------------------

    def system(self, system: str | None) -> str | None:
        """The system prompt to send (``prompted`` mode appends the schema)."""
        if self.mode == "prompted":
            return prompted_system(self.spec, system)
        return system

    def tools(self, specs: Sequence[ToolSpec]) -> list[ToolSpec]:
        """The tools to offer (``tool`` mode adds the final-result tool)."""
        if self.mode == "tool":
            return [*specs, output_tool(self.spec, self.provider)]
        return list(specs)

    # --- what a turn means -------------------------------------------------------------

    def judge(
        self,
        *,
        text: str,
        calls: Sequence[ToolCall],
        finish_reason: str | None,
        refusal: str | None = None,
    ) -> Verdict:
        """Decide what a finished turn means for the output.

        Args:
            text: the turn's text.
            calls: its tool calls.
            finish_reason: its normalised finish reason.
            refusal: the refusal text when the provider flagged a refusal, else ``None``.

        Raises:
            OutputRefusedError: the model refused.
            OutputValidationError: the answer failed and no retry is left.
        """
        if refusal is not None:
            raise OutputRefusedError(refusal or text, provider=self.provider)
        if self.mode == "tool":
            return self._judge_tool(text, calls, finish_reason)
        if calls:
            return Continue()
        return self._judge_text(text, finish_reason)

    def _judge_text(self, text: str, finish_reason: str | None) -> Verdict:
        try:
            value = validate_answer(self.spec, text, mode=self.mode, provider=self.provider)
        except OutputInvalid as exc:
            error = _error_text(exc, finish_reason, self.mode)
            attempt = self._failed(text, error)
            message = Message(role="user", content=retry_message(error, self.mode))
            return Retry(attempt, messages=[message])
        return Done(value)

    def _judge_tool(
        self, text: str, calls: Sequence[ToolCall], finish_reason: str | None
    ) -> Verdict:
        finals = [c for c in calls if c.name == OUTPUT_TOOL_NAME]
        if not finals:
            if calls:
                return Continue()
            error = (
                f"you answered in text; give the final answer by calling the {OUTPUT_TOOL_NAME} "
                "tool"
            )
            if finish_reason == "length":
                error = truncated_message(self.mode)
            attempt = self._failed(text, error)
            message = Message(role="user", content=retry_message(error, self.mode))
            return Retry(attempt, messages=[message])
        final = finals[0]
        others = [
            _result(c, f"Not run: {OUTPUT_TOOL_NAME} was called in the same turn; call other "
                    f"tools first and {OUTPUT_TOOL_NAME} alone, last.", error=True)
            for c in calls
            if c is not final
        ]  # fmt: skip
        try:
            value = validate_answer(
                self.spec, final.raw_arguments or "{}", mode="tool", provider=self.provider
            )
        except OutputInvalid as exc:
            error = _error_text(exc, finish_reason, self.mode)
            attempt = self._failed(final.raw_arguments, error)
            failed = _result(final, retry_message(error, self.mode), error=True)
            return Retry(attempt, results=_in_order(calls, [failed, *others]))
        done = _result(final, "Final result received.", error=False)
        return Done(value, results=_in_order(calls, [done, *others]))

    def _failed(self, raw: str, error: str) -> OutputAttempt:
        attempt = OutputAttempt(raw, error)
        self.attempts.append(attempt)
        if len(self.attempts) > self.retries:
            raise exhausted(self.spec, self.attempts)
        return attempt

    def partial(self) -> PartialOutput:
        """A tracker of the partial output of one streamed turn."""
        return PartialOutput(unwrap=self.spec.wrapped and self.mode != "prompted")


class PartialOutput:
    """The best-effort partial value of one turn while its JSON streams in.

    Feed it the turn's text deltas (``native``/``prompted``) or the final-result tool's
    argument deltas (``tool``); :attr:`value` is the partial JSON value (unwrapped from
    ``{"result": ...}`` in ``tool``/``native`` modes when the type is wrapped), or ``None``.

    Each parse reads the whole text so far, so the value is parsed again only once the
    text grew by a quarter (at least 16 characters) since the last parse, and by
    :meth:`final`: the parsing of a long answer stays linear in its length, whatever the
    number of deltas.
    """

    __slots__ = ("_buffer", "_parsed", "_size", "_unwrap", "value")

    def __init__(self, *, unwrap: bool = False) -> None:
        self._unwrap = unwrap
        self._buffer: list[str] = []
        self._size = 0  # characters received
        self._parsed = 0  # characters the value was parsed from
        self.value: Any = None

    def feed(self, delta: str) -> Any:
        """Add a delta and return the partial value so far."""
        if delta:
            self._buffer.append(delta)
            self._size += len(delta)
            if self._size - self._parsed >= max(16, self._parsed >> 2):
                self._parse()
        return self.value

    def final(self) -> Any:
        """The value parsed from everything received."""
        if self._size != self._parsed:
            self._parse()
        return self.value

    def _parse(self) -> None:
        text = "".join(self._buffer)
        self._buffer = [text]
        self._parsed = self._size
        value = partial_json(text)
        if self._unwrap and isinstance(value, dict):
            value = value.get(WRAP_KEY)
        self.value = value


def _error_text(exc: OutputInvalid, finish_reason: str | None, mode: ResolvedMode) -> str:
    if finish_reason == "length":
        return f"{truncated_message(mode)}: {exc}"
    return str(exc)


def _result(call: ToolCall, content: str, *, error: bool) -> ToolResult:
    return ToolResult(tool_call_id=call.id, name=call.name, content=content, is_error=error)


def _in_order(calls: Sequence[ToolCall], results: list[ToolResult]) -> list[ToolResult]:
    position = {c.id: i for i, c in enumerate(calls)}
    return sorted(results, key=lambda r: position.get(r.tool_call_id, 0))


def refusal_of(response: Any) -> str | None:
    """The refusal a finished turn reports, or ``None``.

    OpenAI sends a ``refusal`` field (kept by its codec as ``provider_data["refusal"]``);
    Anthropic ends the turn with ``stop_reason: "refusal"``.
    """
    data = response.provider_data or {}
    refusal = data.get("refusal")
    if isinstance(refusal, str) and refusal:
        return refusal
    if response.raw_finish_reason == "refusal":
        return str(response.text_so_far)
    return None


def judge_turn(run: OutputRun, response: Any) -> Verdict:
    """Judge a chain's finished turn (see :meth:`OutputRun.judge`).

    Raises:
        OutputRefusedError: the model refused.
        OutputValidationError: the answer failed and no retry is left.
    """
    return run.judge(
        text=response.text_so_far,
        calls=response._tool_calls,
        finish_reason=response.finish_reason,
        refusal=refusal_of(response),
    )


def judge_prompt(run: OutputRun, response: Any) -> tuple[str, Any]:
    """Judge the one turn of ``model.prompt(..., output_type=...)``.

    Returns:
        ``("value", value)`` or ``("error", exception)``; a prompt has no retries, and a
        turn that asks for tools instead of answering is an error too (``prompt()`` runs no
        tools).
    """
    calls = response.message.tool_calls
    try:
        verdict = run.judge(
            text=response.text_so_far,
            calls=calls,
            finish_reason=response.finish_reason,
            refusal=refusal_of(response),
        )
    except (OutputRefusedError, OutputValidationError) as exc:
        return ("error", exc)
    if isinstance(verdict, Done):
        return ("value", verdict.value)
    names = ", ".join(c.name for c in calls) or "none"
    attempt = OutputAttempt(
        response.text_so_far,
        f"the model asked for tool calls ({names}) instead of answering; prompt() runs no "
        "tools: use chain() to run them and get the output",
    )
    return ("error", exhausted(run.spec, [attempt]))


def plan_output(
    output_type: Any,
    output_mode: str,
    output_retries: int,
    *,
    provider: str,
    tool_names: Collection[str],
    tool_choice: Any,
    parallel_tool_calls: Any,
    where: str,
) -> OutputRun | None:
    """Check the output and tool-loop arguments of a ``prompt()``/``chain()`` call.

    Returns:
        The :class:`OutputRun`, or ``None`` without ``output_type``.

    Raises:
        UsageError: any of them is wrong; the message starts with ``where``.
    """
    if output_type is None and tool_choice is None and parallel_tool_calls is None:
        if output_mode == "auto":  # the usual call: nothing to check
            return None
    try:
        tool_choice_body(provider if provider in _WIRE else "openai", None, parallel_tool_calls)
        if output_type is None:
            if output_mode != "auto":
                raise UsageError(f"output_mode={output_mode!r} needs output_type=...")
            check_tool_choice(tool_choice, tool_names)
            return None
        return OutputRun(
            output_type,
            output_mode,
            output_retries,
            provider=provider,
            tool_names=tool_names,
            tool_choice=tool_choice,
        )
    except UsageError as exc:
        raise UsageError(f"{where}: {exc}") from None


_WIRE = ("openai", "anthropic", "gemini")
