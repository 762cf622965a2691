"""``agentrt batch`` end to end, in subprocesses: input formats, Ctrl-C, kill and resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import agentrt
from agentrt import BatchResult, run_batch

pytestmark = pytest.mark.anyio

AGENTRT = [sys.executable, "-m", "agentrt"]

SLOW_TOOL = '''
import anyio

async def pause(ms: int) -> str:
    """Wait ms milliseconds."""
    await anyio.sleep(ms / 1000)
    return "done"
'''


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in ("OPENAI_API_KEY", "AGENTRT_MODEL", "OPENAI_BASE_URL")
    }
    clean["AGENTRT_LOGS_PATH"] = str(tmp_path / "logs.db")
    clean["PYTHONIOENCODING"] = "utf-8"
    return clean


def run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*AGENTRT, "batch", *args],
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )


def records(path: Path) -> list[BatchResult]:
    return [BatchResult.from_json(line) for line in path.read_text().splitlines()]


def test_jsonl_csv_and_text_inputs(env: dict[str, str], tmp_path: Path) -> None:
    jsonl = tmp_path / "in.jsonl"
    jsonl.write_text(
        "\n".join(
            json.dumps(x)
            for x in [
                "plain prompt",
                [{"role": "user", "content": "from messages"}],
                {"prompt": "with an id", "id": "row-3", "system": "be brief"},
                {"no": "prompt"},
            ]
        )
        + "\n\n"
    )
    out = tmp_path / "out.jsonl"
    result = run([str(jsonl), "-o", str(out), "--no-progress"], env, tmp_path)
    assert result.returncode == 1, result.stderr  # one input failed
    got = records(out)
    assert [r.index for r in got] == [0, 1, 2, 3]
    assert got[0].text is not None and "plain prompt" in got[0].text
    assert got[1].text is not None and "from messages" in got[1].text
    assert got[2].input == "row-3" and got[2].status == "completed"
    assert got[3].status == "failed" and got[3].error_type == "UsageError"
    assert "4 record(s)" in result.stderr and "UsageError 1" in result.stderr

    csv_file = tmp_path / "in.csv"
    csv_file.write_text('id,prompt,note\na1,"first, with a comma",x\na2,second,y\n')
    out_csv = tmp_path / "out_csv.jsonl"
    result = run(
        [str(csv_file), "-o", str(out_csv), "-T", "calculator", "--no-progress"], env, tmp_path
    )
    assert result.returncode == 0, result.stderr
    got = records(out_csv)
    assert [r.input for r in got] == ["a1", "a2"] and all(r.turns == 2 for r in got)

    text = tmp_path / "in.txt"
    text.write_text("one\n\ntwo\nthree\n")
    out_text = tmp_path / "out_text.jsonl"
    result = run([str(text), "-o", str(out_text), "--unordered"], env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert sorted(r.input for r in records(out_text)) == ["one", "three", "two"]
    assert "3/3" in result.stderr  # the progress bar


@pytest.mark.parametrize(
    ("content", "suffix", "extra", "message"),
    [
        ('"ok"\n{not json\n', ".jsonl", [], "line 2 is not JSON"),
        ("question,id\nx,1\n", ".csv", [], "has no 'prompt' column"),
        ("hi\n", ".txt", ["-T", "nosuchtool"], "nosuchtool"),
        ("hi\n", ".txt", ["--schema", "{bad"], "--schema"),
        ("hi\n", ".txt", ["--concurrency", "0"], "expected a positive number"),
    ],
)
def test_bad_input_fails_before_anything_runs(
    env: dict[str, str],
    tmp_path: Path,
    content: str,
    suffix: str,
    extra: list[str],
    message: str,
) -> None:
    source = tmp_path / f"in{suffix}"
    source.write_text(content)
    out = tmp_path / "out.jsonl"
    result = run([str(source), "-o", str(out), *extra], env, tmp_path)
    assert result.returncode in (2, 5), result.stderr
    assert message in result.stderr
    assert not out.exists() or out.read_text() == ""


def _start_slow_batch(
    tmp_path: Path, env: dict[str, str], n: int
) -> tuple[subprocess.Popen[str], list[str], Path]:
    tool = tmp_path / "slow.py"
    tool.write_text(SLOW_TOOL)
    source = tmp_path / "prompts.txt"
    source.write_text("".join(f'item {i} {{"ms": 40}}\n' for i in range(n)))
    out = tmp_path / "results.jsonl"
    args = [str(source), "-o", str(out), "--functions", str(tool), "--concurrency", "8"]
    proc = subprocess.Popen(
        [*AGENTRT, "batch", *args],
        env=env,
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return proc, args, out


def _wait_for_lines(path: Path, count: int, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if path.exists() and path.read_bytes().count(b"\n") >= count:
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)  # polling another process's file: there is no event to wait on
    raise AssertionError(f"{path} did not reach {count} lines")


@pytest.mark.skipif(sys.platform == "win32", reason="sends SIGINT")
def test_ctrl_c_stops_cleanly_and_the_same_command_resumes(
    env: dict[str, str], tmp_path: Path
) -> None:
    n = 400
    proc, args, out = _start_slow_batch(tmp_path, env, n)
    _wait_for_lines(out, 40, proc)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr and "run the same command again to resume" in stderr
    first = records(out)  # every line is a whole record
    assert 40 <= len(first) < n
    assert all(r.status == "completed" for r in first)
    assert out.read_bytes().endswith(b"\n")

    result = run([*args, "--no-progress"], env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"{len(first)} from an earlier run" in result.stderr
    every = records(out)
    assert len(every) == n  # nothing run twice
    assert sorted(r.index for r in every) == list(range(n))


@pytest.mark.skipif(sys.platform == "win32", reason="sends SIGKILL")
async def test_resume_after_the_process_was_killed_mid_run(
    env: dict[str, str], tmp_path: Path
) -> None:
    n = 400
    proc, _args, out = _start_slow_batch(tmp_path, env, n)
    _wait_for_lines(out, 40, proc)
    proc.kill()
    proc.communicate(timeout=30)
    lines = out.read_bytes().split(b"\n")
    whole = [BatchResult.from_json(line) for line in lines[:-1]]  # a torn last line is allowed
    assert len(whole) >= 40 and all(r.status == "completed" for r in whole)

    # Resume from Python with the same inputs: the items on disk are not run again.
    ran = 0

    @agentrt.tool
    async def pause(ms: int) -> str:
        """Wait ms milliseconds."""
        nonlocal ran
        ran += 1
        return "done"

    model = agentrt.get_async_model("offline")
    items = [f'item {i} {{"ms": 40}}' for i in range(n)]
    batch = run_batch(model, items, tools=[pause], results_path=out, concurrency=32)
    got = [r async for r in batch]
    assert [r.index for r in got] == list(range(n))
    assert batch.summary.resumed == len(whole) and ran == n - len(whole)
    assert all(r.status == "completed" for r in got)
    latest = {r.index: r for r in records(out)}
    assert len(latest) == n and all(r.status == "completed" for r in latest.values())
