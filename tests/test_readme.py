"""The README's tour and fake-server example work as written (issue 10 friction list)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
BIN = str(Path(sys.executable).parent) + os.sep


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "AGENTRT_"))}
    env["PYTHONIOENCODING"] = "utf-8"
    return env


def test_the_tour_prints_what_the_readme_says(tmp_path: Path) -> None:
    match = re.search(
        r"## A tour\n\n```python\n(.*?)```\n\nprints\n\n```text\n(.*?)```", README, re.S
    )
    assert match, "the tour and its output block"
    code, expected = match.groups()
    script = tmp_path / "tour.py"
    script.write_text(code, encoding="utf-8")
    result = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(),
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == expected


def test_the_fake_server_example_works_as_written(tmp_path: Path) -> None:
    match = re.search(r"```bash\n(\.venv/bin/python -m tools\.fakeserver .*?)```", README, re.S)
    assert match, "the fake-server example"
    server_line, *commands, last = match.group(1).strip().splitlines()
    assert server_line.endswith(" &") and "--port 8765" in server_line and last == "kill %1"
    server_cmd = server_line.removesuffix(" &").replace("--port 8765", "--port 0")
    server = subprocess.Popen(
        server_cmd.replace(".venv/bin/", BIN).split(),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env=clean_env(),
    )
    try:
        assert server.stdout is not None
        first = server.stdout.readline()
        port = re.search(r"127\.0\.0\.1:(\d+)", first)
        assert port, first
        script = "\n".join(commands).replace("8765", port.group(1)).replace(".venv/bin/", BIN)
        result = subprocess.run(
            ["bash", "-c", f"set -e\n{script}"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            env=clean_env(),
            check=False,
        )
    finally:
        server.terminate()
        server.wait(timeout=10)
        if server.stdout is not None:
            server.stdout.close()
    assert result.returncode == 0, result.stderr
    assert result.stdout == "done after 1 tool calls\n"
    assert "[tool] add(a=1, b=2) -> 3" in result.stderr
    assert "error" not in result.stderr
