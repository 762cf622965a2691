"""Choosing models: ids, keys, options."""

from __future__ import annotations

import pytest

import agentrt
from agentrt import MissingAPIKeyError, UnknownModelError, get_async_model, get_model


@pytest.mark.parametrize(
    ("model_id", "env_var"),
    [
        ("openai:gpt-4.1-mini", "OPENAI_API_KEY"),
        ("anthropic:claude-sonnet-4-5", "ANTHROPIC_API_KEY"),
        ("gemini:gemini-2.5-flash", "GEMINI_API_KEY"),
    ],
)
def test_missing_key_names_the_environment_variable(
    model_id: str, env_var: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(env_var, raising=False)
    with pytest.raises(MissingAPIKeyError, match=env_var):
        get_async_model(model_id)
    monkeypatch.setenv(env_var, "from-env-key-1234")
    model = get_async_model(model_id)
    assert model.model_id == model_id
    assert "from-env-key-1234" not in repr(model)
    assert "from-env-key-1234" not in repr(model.provider)


@pytest.mark.parametrize("model_id", ["nope:x", "openai", "anthropic:", "gpt-4"])
def test_unknown_or_incomplete_model_ids_are_clear(model_id: str) -> None:
    with pytest.raises(UnknownModelError, match="model id"):
        get_async_model(model_id)


def test_offline_ids_and_options() -> None:
    assert get_async_model("offline").model_id == "offline:default"
    assert get_async_model("offline:default", timeout=5, max_retries=0).model_id == (
        "offline:default"
    )
    model = get_async_model("offline", temperature=0.2, stream=False)
    assert model.options == {"temperature": 0.2}
    assert model.stream is False
    assert get_async_model(model) is model
    sync = get_model("offline")
    assert isinstance(sync, agentrt.Model)
    assert sync.model_id == "offline:default"
