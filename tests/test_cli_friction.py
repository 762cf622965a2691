"""The command line speaks flags and variables, takes --base-url and warns of a cut answer.

Issue 10's friction list; the library side of truncation is here too.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agentrt import Message
from agentrt.testing import FunctionModel, ModelTurn
from tools.fakeserver.script import ScriptedToolCall, Turn
from tools.fakeserver.server import FakeServer


@pytest.fixture(scope="module")
def server() -> Iterator[FakeServer]:
    with FakeServer() as server:
        yield server


def run(args: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.endswith(("_API_KEY", "_BASE_URL"))}
    clean = {k: v for k, v in clean.items() if not k.startswith("AGENTRT_")}
    clean.update(AGENTRT_LOGS_PATH=str(tmp_path / "logs.db"), PYTHONIOENCODING="utf-8", **env)
    return subprocess.run(
        [sys.executable, "-m", "agentrt", *args],
        env=clean,
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=30,
        check=False,
    )


def test_base_url_flag_points_the_provider_at_a_server(server: FakeServer, tmp_path: Path) -> None:
    server.reset()
    server.push(Turn(text="hello from the fake"))
    result = run(
        ["chain", "hi", "-m", "openai:fake", "--base-url", server.openai_base_url],
        tmp_path,
        OPENAI_API_KEY="sk-x",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hello from the fake\n"
    assert len(server.requests) == 1


def test_a_missing_key_is_explained_in_variables_not_library_api(tmp_path: Path) -> None:
    result = run(["chain", "hi", "-m", "anthropic:claude-x"], tmp_path)
    assert result.returncode == 3
    (line,) = result.stderr.splitlines()
    assert "set the ANTHROPIC_API_KEY environment variable" in line
    assert "api_key" not in line and "get_async_model" not in line


def test_the_chain_limit_is_explained_in_flags(tmp_path: Path) -> None:
    result = run(["chain", "6*7", "-T", "calculator", "--max-turns", "1"], tmp_path)
    assert result.returncode == 7
    error = result.stderr.splitlines()[-1]
    assert "--max-turns 1" in error and "a larger --max-turns" in error
    assert "max_turns=" not in error and "error.responses" not in error


def test_an_unknown_model_gets_a_suggestion(tmp_path: Path) -> None:
    result = run(["chain", "hi", "-m", "gpt-4o"], tmp_path)
    assert result.returncode == 4
    assert "did you mean 'openai:gpt-4o'?" in result.stderr


def test_a_cut_answer_prints_a_warning(server: FakeServer, tmp_path: Path) -> None:
    for flags in ([], ["--json"]):
        server.reset()
        server.push(Turn(text="The answer is", finish_reason="length"))
        result = run(
            ["chain", "hi", "-m", "openai:fake", "--base-url", server.openai_base_url, *flags],
            tmp_path,
            OPENAI_API_KEY="sk-x",
        )
        assert result.returncode == 0, result.stderr
        warnings = [line for line in result.stderr.splitlines() if "warning" in line]
        assert warnings == [
            "agentrt: warning: the answer was cut by the model's token limit "
            "(finish reason 'length'); it is incomplete"
        ]
        if flags:
            record = json.loads(result.stdout)
            assert record["truncated"] is True and record["text"] == "The answer is"


def test_models_lists_the_key_and_base_url_variables(tmp_path: Path) -> None:
    result = run(["models"], tmp_path, OPENAI_BASE_URL="http://127.0.0.1:9/v1")
    assert result.returncode == 0
    assert "OPENAI_BASE_URL=http://127.0.0.1:9/v1" in result.stdout
    assert "GOOGLE_GEMINI_BASE_URL" in result.stdout
    record = json.loads(run(["models", "--json"], tmp_path).stdout)
    by_name = {p["provider"]: p for p in record["providers"]}
    assert by_name["anthropic"]["base_url_env"] == "ANTHROPIC_BASE_URL"


def test_chain_help_names_the_variables(tmp_path: Path) -> None:
    result = run(["chain", "--help"], tmp_path)
    assert "--base-url" in result.stdout and "OPENAI_API_KEY" in result.stdout


def test_tool_text_before_a_call_and_the_answer_are_separate_lines(
    server: FakeServer, tmp_path: Path
) -> None:
    server.reset()
    server.push(
        Turn(
            text="Let me check.",
            tool_calls=[ScriptedToolCall("calculator", '{"expression": "1+2"}')],
        ),
        Turn(text="It is 3."),
    )
    result = run(
        [
            "chain",
            "1+2",
            "-m",
            "openai:fake",
            "--base-url",
            server.openai_base_url,
            "-T",
            "calculator",
        ],
        tmp_path,
        OPENAI_API_KEY="sk-x",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Let me check.\nIt is 3.\n"


@pytest.mark.anyio
async def test_a_cut_final_answer_sets_truncated_and_logs_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def script(messages: list[Message], tools: Any) -> ModelTurn:
        return ModelTurn(text="The answer is", finish_reason="length")

    with caplog.at_level(logging.WARNING, logger="agentrt"):
        chain = FunctionModel(script).chain("q", name="cut")
        assert await chain.text() == "The answer is"
    assert chain.truncated is True and chain.status == "completed"
    (record,) = [r for r in caplog.records if r.name == "agentrt"]
    assert record.levelno == logging.WARNING
    assert "cut by the token limit" in record.getMessage() and "cut" in record.getMessage()
    complete = FunctionModel(lambda m, t: "fine").chain("q")
    await complete.text()
    assert complete.truncated is False
