"""The fake provider server in its own process, and a long-answer variant of it.

``ServerProcess`` starts ``python -m tools.fakeserver`` (or, for the streaming scenario,
``python -m benchmarks.server``) on a free loopback port, waits until it accepts
connections, and kills it on exit whatever happened.

``python -m benchmarks.server --text-chunks 500`` answers every request with a text
streamed in that many ``delta.content`` chunks; it reuses ``tools.fakeserver`` unchanged.
"""

from __future__ import annotations

import argparse
import os
import select
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from .scenarios import ServerConfig

ROOT = Path(__file__).resolve().parent.parent
_BANNER = "fake provider server on "


class ServerProcess:
    """A fake provider server running in a subprocess; use it as a context manager."""

    def __init__(self, config: ServerConfig, *, start_timeout: float = 20.0) -> None:
        self.config = config
        self.start_timeout = start_timeout
        self.url = ""
        self._proc: subprocess.Popen[str] | None = None

    @property
    def base_url(self) -> str:
        """The OpenAI base URL (``.../v1``)."""
        return self.url + "/v1"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def command(self) -> list[str]:
        cfg = self.config
        common = ["--port", "0", "--latency", repr(cfg.latency)]
        if cfg.text_chunks is not None:
            return [
                sys.executable,
                "-m",
                "benchmarks.server",
                *common,
                "--text-chunks",
                str(cfg.text_chunks),
            ]
        return [
            sys.executable,
            "-m",
            "tools.fakeserver",
            *common,
            "--bench-tool-turns",
            str(cfg.tool_turns),
        ]

    def start(self) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self._proc = subprocess.Popen(
            self.command(),
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            self.url = self._read_url()
            self._wait_accepting()
        except BaseException:
            self.stop()
            raise

    def _read_url(self) -> str:
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"the fake server exited with status {proc.returncode}")
            ready, _, _ = select.select([proc.stdout], [], [], 0.2)
            if not ready:
                continue
            line = proc.stdout.readline()
            if line.startswith(_BANNER):
                return line[len(_BANNER) :].strip()
        raise RuntimeError(f"the fake server did not start within {self.start_timeout} s")

    def _wait_accepting(self) -> None:
        host, _, port = self.url.removeprefix("http://").partition(":")
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if _accepts(host, int(port)):
                return
            time.sleep(0.05)
        raise RuntimeError(f"the fake server at {self.url} does not accept connections")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if proc.stdout is not None:
            proc.stdout.close()

    def __enter__(self) -> ServerProcess:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


# --- the long-answer server ---------------------------------------------------------------

#: Characters per streamed chunk of the long answer.
CHUNK_CHARS = 4


def long_text(chunks: int) -> str:
    """A text the fake server streams in exactly ``chunks`` pieces of CHUNK_CHARS."""
    return "".join(f"w{i % 1000:03d}" for i in range(chunks))


def main(argv: list[str] | None = None) -> None:
    from tools.fakeserver.script import Turn
    from tools.fakeserver.server import FakeServer

    parser = argparse.ArgumentParser(prog="python -m benchmarks.server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--text-chunks", type=int, required=True)
    args = parser.parse_args(argv)
    text = long_text(args.text_chunks)

    def respond(_wire: str, _body: dict[str, Any]) -> Turn:
        return Turn(text=text, text_chunk_chars=CHUNK_CHARS)

    server = FakeServer(args.host, args.port, latency=args.latency)
    server.responder = respond
    with server:
        print(f"{_BANNER}{server.url}", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
