"""Arguments of get_async_model, prompt and chain are checked at the call (issue 10: 12, 18)."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator
from typing import Any

import pytest

import agentrt
from agentrt import AsyncModel, Message, UnknownModelError, UsageError, get_async_model, get_model
from agentrt.messages import FinishEvent, StreamEvent, TextDelta, TurnRequest
from agentrt.providers.base import Provider


class Recording(Provider):
    """Answers "ok" and keeps every request it was given."""

    name = "recording"
    generation_options = frozenset({"temperature", "max_tokens", "top_p", "stop", "seed"})

    def __init__(self) -> None:
        super().__init__("rec")
        self.requests: list[TurnRequest] = []

    async def turn(self, request: TurnRequest, *, stream: bool) -> AsyncIterator[StreamEvent]:
        self.requests.append(request)
        yield TextDelta("ok")
        yield FinishEvent("stop", "stop")


def test_entry_points_have_explicit_keyword_parameters() -> None:
    for fn, names in [
        (get_async_model, {"api_key", "base_url", "timeout", "max_retries", "retry", "stream"}),
        (AsyncModel.chain, {"max_turns", "tools", "tool_errors", "name", "extra_body"}),
        (AsyncModel.prompt, {"system", "tools", "temperature", "extra_headers"}),
        (agentrt.Model.chain, {"max_turns", "tools", "tool_errors", "name", "extra_body"}),
        (get_model, {"api_key", "base_url", "timeout", "max_retries", "retry", "stream"}),
    ]:
        parameters = inspect.signature(fn).parameters
        assert names <= set(parameters), fn


def test_sync_signatures_match_the_async_ones() -> None:
    for sync_fn, async_fn in [
        (agentrt.Model.chain, AsyncModel.chain),
        (agentrt.Model.prompt, AsyncModel.prompt),
        (get_model, get_async_model),
    ]:
        sync_params = list(inspect.signature(sync_fn).parameters)
        async_params = list(inspect.signature(async_fn).parameters)
        assert sync_params == async_params


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        (lambda: get_async_model("offline", temprature=0.1), "did you mean 'temperature'"),
        (lambda: get_async_model("offline", max_retires=0), "did you mean 'max_retries'"),
        (lambda: get_async_model("offline").chain("x", max_turnz=3), "did you mean 'max_turns'"),
        (lambda: get_async_model("offline").chain("x", temprature=1), "did you mean 'temperature'"),
        (lambda: get_async_model("offline").prompt("x", sytem="s"), "did you mean 'system'"),
        (
            lambda: get_async_model("offline").chain("x", max_retries=0),
            "max_retries= is a parameter of get_async_model(), not of chain()",
        ),
        (
            lambda: get_async_model("openai:gpt-x", api_key="k", top_k=3),
            "the openai provider does not accept top_k=",
        ),
        (
            lambda: get_async_model("anthropic:c", api_key="k", frequency_penalty=1),
            "the anthropic provider does not accept frequency_penalty=",
        ),
        (lambda: get_async_model("offline", unheard_of=1), "extra_body"),
    ],
)
def test_unknown_options_are_refused_with_a_suggestion(call: Any, expected: str) -> None:
    with pytest.raises(UsageError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        call()


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        (lambda m: get_async_model("offline", timeout="10"), "timeout= takes seconds"),
        (lambda m: get_async_model("offline", timeout=-1), "timeout= must be positive"),
        (lambda m: get_async_model("offline", max_retries="2"), "max_retries= takes an integer"),
        (lambda m: get_async_model("offline", max_retries=-1), "max_retries= must be at least 0"),
        (lambda m: get_async_model("offline", stream="yes"), "stream= takes True or False"),
        (lambda m: get_async_model("offline", base_url=8080), "base_url= takes a string"),
        (lambda m: get_async_model("offline", callbacks=[object()]), "CallbackHandler"),
        (lambda m: get_async_model("offline", temperature="hot"), "temperature= takes a number"),
        (lambda m: get_async_model("offline", max_tokens=0), "max_tokens= must be at least 1"),
        (lambda m: m.chain("x", max_turns=None), "max_turns= takes an integer"),
        (lambda m: m.chain("x", max_turns=0), "max_turns= must be at least 1"),
        (lambda m: m.chain("x", max_tool_output=-5), "max_tool_output= must be at least 1"),
        (lambda m: m.chain("x", system=42), "system= takes a string"),
        (lambda m: m.chain("x", on_chunk="print"), "on_chunk= takes a function"),
        (lambda m: m.chain("x", before_call="no"), "before_call= takes a function"),
        (lambda m: m.chain("x", limiter=5), "limiter= takes an anyio.CapacityLimiter"),
        (lambda m: m.chain("x", tool_errors="ignore"), 'tool_errors= takes "model" or "raise"'),
        (lambda m: m.chain("x", tools="add"), "tools= takes a list of tools"),
        (lambda m: m.chain("x", name=3), "name= takes a string"),
        (lambda m: m.chain("x", stop=[1]), "stop= takes a string or a list of strings"),
        (lambda m: m.chain("x", extra_body=[1]), "extra_body= takes a dict"),
        (lambda m: m.chain("x", extra_headers={"a": 1}), "extra_headers= takes a dict of str"),
        (lambda m: m.prompt("x", on_chunk="print"), "on_chunk= takes a function"),
        (lambda m: m.prompt("x", callbacks=object()), "callbacks= takes a list"),
    ],
)
def test_wrong_types_fail_at_the_call(call: Any, expected: str) -> None:
    model = get_async_model("offline")
    with pytest.raises(UsageError, match=expected):
        call(model)


@pytest.mark.anyio
async def test_options_and_vendor_fields_reach_the_request() -> None:
    provider = Recording()
    model = AsyncModel(provider, temperature=0.5, extra_body={"a": 1, "b": 1})
    chain = model.chain(
        "hi",
        seed=7,
        max_tokens=20,
        extra_body={"b": 2},
        extra_headers={"X-Trace": "1"},
    )
    assert await chain.text() == "ok"
    (request,) = provider.requests
    assert request.options == {
        "temperature": 0.5,
        "seed": 7,
        "max_tokens": 20,
        "extra_body": {"a": 1, "b": 2},
        "extra_headers": {"X-Trace": "1"},
    }
    await model.prompt("hi", extra_body={}).text()
    assert provider.requests[-1].options == {"temperature": 0.5, "extra_body": {"a": 1, "b": 1}}


def test_a_provider_refuses_an_option_it_does_not_accept() -> None:
    model = AsyncModel(Recording())
    with pytest.raises(UsageError, match="the recording provider does not accept top_k="):
        model.chain("hi", top_k=3)
    with pytest.raises(UsageError, match="did you mean 'top_p'"):
        model.chain("hi", top_q=3)


def test_offline_takes_any_option_a_remote_provider_takes() -> None:
    model = get_async_model("offline", seed=1, top_k=2, reasoning_effort="low")
    assert model.options == {"seed": 1, "top_k": 2, "reasoning_effort": "low"}


@pytest.mark.parametrize(
    ("model_id", "suggestion"),
    [
        ("gpt-4o", "openai:gpt-4o"),
        ("OpenAI:gpt-4o", "openai:gpt-4o"),
        ("claude-sonnet-4-5", "anthropic:claude-sonnet-4-5"),
        ("gemini-2.5-flash", "gemini:gemini-2.5-flash"),
        ("opnai:gpt-4o", "openai:gpt-4o"),
        ("ofline", "offline"),
    ],
)
def test_unknown_model_ids_get_the_closest_valid_id(model_id: str, suggestion: str) -> None:
    with pytest.raises(UnknownModelError, match=f"did you mean '{suggestion}'"):
        get_async_model(model_id)


# --- prompts (point 18) ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("", "the prompt is empty"),
        ("   \n", "the prompt is empty"),
        ([], "non-empty list"),
        (["hello"], r"prompt\[0\] is 'hello'"),
        ([{"role": "human", "content": "hi"}], r"prompt\[0\] has role 'human'"),
        ([{"content": "hi"}], r"prompt\[0\] has role None"),
        ([{"role": "user", "content": 3}], r"prompt\[0\] is not a valid message: content"),
        (42, "non-empty string"),
    ],
)
def test_bad_prompts_are_usage_errors(prompt: Any, expected: str) -> None:
    model = get_async_model("offline")
    for call in (model.chain, model.prompt, model.conversation().chain):
        with pytest.raises(UsageError, match=expected):
            call(prompt)


@pytest.mark.anyio
async def test_a_list_prompt_of_messages_and_dicts_works() -> None:
    provider = Recording()
    prompt = [Message(role="user", content="a"), {"role": "assistant", "content": "b"}]
    await AsyncModel(provider).chain([*prompt, {"role": "user", "content": "c"}]).text()
    assert [m.content for m in provider.requests[0].messages] == ["a", "b", "c"]


def test_arguments_are_checked_before_the_provider_is_made() -> None:
    # A wrong type fails even though no key is set: the check comes first, at the call.
    with pytest.raises(UsageError, match="timeout="):
        get_async_model("openai:gpt-x", timeout="10")


def test_a_model_instance_takes_no_options() -> None:
    model = AsyncModel(Recording())
    assert get_async_model(model) is model
    for options in ({"timeout": 5}, {"api_key": "k"}, {"temperature": 0.2}, {"stream": False}):
        with pytest.raises(UsageError, match="cannot be given with a model instance"):
            get_async_model(model, **options)
