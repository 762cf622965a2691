"""Every agentrt exception survives pickle with its attributes (issue 10 point 20)."""

from __future__ import annotations

import inspect
import pickle
from typing import Any

import pytest

import agentrt.errors
import agentrt.toolbox  # defines ToolError subclasses
from agentrt import ChainLimitError, MissingAPIKeyError, get_async_model, tool
from agentrt.cli.exit_codes import CLIError, ExitCode
from agentrt.errors import AgentrtError
from agentrt.messages import ToolCall
from agentrt.testing import FunctionModel, ModelTurn, call

SAMPLES: dict[str, Any] = {
    "message": "something failed",
    "provider": "openai",
    "env_var": "OPENAI_API_KEY",
    "status": 503,
    "request_id": "req_123",
    "body": '{"error": "x"}',
    "responses": [],
    "call": ToolCall(id="c1", name="add", arguments={"a": 1}, raw_arguments='{"a": 1}'),
}


def every_error_class() -> list[type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    pending: list[type[BaseException]] = [AgentrtError]
    pending.extend(
        value
        for value in vars(agentrt.errors).values()
        if isinstance(value, type) and issubclass(value, BaseException)
    )
    while pending:
        cls = pending.pop()
        if cls.__module__.startswith("agentrt"):
            found[f"{cls.__module__}.{cls.__qualname__}"] = cls
        pending.extend(cls.__subclasses__())
    return [found[k] for k in sorted(found)]


def build(cls: type[BaseException]) -> BaseException:
    """An instance with every parameter of ``__init__`` given a sample value."""
    kwargs: dict[str, Any] = {}
    args: list[Any] = []
    for name, parameter in inspect.signature(cls.__init__).parameters.items():
        if name == "self" or parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        value = SAMPLES.get(name, f"sample {name}")
        if parameter.kind is parameter.KEYWORD_ONLY:
            kwargs[name] = value
        else:
            args.append(value)
    if cls.__init__ is BaseException.__init__:
        return cls("something failed")
    return cls(*args, **kwargs)


CLASSES = every_error_class()


def test_the_walk_finds_the_whole_tree() -> None:
    names = {cls.__name__ for cls in CLASSES}
    assert {"MissingAPIKeyError", "ChainLimitError", "APITimeoutError", "CancelChain"} <= names
    assert set(agentrt.errors.__all__) <= names


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_every_agentrt_exception_pickles_with_its_attributes(cls: type[BaseException]) -> None:
    error = build(cls)
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is cls
    assert str(copy) == str(error)
    assert copy.args == error.args
    assert vars(copy) == vars(error)


def test_missing_key_error_keeps_its_fields() -> None:
    copy = pickle.loads(pickle.dumps(MissingAPIKeyError("openai", "OPENAI_API_KEY")))
    assert (copy.provider, copy.env_var) == ("openai", "OPENAI_API_KEY")
    assert "OPENAI_API_KEY" in str(copy)


def test_cli_error_keeps_its_exit_code() -> None:
    copy = pickle.loads(pickle.dumps(CLIError("bad flag", ExitCode.USAGE)))
    assert copy.code == ExitCode.USAGE


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@pytest.mark.anyio
async def test_a_real_chain_limit_error_pickles_with_its_responses() -> None:
    model = FunctionModel(lambda m, t: ModelTurn(text="again", tool_calls=[call("add", a=1, b=2)]))
    with pytest.raises(ChainLimitError) as caught:
        await model.chain("go", tools=[add], max_turns=2).text()
    copy = pickle.loads(pickle.dumps(caught.value))
    assert str(copy) == str(caught.value)
    assert [(r.turn, r.status, r.text_so_far) for r in copy.responses] == [
        (0, "completed", "again"),
        (1, "completed", "again"),
    ]
    assert [r.content for r in copy.responses[0].tool_results] == ["3"]
    assert copy.responses[0].message == caught.value.responses[0].message
    assert await copy.responses[1].text() == "again"  # a finished copy: nothing to run


def test_a_missing_key_error_from_a_real_call_pickles(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(MissingAPIKeyError) as caught:
        get_async_model("anthropic:claude-x", api_key=None)
    assert pickle.loads(pickle.dumps(caught.value)).env_var == "ANTHROPIC_API_KEY"
