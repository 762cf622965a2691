"""End-to-end tests of the ``agentrt`` command, run in subprocesses."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agentrt.cli import ExitCode, main
from tools.fakeserver.script import Fault, ScriptedToolCall, Turn
from tools.fakeserver.server import FakeServer

AGENTRT = [sys.executable, "-m", "agentrt"]
_SCRUBBED = (
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "ANTHROPIC_API_KEY",
    "GEMINI_API_KEY",
    "AGENTRT_MODEL",
    "AGENTRT_HTTP_ALLOW",
)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A clean environment whose logs go to tmp_path, never to the user's data directory."""
    clean = {k: v for k, v in os.environ.items() if k not in _SCRUBBED}
    clean["AGENTRT_LOGS_PATH"] = str(tmp_path / "logs.db")
    clean["PYTHONIOENCODING"] = "utf-8"
    return clean


@pytest.fixture(scope="module")
def server() -> Iterator[FakeServer]:
    with FakeServer() as server:
        yield server


@pytest.fixture
def openai_env(server: FakeServer, env: dict[str, str]) -> Iterator[dict[str, str]]:
    """``env`` pointing the openai provider at the fake server, whose queue is empty."""
    server.reset()
    yield {**env, "OPENAI_BASE_URL": server.openai_base_url, "OPENAI_API_KEY": "sk-fake-key"}
    server.reset()


def run(
    args: list[str], env: dict[str, str], cwd: Path, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*AGENTRT, *args],
        env=env,
        cwd=cwd,
        input=stdin,
        stdin=subprocess.DEVNULL if stdin is None else None,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=30,
    )


def test_offline_chain_prints_the_answer_and_the_tool_calls(
    env: dict[str, str], tmp_path: Path
) -> None:
    result = run(["chain", 'compute {"expression": "6*7"}', "-T", "calculator"], env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        "Offline model summary of the tool results:\n- calculator(expression='6*7') returned 42\n"
    )
    tool_line, usage_line = result.stderr.splitlines()
    assert tool_line == '[tool] calculator(expression="6*7") -> 42'
    assert usage_line.startswith("[usage] 2 turns: ")
    assert usage_line.endswith(" tokens")


def test_text_streams_to_stdout_before_the_chain_ends(
    server: FakeServer, openai_env: dict[str, str], tmp_path: Path
) -> None:
    # The tool blocks until the test answers on stdin, which it does only after it has
    # read the first turn's text: so that text was flushed while the chain still ran.
    (tmp_path / "gate.py").write_text(
        "import sys\n\n"
        "def wait_for_go() -> str:\n"
        '    """Wait for a line on standard input."""\n'
        "    return sys.stdin.readline().strip()\n",
        encoding="utf-8",
    )
    server.push(
        Turn(text="Checking the data.", tool_calls=[ScriptedToolCall("wait_for_go")]),
        Turn(text="All done."),
    )
    args = ["chain", "go", "-m", "openai:gpt-x", "--functions", "gate.py"]
    proc = subprocess.Popen(
        [*AGENTRT, *args],
        env=openai_env,
        cwd=tmp_path,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stdin is not None
    seen = b""
    while b"Checking the data." not in seen:
        piece = proc.stdout.read1(4096)
        assert piece, f"stdout closed early: {seen!r}"
        seen += piece
    assert proc.poll() is None  # still running: the chain is waiting on its tool
    out, err = proc.communicate(b"go\n", timeout=30)
    assert proc.returncode == 0, err
    assert (seen + out).decode() == "Checking the data.\nAll done.\n"
    assert "[tool] wait_for_go() -> go" in err.decode()
    assert len(server.requests) == 2


def test_json_record(env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("note", encoding="utf-8")
    prompt = '{"expression": "6*7", "path": "../outside.txt"}'
    result = run(["chain", prompt, "-T", "calculator", "-T", "read_file", "--json"], env, tmp_path)
    assert result.returncode == 0, result.stderr
    (line,) = result.stdout.splitlines()
    record = json.loads(line)
    assert len(record["chain_id"]) == 32
    assert record["model"] == "offline:default"
    assert record["status"] == "completed"
    assert record["error"] is None
    assert record["log_path"] == str(tmp_path / "logs.db")
    assert [t["finish_reason"] for t in record["turns"]] == ["tool_calls", "stop"]
    calc, read = record["tool_calls"]
    assert calc["name"] == "calculator"
    assert calc["arguments"] == {"expression": "6*7"}
    assert (calc["result"], calc["error"]) == ("42", None)
    assert read["result"] is None
    assert "leaves the allowed root directory" in read["error"]
    assert record["text"] == record["turns"][1]["text"]
    usage = record["usage"]
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"] > 0


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["chain", "hi", "-m", "openai:gpt-x"], ExitCode.MISSING_KEY, "set the OPENAI_API_KEY"),
        (["chain", "hi", "-m", "nope:x"], ExitCode.UNKNOWN_MODEL, "unknown model id 'nope:x'"),
        (["chain", "hi", "-T", "nope"], ExitCode.UNKNOWN_TOOL, "no bundled tool named 'nope'"),
        (
            ["chain", "hi", "-T", "calculator", "--max-turns", "1"],
            ExitCode.CHAIN_LIMIT,
            "reached --max-turns 1",
        ),
        (["chain"], ExitCode.USAGE, "no prompt"),
        (["chain", "hi", "--functions", "missing.py"], ExitCode.USAGE, "no such file"),
    ],
    ids=["missing-key", "unknown-model", "unknown-tool", "chain-limit", "no-prompt", "functions"],
)
def test_errors_have_one_line_and_distinct_exit_codes(
    env: dict[str, str], tmp_path: Path, args: list[str], code: ExitCode, message: str
) -> None:
    result = run(args, env, tmp_path)
    assert result.returncode == code
    error_lines = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(error_lines) == 1
    assert error_lines[0].startswith("agentrt: error: ")
    assert message in error_lines[0]
    assert "Traceback" not in result.stderr


def test_provider_failure(server: FakeServer, openai_env: dict[str, str], tmp_path: Path) -> None:
    server.push(Fault(status=400, message="model gpt-x does not exist"))
    env = {**openai_env, "AGENTRT_MODEL": "openai:gpt-x"}  # instead of -m
    result = run(["chain", "hi", "--json", "--no-stream"], env, tmp_path)
    assert result.returncode == ExitCode.PROVIDER
    (request,) = server.requests
    assert request.json["model"] == "gpt-x"
    assert not request.json.get("stream")
    assert result.stderr.splitlines()[-1].startswith(
        "agentrt: error: openai HTTP 400: model gpt-x does not exist"
    )
    record = json.loads(result.stdout)
    assert record["status"] == "failed"
    assert record["error"]["type"] == "BadRequestError"
    assert record["error"]["exit_code"] == ExitCode.PROVIDER
    assert record["turns"][0]["status"] == "failed"
    assert "sk-fake-key" not in result.stdout + result.stderr


def test_prompt_from_standard_input(env: dict[str, str], tmp_path: Path) -> None:
    result = run(["chain"], env, tmp_path, stdin="what is up?\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout == 'The offline model (no network) received: "what is up?"\n'


def test_logs_round_trip(env: dict[str, str], tmp_path: Path) -> None:
    db = tmp_path / "elsewhere" / "custom.db"
    args = ["chain", '{"expression": "2**5"}', "-T", "calculator", "-s", "be exact", "--json"]
    chained = run([*args, "--log-path", str(db)], env, tmp_path)
    assert chained.returncode == 0, chained.stderr
    record = json.loads(chained.stdout)
    unlogged = run(["chain", "not logged", "--no-log", "--log-path", str(db)], env, tmp_path)
    assert unlogged.returncode == 0, unlogged.stderr

    logs = run(["logs", "--json", "--log-path", str(db)], env, tmp_path)
    assert logs.returncode == 0, logs.stderr
    (chain,) = json.loads(logs.stdout)
    assert chain["id"] == record["chain_id"]
    assert chain["status"] == "completed"
    assert chain["system"] == "be exact"
    assert chain["text"] == record["text"]
    assert chain["usage"] == record["usage"]
    assert [t["usage"] for t in chain["turns"]] == [t["usage"] for t in record["turns"]]
    (call,) = chain["turns"][0]["tool_calls"]
    assert (call["name"], call["result"], call["error"]) == ("calculator", "32", None)
    assert not (tmp_path / "logs.db").exists()  # --log-path overrode AGENTRT_LOGS_PATH

    text = run(["logs", "-n", "1", "--log-path", str(db)], env, tmp_path)
    assert text.returncode == 0, text.stderr
    assert f"chain {record['chain_id']}" in text.stdout
    assert 'calculator({"expression": "2**5"}) -> 32' in text.stdout


@pytest.mark.skipif(sys.platform == "win32", reason="sends SIGINT")
def test_ctrl_c_stops_cleanly_and_logs_the_chain(env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "slow.py").write_text(
        "import sys, time\n"
        "import anyio\n\n"
        "async def wait_async() -> str:\n"
        '    """Wait on the event loop."""\n'
        '    print("async started", file=sys.stderr, flush=True)\n'
        "    await anyio.sleep(60)\n"
        '    return "late"\n\n'
        "def wait_sync() -> str:\n"
        '    """Wait in a worker thread."""\n'
        '    print("sync started", file=sys.stderr, flush=True)\n'
        "    time.sleep(60)\n"
        '    return "late"\n',
        encoding="utf-8",
    )
    proc = subprocess.Popen(
        [*AGENTRT, "chain", "go", "--functions", "slow.py"],
        env=env,
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    started: set[str] = set()
    while len(started) < 2:
        line = proc.stderr.readline()
        assert line, "the process ended before its tools started"
        if line.endswith(" started\n"):
            started.add(line)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=10)  # the sleeping thread does not hold it up
    assert proc.returncode == ExitCode.INTERRUPTED
    assert "agentrt: interrupted; the chain was stopped and logged as cancelled" in err
    assert "Traceback" not in err

    logs = run(["logs", "--json"], env, tmp_path)
    (chain,) = json.loads(logs.stdout)
    assert chain["status"] == "cancelled"
    errors = {c["name"]: c["error"] for c in chain["turns"][0]["tool_calls"]}
    assert errors == {
        "wait_async": "the tool call was cancelled before it finished",
        "wait_sync": "the tool call was cancelled before it finished",
    }


# --- in-process: commands that print information ---------------------------------------


def test_models_shows_whether_keys_are_set_never_the_key(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-visible-secret-123")
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.setenv("AGENTRT_MODEL", "openai:gpt-x")
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "sk-visible-secret" not in out
    assert "OPENAI_API_KEY is set" in out
    assert "ANTHROPIC_API_KEY is not set" in out
    assert "default model: openai:gpt-x" in out
    assert main(["models", "--json"]) == 0
    described: dict[str, Any] = json.loads(capsys.readouterr().out)
    keys = {p["provider"]: p["key_set"] for p in described["providers"]}
    assert keys == {"offline": None, "openai": True, "anthropic": False, "gemini": False}


def test_tools_lists_the_bundled_tools_with_schemas(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tools", "--json"]) == 0
    tools = {t["name"]: t for t in json.loads(capsys.readouterr().out)}
    assert list(tools) == ["calculator", "now", "http_get", "read_file", "list_dir"]
    assert tools["calculator"]["parameters"]["required"] == ["expression"]
    assert main(["tools"]) == 0
    assert '"required": ["url"]' in capsys.readouterr().out


def test_help_documents_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for code in ExitCode:
        assert f"  {int(code):<4} " in out


def test_logs_without_a_database(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "none.db"
    assert main(["logs", "--log-path", str(db)]) == 0
    assert "no chains logged yet" in capsys.readouterr().out
    assert main(["logs", "--json", "--log-path", str(db)]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert not db.exists()
