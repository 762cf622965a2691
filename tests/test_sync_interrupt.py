"""Ctrl-C in a sync call cancels the chain as cancelling the async one does (issue 10 point 5).

In process, SIGINT is sent to the main thread (``signal.pthread_kill``) while it is blocked
in ``chain.text()``, exactly where a user's Ctrl-C lands; a subprocess test sends a real
SIGINT to a script.
"""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from agentrt import CallbackHandler, Message, SQLiteLogger, get_model, tool
from agentrt.testing import FunctionModel, ModelTurn, call

pytestmark = [
    pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals"),
    pytest.mark.usefixtures("no_gc_finalizers"),
]


@pytest.fixture
def no_gc_finalizers() -> Iterator[None]:
    # The signal must land in the call under test, not in a finalizer of an earlier
    # test's garbage that the cyclic collector happens to run meanwhile (an exception in
    # a finalizer is printed, not raised).
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


WAIT = 10.0  # bound on every wait; none is reached when the code works


def interrupt_main_when(event: threading.Event) -> threading.Thread:
    """Send SIGINT to the main thread once ``event`` is set (as Ctrl-C would)."""
    main = threading.main_thread().ident
    assert main is not None

    def send() -> None:
        if event.wait(WAIT):
            signal.pthread_kill(main, signal.SIGINT)

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    return sender


class Ends(CallbackHandler):
    def __init__(self) -> None:
        self.events: list[str] = []

    def on_chain_end(self, chain: Any) -> None:
        self.events.append(f"chain_end:{chain.status}")

    def on_turn_end(self, response: Any) -> None:
        self.events.append(f"turn_end:{response.status}")


def tool_script(messages: list[Message], tools: Any) -> ModelTurn:
    if messages[-1].role == "user":
        return ModelTurn(text="Working.", tool_calls=[call("block")])
    return ModelTurn(text="done")


class Blocking:
    """A tool that blocks until released; async (cancelled) or sync (abandoned)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.started = threading.Event()
        self.release = threading.Event()
        self.outcome: list[str] = []
        if kind == "async":

            @tool
            async def block() -> str:
                """Block."""
                self.started.set()
                try:
                    await anyio.sleep_forever()
                finally:
                    self.outcome.append("cancelled")
                return "never"

        else:

            @tool
            def block() -> str:
                """Block."""
                self.started.set()
                self.release.wait(WAIT)
                self.outcome.append("ran to its end")
                return "late"

        self.tool = block


@pytest.fixture(params=["async", "sync"])
def blocking(request: pytest.FixtureRequest) -> Iterator[Blocking]:
    b = Blocking(request.param)
    yield b
    b.release.set()


def consume_text(chain: Any) -> None:
    chain.text()


def consume_iteration(chain: Any) -> None:
    for _ in chain:
        pass


@pytest.mark.parametrize("consume", [consume_text, consume_iteration], ids=["text", "iterate"])
def test_ctrl_c_in_a_sync_chain_cancels_it(
    blocking: Blocking, consume: Callable[[Any], None], tmp_path: Path
) -> None:
    ends, done = Ends(), []
    model = get_model(FunctionModel(tool_script))
    with SQLiteLogger(tmp_path / "logs.db") as logger:
        chain = model.chain("go", tools=[blocking.tool], callbacks=[ends, logger])
        chain.on_done(lambda c: done.append(c.status))
        interrupt_main_when(blocking.started)
        with pytest.raises(KeyboardInterrupt):
            consume(chain)
        # Ended when the interrupt reached the caller: no background work remains.
        assert chain.status == "cancelled"
        assert done == ["cancelled"]
        assert ends.events == ["turn_end:completed", "chain_end:cancelled"]
        (logged,) = anyio.run(logger.recent_chains)
    assert logged["status"] == "cancelled"
    # The async tool was cancelled; the sync one was abandoned (its thread still waits).
    assert blocking.outcome == (["cancelled"] if blocking.kind == "async" else [])
    # Later calls behave as on a cancelled chain: no "await it afterwards" message.
    assert chain.text() == "Working."
    assert [c.content for c in chain] == ["Working."]
    blocking.release.set()
    started = time.monotonic()
    model.close()
    assert time.monotonic() - started < 2.0  # closing did not wait out a running chain


def test_ctrl_c_in_response_text_cancels_the_turn() -> None:
    entered = threading.Event()

    async def slow(messages: list[Message], tools: Any) -> str:
        entered.set()
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    with get_model(FunctionModel(slow)) as model:
        response = model.prompt("hi")
        done: list[str] = []
        response.on_done(lambda r: done.append(r.status))
        interrupt_main_when(entered)
        with pytest.raises(KeyboardInterrupt):
            response.text()
        assert response.status == "cancelled"
        assert done == ["cancelled"]
        assert response.text() == ""


def test_a_real_ctrl_c_in_a_script(tmp_path: Path) -> None:
    script = tmp_path / "script.py"
    script.write_text(
        textwrap.dedent(
            """
            import sys, threading
            import anyio
            from agentrt import get_model, tool
            from agentrt.testing import FunctionModel, ModelTurn, call

            @tool
            async def block() -> str:
                '''Block.'''
                print("started", flush=True)
                try:
                    await anyio.sleep_forever()
                finally:
                    print("tool cancelled", flush=True)
                return "never"

            def script(messages, tools):
                if messages[-1].role == "user":
                    return ModelTurn(tool_calls=[call("block")])
                return "done"

            model = get_model(FunctionModel(script))
            chain = model.chain("go", tools=[block])
            chain.on_done(lambda c: print("on_done", c.status, flush=True))
            try:
                chain.text()
            except KeyboardInterrupt:
                print("interrupted", chain.status, flush=True)
                print("again:", repr(chain.text()), flush=True)
            """
        ),
        encoding="utf-8",
    )
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == "started\n"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=WAIT)
    assert proc.returncode == 0, err
    assert out.splitlines() == [
        "tool cancelled",
        "on_done cancelled",
        "interrupted cancelled",
        "again: ''",
    ]
