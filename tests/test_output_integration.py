"""Typed results through the public API without HTTP: offline model, FunctionModel, the
SQLite log, conversations and the command line's ``--schema``."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any, Literal

import anyio
import pytest
from pydantic import BaseModel

import agentrt
from agentrt import tool
from agentrt.errors import OutputValidationError
from agentrt.messages import Message, ToolSpec
from agentrt.testing import FunctionModel, ModelTurn, call


class City(BaseModel):
    name: str
    population: int


@tool
def lookup(name: str) -> str:
    """Look a city up."""
    return f"{name}: 700000 people"


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["auto", "native", "tool", "prompted"])
async def test_offline_model_builds_the_output_from_the_schema(mode: str) -> None:
    model = agentrt.get_async_model("offline")
    chain = model.chain('Use {"name": "Oslo"}', output_type=City, output_mode=mode)  # type: ignore[arg-type]
    assert await chain.output() == City(name="Oslo", population=1)
    assert chain.output_mode == ("native" if mode == "auto" else mode)
    # with tools: it calls them first, then answers with the output
    chain = model.chain('{"name": "Oslo"}', output_type=City, output_mode=mode, tools=[lookup])  # type: ignore[arg-type]
    assert await chain.output() == City(name="Oslo", population=1)
    assert [r.name for r in chain.tool_results][:1] == ["lookup"]
    assert len(chain.responses) == 2
    response = model.prompt("list please", output_type=list[Literal["a", "b"]], output_mode=mode)  # type: ignore[arg-type]
    assert await response.output() == []


@pytest.mark.anyio
async def test_without_output_type_output_is_the_final_text() -> None:
    model = agentrt.get_async_model("offline")
    chain = model.chain("hello")
    assert await chain.output() == await chain.text()
    assert chain.output_mode is None
    response = model.prompt("hello")
    assert await response.output() == await response.text()


@pytest.mark.anyio
async def test_function_model_returns_outputs_and_invalid_ones() -> None:
    seen: list[list[Message]] = []

    def script(messages: list[Message], tools: list[ToolSpec]) -> ModelTurn:
        seen.append(list(messages))
        if len(seen) == 1:
            return ModelTurn(tool_calls=[call("lookup", name="Oslo")])
        if len(seen) == 2:
            return ModelTurn(output='{"name": "Oslo"}')  # invalid: no population
        return ModelTurn(output=City(name="Oslo", population=700000))

    for mode in ("native", "tool", "prompted"):
        seen.clear()
        chain = FunctionModel(script).chain(
            "city?",
            tools=[lookup],
            output_type=City,
            output_mode=mode,  # type: ignore[arg-type]
        )
        assert await chain.output() == City(name="Oslo", population=700000)
        assert len(chain.responses) == 3
        # the error went back to the model before its third turn
        assert "population: Field required" in json.dumps([m.model_dump() for m in seen[2]])


@pytest.mark.anyio
async def test_function_model_output_without_output_type_is_an_error() -> None:
    model = FunctionModel(lambda messages, tools: ModelTurn(output={"a": 1}))
    with pytest.raises(TypeError, match="without output_type"):
        await model.chain("x").text()


@pytest.mark.anyio
async def test_retries_count_against_max_turns_and_usage() -> None:
    model = FunctionModel(lambda m, t: ModelTurn(output="{}"), count_usage=True)
    chain = model.chain("x", output_type=City, output_retries=5, max_turns=2)
    with pytest.raises(OutputValidationError) as info:
        await chain.output()
    assert len(info.value.attempts) == 2 == len(chain.responses)
    assert chain.usage is not None and chain.usage.total_tokens > 0


@pytest.mark.anyio
async def test_a_conversation_keeps_the_retry_turns() -> None:
    answers = iter(["nope", City(name="A", population=1)])
    conversation = FunctionModel(lambda m, t: ModelTurn(output=next(answers))).conversation()
    chain = conversation.chain("x", output_type=City)
    assert await chain.output() == City(name="A", population=1)
    roles = [m.role for m in conversation.messages]
    assert roles == ["user", "assistant", "user", "assistant"]
    assert "did not validate" in conversation.messages[2].content


@pytest.mark.anyio
async def test_tool_mode_history_answers_the_final_call(tmp_path: Path) -> None:
    conversation = FunctionModel(
        lambda m, t: ModelTurn(output=City(name="A", population=1))
    ).conversation()
    chain = conversation.chain("x", output_type=City, output_mode="tool")
    await chain.output()
    last = conversation.messages[-1]
    assert (last.role, last.name, last.is_error) == ("tool", "final_result", False)


@pytest.mark.anyio
async def test_the_log_records_mode_and_output(tmp_path: Path) -> None:
    path = tmp_path / "logs.db"
    answers = iter(["{}", City(name="A", population=2)])
    with agentrt.SQLiteLogger(path) as log:
        model = FunctionModel(lambda m, t: ModelTurn(output=next(answers)))
        chain = model.chain("x", output_type=City, output_mode="tool", callbacks=[log])
        await chain.output()
    db = sqlite3.connect(path)
    [(mode, output)] = db.execute("SELECT output_mode, output FROM chains").fetchall()
    assert mode == "tool"
    assert json.loads(output) == {"name": "A", "population": 2}
    turns = db.execute("SELECT output_mode FROM responses ORDER BY turn").fetchall()
    assert turns == [("tool",), ("tool",)]


def test_sync_facade_offline() -> None:
    with agentrt.get_model("offline") as model:
        assert model.chain('{"name": "Rome"}', output_type=City).output() == City(
            name="Rome", population=1
        )
        assert model.prompt("x", output_type=int).output() == 1


# --- the command line -----------------------------------------------------------------------


def _agentrt(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI", "AGENTRT"))}
    env["AGENTRT_LOGS_PATH"] = str(tmp_path / "logs.db")
    return subprocess.run(
        [sys.executable, "-m", "agentrt", "chain", *args],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        check=False,
    )


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        ("name, age int, bio: a short bio", {"name": "Ada", "age": 1, "bio": "example"}),
        ('{"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}',
         {"name": "Ada"}),
    ],
)  # fmt: skip
def test_cli_schema_prints_the_validated_json(
    schema: str, expected: dict[str, Any], tmp_path: Path
) -> None:
    proc = _agentrt(['{"name": "Ada"}', "--schema", schema], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == expected


def test_cli_schema_file_and_json_record(tmp_path: Path) -> None:
    path = tmp_path / "schema.json"
    path.write_text(json.dumps({"type": "array", "items": {"type": "integer"}}))
    proc = _agentrt(["numbers", "--schema", str(path), "--output-mode", "tool", "--json"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)
    assert record["output"] == []
    assert record["output_mode"] == "tool"
    assert [t["output_mode"] for t in record["turns"]] == ["tool"]


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        ("name, age integer", "--schema: schema field 'age integer': unknown type 'integer'"),
        ('{"type": ', "--schema looks like inline JSON but does not parse"),
        ('{"type": "nonsense"}', "--schema: output_type is not a valid JSON Schema"),
    ],
)
def test_cli_bad_schema_is_a_usage_error(schema: str, message: str, tmp_path: Path) -> None:
    proc = _agentrt(["hi", "--schema", schema], tmp_path)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_cli_exit_code_for_output_failures() -> None:
    from agentrt.cli import ExitCode
    from agentrt.cli.exit_codes import EPILOG, exit_code_for
    from agentrt.errors import OutputRefusedError

    assert exit_code_for(OutputValidationError("x", [])) == ExitCode.OUTPUT == 8
    assert exit_code_for(OutputRefusedError("no")) == ExitCode.OUTPUT
    assert "8    the answer failed --schema validation" in EPILOG


@pytest.mark.anyio
async def test_output_of_a_cancelled_chain_is_a_usage_error() -> None:
    started = anyio.Event()

    async def slow(messages: list[Message], tools: list[ToolSpec]) -> str:
        started.set()
        await anyio.sleep_forever()
        return ""

    chain = FunctionModel(slow).chain("x", output_type=City)
    async with anyio.create_task_group() as tg:

        async def run() -> None:
            async for _ in chain:
                pass

        tg.start_soon(run)
        await started.wait()
        tg.cancel_scope.cancel()
    assert chain.status == "cancelled"
    with pytest.raises(agentrt.UsageError, match="cancelled before the model gave its output"):
        await chain.output()


@pytest.mark.anyio
async def test_cancel_chain_from_a_tool_is_raised_by_output() -> None:
    @tool
    def stop() -> str:
        """Stop."""
        raise agentrt.CancelChain("enough")

    model = FunctionModel(lambda m, t: ModelTurn(tool_calls=[call("stop")]))
    chain = model.chain("x", tools=[stop], output_type=City)
    with pytest.raises(agentrt.CancelChain, match="enough"):
        await chain.output()


@pytest.mark.anyio
async def test_a_log_written_before_typed_results_is_migrated(tmp_path: Path) -> None:
    from agentrt.logs._schema import MIGRATIONS

    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    for statement in MIGRATIONS[0]:
        db.execute(statement)
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()
    with agentrt.SQLiteLogger(path) as log:
        model = FunctionModel(lambda m, t: ModelTurn(output=City(name="B", population=3)))
        await model.chain("x", output_type=City, callbacks=[log]).output()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone() == (len(MIGRATIONS),)
    [(mode, output)] = db.execute("SELECT output_mode, output FROM chains").fetchall()
    assert (mode, json.loads(output)) == ("native", {"name": "B", "population": 3})


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda m: m.chain("x", outputtype=int), "did you mean 'output_type'"),
        (lambda m: m.chain("x", output_retry=1), "did you mean 'output_retries'"),
        (lambda m: m.prompt("x", output_retries=1), "output_retries= is a parameter of chain()"),
        (lambda m: m.chain("x", toolchoice="auto"), "did you mean 'tool_choice'"),
    ],
)
def test_misspelt_output_parameters_get_a_suggestion(call: Any, message: str) -> None:
    with pytest.raises(agentrt.UsageError, match=message):
        call(agentrt.get_async_model("offline"))


@pytest.mark.anyio
async def test_batches_return_validated_outputs_and_name_failures() -> None:
    def script(messages: list[Message], tools: list[ToolSpec]) -> ModelTurn:
        prompt = messages[0].content
        return ModelTurn(output="{}" if prompt == "bad" else City(name=prompt, population=1))

    model = FunctionModel(script)
    results = [
        r
        async for r in agentrt.run_batch(model, ["Oslo", "bad"], output_type=City, output_retries=0)
    ]
    assert [r.status for r in results] == ["completed", "failed"]
    assert results[0].output == City(name="Oslo", population=1)
    assert results[1].output is None and results[1].error_type == "OutputValidationError"
