from __future__ import annotations

import sqlite3
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

import agentrt
from agentrt.errors import ServerError
from agentrt.logs import (
    MIGRATIONS,
    SCHEMA_VERSION,
    SQLiteLogger,
    connect,
    default_logs_path,
    filter_options,
    recent_chains,
)
from agentrt.messages import Message, ToolSpec
from agentrt.testing import FunctionModel, ModelTurn, call


def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


def explode(reason: str) -> str:
    """Always fail."""
    raise RuntimeError(f"exploded: {reason}")


def _rows(path: Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


@pytest.mark.anyio
async def test_chain_turns_and_tool_calls_are_logged(tmp_path: Path) -> None:
    db = tmp_path / "logs.db"
    async with SQLiteLogger(db) as logger:
        model = agentrt.get_async_model("offline")
        chain = model.chain(
            'add {"a": 2, "b": 3}', system="be brief", tools=[add], callbacks=[logger]
        )
        text = await chain.text()
        (logged,) = await logger.recent_chains()
    assert logged["id"] == chain.id
    assert logged["status"] == "completed"
    assert logged["model"] == "offline:default"
    assert logged["prompt"] == 'add {"a": 2, "b": 3}'
    assert logged["system"] == "be brief"
    assert logged["tools"] == ["add"]
    assert logged["text"] == text
    assert logged["usage"] == chain.usage.model_dump(exclude_none=True)
    first, second = logged["turns"]
    assert first["finish_reason"] == first["raw_finish_reason"] == "tool_calls"
    assert first["prompt"] == 'add {"a": 2, "b": 3}'
    assert first["usage"] == chain.responses[0].usage.model_dump(exclude_none=True)
    assert first["duration"] > 0
    assert first["started_at"] == chain.responses[0].started_at
    (tool_call,) = first["tool_calls"]
    assert tool_call["name"] == "add"
    assert tool_call["arguments"] == '{"a": 2, "b": 3}'
    assert (tool_call["result"], tool_call["error"]) == ("5", None)
    assert tool_call["duration"] >= 0
    assert second["text"] == text
    assert second["messages"][0]["role"] == "tool"
    assert second["time_to_first_chunk"] is not None


@pytest.mark.anyio
async def test_200_concurrent_chains_lose_no_row(tmp_path: Path) -> None:
    db = tmp_path / "logs.db"
    model = agentrt.get_async_model("offline")
    chains = []
    async with SQLiteLogger(db) as logger:

        async def run(i: int) -> None:
            chain = model.chain(f'job {i} {{"a": {i}, "b": 1}}', tools=[add], callbacks=[logger])
            chains.append(chain)
            await chain.text()

        async with anyio.create_task_group() as tg:
            for i in range(200):
                tg.start_soon(run, i)
    assert _rows(db, "SELECT count(*), count(DISTINCT id) FROM chains") == [(200, 200)]
    assert _rows(db, "SELECT status, count(*) FROM chains GROUP BY status") == [("completed", 200)]
    assert _rows(db, "SELECT count(*) FROM responses") == [(400,)]
    assert _rows(db, "SELECT count(*) FROM tool_calls WHERE error IS NULL") == [(200,)]
    # Every chain's tool result is its own: no rows were crossed between chains.
    results = _rows(
        db,
        "SELECT c.prompt, t.result FROM tool_calls t JOIN chains c ON c.id = t.chain_id",
    )
    for prompt, result in results:
        i = int(prompt.split()[1])
        assert result == str(i + 1)
    assert {c.id for c in chains} == {r[0] for r in _rows(db, "SELECT id FROM chains")}


@pytest.mark.anyio
async def test_failed_tool_calls_are_logged(tmp_path: Path) -> None:
    def script(messages: list[Message], tools: list[ToolSpec]) -> str | ModelTurn:
        if messages[-1].role == "user":
            return ModelTurn(
                tool_calls=[
                    call("explode", reason="on purpose"),
                    call("missing_tool"),
                    call("add", '{"a": 1'),
                    call("add", a=1, b=2),
                ]
            )
        return "done"

    db = tmp_path / "logs.db"
    async with SQLiteLogger(db) as logger:
        chain = FunctionModel(script).chain("go", tools=[add, explode], callbacks=[logger])
        assert await chain.text() == "done"
        (logged,) = await logger.recent_chains()
    calls = logged["turns"][0]["tool_calls"]
    assert [c["name"] for c in calls] == ["explode", "missing_tool", "add", "add"]
    assert calls[0]["result"] is None
    assert "RuntimeError: exploded: on purpose" in calls[0]["error"]
    assert "there is no tool named 'missing_tool'" in calls[1]["error"]
    assert "could not be parsed" in calls[2]["error"]
    assert calls[2]["arguments"] == '{"a": 1'
    assert (calls[3]["result"], calls[3]["error"]) == ("3", None)


@pytest.mark.anyio
async def test_failed_turn_is_logged(tmp_path: Path) -> None:
    def script(messages: list[Message], tools: list[ToolSpec]) -> ModelTurn:
        if messages[-1].role == "user":
            return ModelTurn(text="Adding.", tool_calls=[call("add", a=1, b=1)])
        raise ServerError("the provider is down", provider="fake", status=503)

    db = tmp_path / "logs.db"
    async with SQLiteLogger(db) as logger:
        chain = FunctionModel(script).chain("go", tools=[add], callbacks=[logger])
        with pytest.raises(ServerError):
            await chain.text()
        (logged,) = await logger.recent_chains()
    assert logged["status"] == "failed"
    assert logged["error"] == "ServerError: fake HTTP 503: the provider is down"
    first, second = logged["turns"]
    assert first["status"] == "completed"
    assert first["tool_calls"][0]["result"] == "2"
    assert second["status"] == "failed"
    assert second["error"] == "ServerError: fake HTTP 503: the provider is down"
    assert second["usage"] is None


@pytest.mark.anyio
async def test_cancelled_chain_and_unfinished_calls_are_logged(tmp_path: Path) -> None:
    started, added = anyio.Event(), anyio.Event()

    async def wait_forever() -> str:
        """Never return."""
        started.set()
        await anyio.sleep_forever()
        return "unreachable"

    class AddSeen(agentrt.CallbackHandler):
        def on_tool_end(self, response: Any, call: Any, result: Any) -> None:
            added.set()  # runs after the logger's hook: the result is recorded

    db = tmp_path / "logs.db"
    async with SQLiteLogger(db) as logger:
        model = agentrt.get_async_model("offline")
        chain = model.chain("go", tools=[wait_forever, add], callbacks=[logger, AddSeen()])
        async with anyio.create_task_group() as tg:
            tg.start_soon(chain.text)
            await started.wait()
            await added.wait()
            tg.cancel_scope.cancel()
        (logged,) = await logger.recent_chains()
    assert chain.status == logged["status"] == "cancelled"
    calls = {c["name"]: c for c in logged["turns"][0]["tool_calls"]}
    assert calls["wait_forever"]["result"] is None
    assert calls["wait_forever"]["error"] == "the tool call was cancelled before it finished"
    assert calls["add"]["result"] == "2"


@pytest.mark.anyio
async def test_a_lone_prompt_is_logged(tmp_path: Path) -> None:
    db = tmp_path / "logs.db"
    async with SQLiteLogger(db) as logger:
        model = agentrt.get_async_model("offline")
        await model.prompt("hello", callbacks=[logger]).text()
    assert _rows(db, "SELECT chain_id, prompt, status FROM responses") == [
        (None, "hello", "completed")
    ]
    assert recent_chains(db) == []  # not a chain


def test_sync_facade_logs_the_same(tmp_path: Path) -> None:
    db = tmp_path / "logs.db"
    with SQLiteLogger(db) as logger:
        model = agentrt.get_model("offline", callbacks=[logger])
        try:
            model.chain('{"a": 4, "b": 5}', tools=[add]).text()
        finally:
            model.close()
    (logged,) = recent_chains(db)
    assert logged["turns"][0]["tool_calls"][0]["result"] == "9"


def _all_bytes(directory: Path) -> bytes:
    return b"".join(p.read_bytes() for p in directory.iterdir() if p.is_file())


@pytest.mark.anyio
async def test_nothing_secret_is_stored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_key = "sk-env-secret-0123456789abcdef"
    option_key = "sk-option-secret-fedcba9876543210"
    monkeypatch.setenv("OPENAI_API_KEY", env_key)
    db = tmp_path / "logs.db"
    async with SQLiteLogger(db, redact=["my-own-password-123"]) as logger:
        model = agentrt.get_async_model("offline", api_key=option_key)
        chain = model.chain(
            f"my key is {env_key} and my-own-password-123",
            callbacks=[logger],
            temperature=0.3,
            max_tokens=50,
            extra_headers={"Authorization": f"Bearer {option_key}"},
            extra_body={"nested": {"access_token": option_key, "keep": 1}},
        )
        await chain.text()
        (logged,) = await logger.recent_chains()
    data = _all_bytes(tmp_path)
    assert env_key.encode() not in data
    assert option_key.encode() not in data
    assert b"my-own-password-123" not in data
    assert "[redacted]" in logged["prompt"]
    assert logged["turns"][0]["options"] == {
        "temperature": 0.3,
        "max_tokens": 50,
        "extra_body": {"nested": {"keep": 1}},
    }


def test_filter_options_keeps_generation_options() -> None:
    kept = filter_options(
        {
            "temperature": 0.2,
            "max_output_tokens": 10,
            "stop": ["\n", None],
            "api_key": "x",
            "token": "x",
            "password": "x",
            "client": object(),
            "headers": {"a": "b"},
        }
    )
    assert kept == {"temperature": 0.2, "max_output_tokens": 10, "stop": ["\n", None]}


def test_schema_is_versioned_and_in_wal_mode(tmp_path: Path) -> None:
    db = tmp_path / "logs.db"
    SQLiteLogger(db).open().close()
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert SCHEMA_VERSION == len(MIGRATIONS) >= 1
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert {"chains", "responses", "tool_calls"} <= tables
    finally:
        conn.close()
    # Opening again migrates nothing and keeps the version.
    connect(db).close()
    assert _rows(db, "PRAGMA user_version") == [(SCHEMA_VERSION,)]


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "logs.db"
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(RuntimeError, match="newer than the version"):
        SQLiteLogger(db).open()


@pytest.mark.anyio
async def test_a_closed_logger_never_breaks_the_chain(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    logger = SQLiteLogger(tmp_path / "logs.db")
    logger.close()
    model = agentrt.get_async_model("offline")
    assert "hi" in await model.chain("hi", callbacks=[logger]).text()
    assert "is closed" in caplog.text


def test_recent_chains_of_a_missing_database_creates_nothing(tmp_path: Path) -> None:
    db = tmp_path / "nowhere" / "logs.db"
    assert recent_chains(db) == []
    assert not db.parent.exists()


def test_default_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AGENTRT_LOGS_PATH", str(tmp_path / "x.db"))
    assert default_logs_path() == tmp_path / "x.db"
    assert SQLiteLogger().path == tmp_path / "x.db"
    monkeypatch.delenv("AGENTRT_LOGS_PATH")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("LOCALAPPDATA", str(tmp_path / "local"))
    expected = {
        "win32": tmp_path / "local" / "agentrt" / "logs.db",
        "darwin": Path.home() / "Library" / "Application Support" / "agentrt" / "logs.db",
    }.get(sys.platform, tmp_path / "data" / "agentrt" / "logs.db")
    assert default_logs_path() == expected
