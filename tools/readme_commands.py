"""Run every ``bash`` block of the README except the quick start, as CI does.

Each fenced ```` ```bash ```` block is one script run with ``bash -euo pipefail`` from the
repository root, with a time limit; background jobs it starts are killed when it ends. A
block that fails fails the run, with its output shown. The quick start's two commands are
run by ``.ci/run`` itself, first and last.

Long-running commands (the full benchmark runs) read ``AGENTRT_SMOKE=1``, set here, and run
their smallest variant: the command is the one a reader types, only shorter.

Usage: ``python -m tools.readme_commands [README.md] [--list]``.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

_BLOCK = re.compile(r"^```bash\n(.*?)^```", re.DOTALL | re.MULTILINE)
_LIMIT_S = 600


def blocks(readme: str) -> list[tuple[str, str]]:
    """Return ``(section heading, script)`` for each bash block outside the quick start."""
    found = []
    for match in _BLOCK.finditer(readme):
        before = readme[: match.start()]
        headings = re.findall(r"^#+ (.+)$", before, re.MULTILINE)
        heading = headings[-1] if headings else ""
        if heading.strip() == "Quick start":
            continue
        found.append((heading, match.group(1)))
    return found


def run(heading: str, script: str, root: Path) -> bool:
    """Run one block; return whether it succeeded."""
    env = {**os.environ, "AGENTRT_SMOKE": "1"}
    started = time.monotonic()
    proc = subprocess.Popen(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its background jobs go with it
    )
    try:
        output, _ = proc.communicate(timeout=_LIMIT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        print(f"--- [{heading}] timed out after {_LIMIT_S} s:\n{script}\n{output}")
        return False
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    took = time.monotonic() - started
    if proc.returncode != 0:
        print(f"--- [{heading}] failed with exit code {proc.returncode}:\n{script}\n{output}")
        return False
    print(f"ok  [{heading}] {took:.1f} s: {script.strip().splitlines()[0][:80]}")
    return True


def main(argv: list[str]) -> int:
    """Run the README's commands; return the exit code."""
    args = [a for a in argv if not a.startswith("--")]
    path = Path(args[0] if args else "README.md")
    found = blocks(path.read_text(encoding="utf-8"))
    if "--list" in argv:
        for heading, script in found:
            print(f"[{heading}]\n{script}")
        return 0
    results = [run(heading, script, path.resolve().parent) for heading, script in found]
    failed = results.count(False)
    print(f"{len(results) - failed} of {len(results)} README command blocks passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
