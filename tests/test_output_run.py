"""The output contract of a chain as plain decisions (``agentrt.output.OutputRun``)."""

from __future__ import annotations

import json

import pytest
from pydantic import BaseModel

from agentrt.errors import OutputAttempt, OutputRefusedError, OutputValidationError, UsageError
from agentrt.messages import ToolCall, ToolSpec
from agentrt.output import OUTPUT_TOOL_NAME, Continue, Done, OutputRun, Retry


class City(BaseModel):
    name: str
    population: int


ADD = ToolSpec("add", "Add.", {"type": "object", "properties": {}})


def _call(name: str, raw: str, id: str = "c1") -> ToolCall:
    try:
        arguments = json.loads(raw)
    except ValueError:
        arguments = None
    return ToolCall(id=id, name=name, arguments=arguments, raw_arguments=raw)


def test_native_valid_answer_is_done() -> None:
    run = OutputRun(City, provider="openai")
    assert run.mode == "native"
    assert run.system("Be brief.") == "Be brief."
    assert run.tools([ADD]) == [ADD]
    verdict = run.judge(
        text='{"name": "Oslo", "population": 700000}', calls=[], finish_reason="stop"
    )
    assert isinstance(verdict, Done)
    assert verdict.value == City(name="Oslo", population=700000)
    assert run.attempts == []


def test_tool_calls_in_native_mode_run_as_usual() -> None:
    run = OutputRun(City, provider="openai", tool_names=["add"])
    assert isinstance(
        run.judge(text="", calls=[_call("add", "{}")], finish_reason="tool_calls"), Continue
    )


def test_invalid_answers_retry_then_exhaust_with_every_attempt() -> None:
    run = OutputRun(City, "native", 2, provider="openai")
    answers = ["not json", '{"name": "Oslo"}', '{"name": 1, "population": "many"}']
    for raw in answers[:2]:
        verdict = run.judge(text=raw, calls=[], finish_reason="stop")
        assert isinstance(verdict, Retry)
        [message] = verdict.messages
        assert message.role == "user"
        assert message.content.startswith("Your answer did not validate:")
        assert verdict.attempt == run.attempts[-1]
    with pytest.raises(OutputValidationError) as info:
        run.judge(text=answers[2], calls=[], finish_reason="stop")
    attempts = info.value.attempts
    assert [a.raw for a in attempts] == answers
    assert "not valid JSON" in attempts[0].error
    assert "population: Field required" in attempts[1].error
    assert "name: Input should be a valid string" in attempts[2].error
    assert "in 3 attempts" in str(info.value)


def test_zero_retries_fails_on_the_first_invalid_answer() -> None:
    run = OutputRun(City, retries=0, provider="openai")
    with pytest.raises(OutputValidationError) as info:
        run.judge(text="{}", calls=[], finish_reason="stop")
    assert len(info.value.attempts) == 1


def test_truncation_says_so() -> None:
    run = OutputRun(City, provider="openai")
    verdict = run.judge(text='{"name": "Os', calls=[], finish_reason="length")
    assert isinstance(verdict, Retry)
    assert "cut off by the token limit" in verdict.attempt.error


def test_refusal_raises_with_the_text() -> None:
    run = OutputRun(City, provider="openai")
    with pytest.raises(OutputRefusedError) as info:
        run.judge(text="", calls=[], finish_reason="stop", refusal="I can't do that.")
    assert info.value.text == "I can't do that."
    assert info.value.provider == "openai"


def test_tool_mode_forces_the_final_tool_when_alone() -> None:
    run = OutputRun(City, "tool", provider="openai")
    assert run.request.tool_choice == OUTPUT_TOOL_NAME
    [tool] = run.tools([])
    assert tool.name == OUTPUT_TOOL_NAME
    assert tool.parameters["additionalProperties"] is False  # OpenAI's strict dialect
    verdict = run.judge(
        text="",
        calls=[_call(OUTPUT_TOOL_NAME, '{"name": "A", "population": 1}')],
        finish_reason="tool_calls",
    )
    assert isinstance(verdict, Done)
    assert verdict.value == City(name="A", population=1)
    [result] = verdict.results
    assert (result.tool_call_id, result.is_error) == ("c1", False)


def test_tool_mode_beside_other_tools_requires_a_tool_call() -> None:
    run = OutputRun(City, "tool", provider="anthropic", tool_names=["add"])
    assert run.request.tool_choice == "required"
    assert [t.name for t in run.tools([ADD])] == ["add", OUTPUT_TOOL_NAME]
    assert isinstance(
        run.judge(text="", calls=[_call("add", "{}")], finish_reason="tool_calls"), Continue
    )
    # the final tool called beside another: the other is not run, the answer is judged
    calls = [_call("add", "{}", "a"), _call(OUTPUT_TOOL_NAME, '{"name": 3}', "b")]
    verdict = run.judge(text="", calls=calls, finish_reason="tool_calls")
    assert isinstance(verdict, Retry)
    assert [r.tool_call_id for r in verdict.results] == ["a", "b"]
    assert all(r.is_error for r in verdict.results)
    assert verdict.results[0].content.startswith("Not run:")
    assert "The arguments of final_result did not validate" in verdict.results[1].content
    assert verdict.messages == []


def test_tool_mode_text_answer_is_an_attempt() -> None:
    run = OutputRun(City, "tool", 0, provider="gemini")
    with pytest.raises(OutputValidationError, match="answered in text"):
        run.judge(text="Oslo, 700k", calls=[], finish_reason="stop")


def test_prompted_mode_puts_the_schema_in_the_system_prompt() -> None:
    run = OutputRun(list[City], "prompted", provider="anthropic")
    system = run.system("You are terse.")
    assert system is not None and system.startswith("You are terse.")
    assert '"population"' in system
    verdict = run.judge(
        text='Here:\n```json\n[{"name": "A", "population": 2}]\n```', calls=[], finish_reason="stop"
    )
    assert isinstance(verdict, Done) and verdict.value == [City(name="A", population=2)]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"retries": -1}, "output_retries=-1 must be an integer >= 0"),
        ({"retries": True}, "output_retries=True"),
        ({"mode": "tools"}, "did you mean 'tool'"),
        ({"tool_choice": "ad", "tool_names": ["add"]}, "did you mean 'add'"),
        ({"mode": "tool", "tool_names": [OUTPUT_TOOL_NAME]}, "rename the tool"),
    ],
)
def test_misuse_is_refused_at_creation(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        OutputRun(City, provider="openai", **kwargs)  # type: ignore[arg-type]


def test_tool_choice_may_name_the_final_tool_in_tool_mode() -> None:
    run = OutputRun(
        City, "tool", provider="openai", tool_names=["add"], tool_choice=OUTPUT_TOOL_NAME
    )
    assert run.request.tool_choice == "required"  # the mode's; the caller's goes on the request
    with pytest.raises(UsageError, match="could not call the final-result tool"):
        OutputRun(City, "tool", provider="openai", tool_choice="none")


def test_partial_output_unwraps_and_grows() -> None:
    run = OutputRun(list[int], provider="openai")
    partial = run.partial()
    seen = [partial.feed(piece) for piece in ['{"result": [1', ", 2", ", 3, 4, 5, 6, 7, 8]}"]]
    assert seen == [None, [1, 2], [1, 2, 3, 4, 5, 6, 7, 8]]  # parsed once 16 characters came
    assert partial.final() == [1, 2, 3, 4, 5, 6, 7, 8]
    prompted = OutputRun(City, "prompted", provider="openai").partial()
    assert prompted.feed('```json\n{"name": "Os') in ({"name": "Os"}, {})
    assert prompted.feed('lo", "population": 3}') == {"name": "Oslo", "population": 3}
    small = OutputRun(City, provider="openai").partial()
    assert small.feed('{"a"') is None
    assert small.final() == {"a": None} or small.final() == {}


def test_partial_parsing_stays_linear_for_long_answers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # One delta per character of a 200 kB answer: the parses read about 5x its length in
    # all (a quarter's growth between parses), not its square.
    import agentrt.output._run as run_module

    calls: list[int] = []
    real = run_module.partial_json

    def counting(text: str) -> object:
        calls.append(len(text))
        return real(text)

    monkeypatch.setattr(run_module, "partial_json", counting)
    answer = json.dumps({"result": list(range(40_000))})
    partial = OutputRun(list[int], provider="openai").partial()
    for char in answer:
        partial.feed(char)
    assert partial.final() == list(range(40_000))
    assert sum(calls) < 6 * len(answer)
    assert len(calls) < 60


def test_attempt_is_a_named_tuple() -> None:
    attempt = OutputAttempt("raw", "error")
    assert attempt.raw == "raw" and attempt.error == "error"
