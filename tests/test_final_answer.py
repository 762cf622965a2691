"""``chain.text()`` is the final answer (the last turn's text); iteration streams every turn."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agentrt import Message, SQLiteLogger, get_model, tool
from agentrt.testing import FunctionModel, ModelTurn, call
from tools.fakeserver.script import ScriptedToolCall, Turn
from tools.fakeserver.server import FakeServer


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def narrating(messages: list[Message], tools: Any) -> ModelTurn:
    if messages[-1].role == "user":
        return ModelTurn(text="Let me check.", tool_calls=[call("add", a=1, b=2)])
    return ModelTurn(text="The answer is 3.")


@pytest.mark.anyio
async def test_text_is_the_last_turns_text_and_iteration_streams_every_turn() -> None:
    chain = FunctionModel(narrating).chain("1+2?", tools=[add])
    chunks = [c async for c in chain]
    by_turn: dict[int, str] = {}
    for c in chunks:
        by_turn[c.turn] = by_turn.get(c.turn, "") + c.content
    assert by_turn == {0: "Let me check.", 1: "The answer is 3."}
    assert await chain.text() == "The answer is 3."
    assert [r.text_so_far for r in chain.responses] == ["Let me check.", "The answer is 3."]


@pytest.mark.anyio
async def test_awaited_without_iterating_gives_the_final_answer() -> None:
    assert await FunctionModel(narrating).chain("1+2?", tools=[add]).text() == "The answer is 3."


def test_sync_chain_text_is_the_final_answer() -> None:
    with get_model(FunctionModel(narrating)) as model:
        chain = model.chain("1+2?", tools=[add])
        assert chain.text() == "The answer is 3."
        assert [r.text_so_far for r in chain.responses] == ["Let me check.", "The answer is 3."]


@pytest.mark.anyio
async def test_the_log_keeps_the_final_answer_and_every_turns_text(tmp_path: Path) -> None:
    async with SQLiteLogger(tmp_path / "logs.db") as logger:
        chain = FunctionModel(narrating).chain("1+2?", tools=[add], callbacks=[logger])
        await chain.text()
        (logged,) = await logger.recent_chains()
    assert logged["text"] == "The answer is 3."
    assert [t["text"] for t in logged["turns"]] == ["Let me check.", "The answer is 3."]


@pytest.fixture(scope="module")
def server() -> Iterator[FakeServer]:
    with FakeServer() as server:
        yield server


def _cli(args: list[str], server: FakeServer, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "AGENTRT_"))}
    env.update(
        OPENAI_API_KEY="sk-fake-key",
        OPENAI_BASE_URL=server.openai_base_url,
        AGENTRT_LOGS_PATH=str(tmp_path / "logs.db"),
        PYTHONIOENCODING="utf-8",
    )
    return subprocess.run(
        [sys.executable, "-m", "agentrt", "chain", "1+2?", "-m", "openai:gpt-x", *args],
        env=env,
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=30,
    )


def _two_turns(server: FakeServer, tmp_path: Path) -> None:
    server.reset()
    server.push(
        Turn(text="Let me check.", tool_calls=[ScriptedToolCall("add", '{"a": 1, "b": 2}')]),
        Turn(text="The answer is 3."),
    )
    (tmp_path / "fns.py").write_text(
        'def add(a: int, b: int) -> int:\n    """Add."""\n    return a + b\n', encoding="utf-8"
    )


def test_cli_json_record_has_the_final_answer_and_each_turn(
    server: FakeServer, tmp_path: Path
) -> None:
    _two_turns(server, tmp_path)
    result = _cli(["--functions", "fns.py", "--json"], server, tmp_path)
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["text"] == "The answer is 3."
    assert [t["text"] for t in record["turns"]] == ["Let me check.", "The answer is 3."]


def test_cli_prints_each_turn_on_its_own_line(server: FakeServer, tmp_path: Path) -> None:
    _two_turns(server, tmp_path)
    result = _cli(["--functions", "fns.py"], server, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Let me check.\nThe answer is 3.\n"
