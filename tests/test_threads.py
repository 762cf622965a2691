"""Sync tools in worker threads: contextvars, anyio.from_thread, limits, errors, abandonment.

These go through the public chain API with ``FunctionModel``; on asyncio and on trio they
exercise agentrt's own worker pool (``AGENTRT_PORTABLE=1`` gives anyio's): all must behave
the same.
"""

from __future__ import annotations

import contextvars
import os
import threading
from collections.abc import Callable
from typing import Any

import anyio
import anyio.from_thread
import anyio.to_thread
import pytest

import agentrt
from agentrt.testing import FunctionModel, ModelTurn, call

pytestmark = pytest.mark.anyio

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="unset")


class Overlap:
    """Counts how many threads are inside ``with overlap:`` at once, and the most ever."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.running = self.peak = 0

    def __enter__(self) -> None:
        with self._lock:
            self.running += 1
            self.peak = max(self.peak, self.running)

    def __exit__(self, *exc_info: object) -> None:
        with self._lock:
            self.running -= 1


def calls_then_answer(*turns: list[Any]) -> FunctionModel:
    """A model that makes each turn's calls, then answers with the last tool result."""

    def respond(messages: list[agentrt.Message], _tools: Any) -> ModelTurn:
        done = sum(1 for m in messages if m.role == "assistant")
        if done < len(turns):
            return ModelTurn(tool_calls=turns[done])
        return ModelTurn(text=f"last: {messages[-1].content}")

    return FunctionModel(respond)


async def test_sync_tool_sees_contextvars_and_can_call_back_into_the_loop() -> None:
    loop_thread = threading.get_ident()
    seen: dict[str, Any] = {}
    flag = anyio.Event()

    @agentrt.tool
    def probe() -> str:
        """Report where it runs."""
        seen["thread"] = threading.get_ident()
        seen["request_id"] = request_id.get()
        anyio.from_thread.run_sync(flag.set)  # back onto the event loop
        seen["on_loop"] = anyio.from_thread.run_sync(threading.get_ident)
        anyio.from_thread.check_cancelled()  # not cancelled: returns
        request_id.set("changed in the tool")  # must not leak back
        return "probed"

    request_id.set("req-42")
    model = agentrt.get_async_model(calls_then_answer([call("probe")]))
    assert await model.chain("go", tools=[probe]).text() == "last: probed"
    assert flag.is_set()
    assert seen["thread"] != loop_thread
    assert seen["on_loop"] == loop_thread
    assert seen["request_id"] == "req-42"
    assert request_id.get() == "req-42"


async def test_exceptions_from_sync_tools_become_error_results() -> None:
    @agentrt.tool
    def boom() -> str:
        """Fail."""
        raise ValueError("bad input 7")

    @agentrt.tool
    def stop() -> str:
        """Raise StopIteration, which cannot cross a future as itself."""
        raise StopIteration

    model = agentrt.get_async_model(calls_then_answer([call("boom"), call("stop")]))
    chain = model.chain("go", tools=[boom, stop])
    await chain.text()
    first, second = chain.tool_results
    assert first.is_error and "ValueError: bad input 7" in first.content
    assert second.is_error and "StopIteration" in second.content


async def test_many_sync_calls_never_use_more_threads_than_the_limiter() -> None:
    overlap = Overlap()
    release = threading.Event()

    @agentrt.tool
    def work(n: int) -> int:
        """Hold a thread briefly."""
        with overlap:
            release.wait(0.01)
        return n

    turn = [call("work", n=i) for i in range(60)]
    limiter = anyio.CapacityLimiter(7)
    model = agentrt.get_async_model(calls_then_answer(turn, turn))
    before = threading.active_count()
    chain = model.chain("go", tools=[work], limiter=limiter)
    await chain.text()
    assert [r.content for r in chain.tool_results] == [str(i) for i in range(60)] * 2
    assert overlap.peak == 7  # the limit is reached and never passed
    assert limiter.borrowed_tokens == 0
    # idle threads from earlier tests may be reused; at most 7 new ones were needed
    assert threading.active_count() <= before + 7


async def test_abandoned_sync_tool_keeps_its_token_until_its_thread_ends() -> None:
    started = threading.Event()
    release = threading.Event()
    finished = threading.Event()

    @agentrt.tool(timeout=0.05)
    def slow() -> str:
        """Block until released."""
        started.set()
        release.wait(5)
        finished.set()
        return "late"

    limiter = anyio.CapacityLimiter(1)
    model = agentrt.get_async_model(calls_then_answer([call("slow")]))
    chain = model.chain("go", tools=[slow], limiter=limiter)
    await chain.text()
    (result,) = chain.tool_results
    assert result.is_error and "timeout" in result.content
    assert chain.status == "completed"
    assert started.is_set() and not finished.is_set()
    # the thread still runs, so it still counts against the limiter
    assert limiter.borrowed_tokens == 1
    release.set()
    with anyio.fail_after(5):
        async with limiter:  # free again once the abandoned thread is done
            assert finished.is_set()
    assert limiter.borrowed_tokens == 0


async def cancel_a_patient_tool(
    run_sync: Callable[..., Any], check_cancelled: Callable[[], None], cancelled: type
) -> bool:
    """Cancel a chain while its sync tool polls ``check_cancelled``; whether the tool saw it.

    The tool tells the loop it started through ``run_sync`` and, between steps, calls
    ``check_cancelled``, which must raise ``cancelled`` once the chain is cancelled.
    """
    started = anyio.Event()
    saw_cancel = threading.Event()

    @agentrt.tool
    def patient() -> str:
        """Work in steps, checking for cancellation between them."""
        run_sync(started.set)
        for _ in range(500):
            try:
                check_cancelled()
            except cancelled:
                saw_cancel.set()
                raise
            saw_cancel.wait(0.01)
        return "never cancelled"

    model = agentrt.get_async_model(calls_then_answer([call("patient")]))
    chain = model.chain("go", tools=[patient])
    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tg:
            tg.start_soon(chain.text)
            await started.wait()
            scope.cancel()
    assert chain.status == "cancelled"
    seen: bool = await anyio.to_thread.run_sync(saw_cancel.wait, 5)
    return seen


async def test_a_sync_tool_can_see_that_its_chain_was_cancelled() -> None:
    # BaseException: the backend's own cancellation exception.
    assert await cancel_a_patient_tool(
        anyio.from_thread.run_sync, anyio.from_thread.check_cancelled, BaseException
    )


async def test_async_calls_are_not_held_back_by_the_thread_limiter() -> None:
    arrived = 0
    all_async_started = anyio.Event()
    overlap = Overlap()

    @agentrt.tool
    async def gather_point(n: int) -> int:
        """Wait until every async call of the turn has started."""
        nonlocal arrived
        arrived += 1
        if arrived == 5:
            all_async_started.set()
        with anyio.fail_after(5):
            await all_async_started.wait()
        return n

    @agentrt.tool
    def blocking(n: int) -> int:
        """Hold the only thread briefly."""
        with overlap:
            threading.Event().wait(0.01)
        return n

    turn = [call("blocking", n=i) if i % 2 else call("gather_point", n=i) for i in range(10)]
    model = agentrt.get_async_model(calls_then_answer(turn))
    chain = model.chain("go", tools=[gather_point, blocking], limiter=anyio.CapacityLimiter(1))
    await chain.text()
    assert [r.content for r in chain.tool_results] == [str(i) for i in range(10)]
    assert not any(r.is_error for r in chain.tool_results)
    assert overlap.peak == 1


def _chain_in_child(backend: str) -> None:
    """Run in a forked child: a chain with a sync tool must finish, not wait forever."""

    @agentrt.tool(timeout=5)
    def double(n: int) -> int:
        """Double a number."""
        return 2 * n

    async def run() -> str:
        model = agentrt.get_async_model(calls_then_answer([call("double", n=21)]))
        return await model.chain("go", tools=[double]).text()

    async def bounded() -> str:
        with anyio.fail_after(10):  # a pool that lost its threads would wait forever
            return await run()

    os._exit(0 if anyio.run(bounded, backend=backend) == "last: 42" else 1)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_sync_tools_work_in_a_process_forked_after_they_ran(backend: str) -> None:
    @agentrt.tool
    def double(n: int) -> int:
        """Double a number."""
        return 2 * n

    async def warm() -> str:  # as a pre-fork server's master might, before forking
        model = agentrt.get_async_model(calls_then_answer([call("double", n=1)]))
        return await model.chain("go", tools=[double]).text()

    assert anyio.run(warm, backend=backend) == "last: 2"
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            _chain_in_child(backend)
        finally:
            os._exit(2)
    _, status = os.waitpid(pid, 0)  # the child bounds its own run
    assert os.waitstatus_to_exitcode(status) == 0


async def test_a_sync_tool_can_run_a_coroutine_on_the_loop_with_from_thread_run() -> None:
    # Issue 10 point 1: on asyncio with anyio >= 4.12 this raised AttributeError
    # ("'_Cancelled' object has no attribute '_tasks'").
    loop_thread = threading.get_ident()
    seen: dict[str, Any] = {}

    async def on_the_loop(value: str) -> str:
        with anyio.fail_after(5):  # anyio scopes work inside the coroutine
            await anyio.sleep(0.001)
        seen["loop_thread"] = threading.get_ident()
        seen["request_id"] = request_id.get()
        return value.upper()

    @agentrt.tool
    def bridge(word: str) -> str:
        """Hand work to the event loop and back."""
        first = anyio.from_thread.run(on_the_loop, word)
        anyio.from_thread.check_cancelled()
        second = anyio.from_thread.run_sync(str.lower, first)
        return f"{first}/{second}"

    request_id.set("req-7")
    model = agentrt.get_async_model(calls_then_answer([call("bridge", word="hop")]))
    async with model:
        assert await model.chain("go", tools=[bridge]).text() == "last: HOP/hop"
    assert seen["loop_thread"] == loop_thread
    assert seen["request_id"] == "req-7"


async def test_from_thread_run_in_a_cancelled_chain_stops_the_sync_tool(
    anyio_backend_name: str,
) -> None:
    started = anyio.Event()
    outcome: dict[str, BaseException] = {}
    thread_done = threading.Event()

    async def wait_forever() -> None:
        started.set()
        await anyio.sleep_forever()

    @agentrt.tool
    def blocked() -> str:
        """Wait on the loop until cancelled."""
        try:
            anyio.from_thread.run(wait_forever)
        except BaseException as exc:  # the backend's own cancellation exception
            outcome["error"] = exc
            raise
        finally:
            thread_done.set()
        return "never"

    model = agentrt.get_async_model(calls_then_answer([call("blocked")]))
    chain = model.chain("go", tools=[blocked])
    with anyio.fail_after(10):
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(chain.text)
                await started.wait()
                scope.cancel()
    assert chain.status == "cancelled"
    if anyio_backend_name == "asyncio":
        # As in anyio's own asyncio pool, the coroutine the abandoned thread waits on is
        # cancelled with the chain, so the thread ends. (On trio, trio.from_thread.run
        # keeps it running until the run ends: trio's documented behaviour.)
        assert await anyio.to_thread.run_sync(thread_done.wait, 10)
        assert not isinstance(outcome["error"], AttributeError)


PORTABLE_SCRIPT = """
import threading, anyio, anyio.from_thread, agentrt, agentrt._backend as backend
from agentrt.testing import FunctionModel, ModelTurn, call

import sys
from agentrt._backend import trio_threads
assert backend.PORTABLE and not backend.FAST_CONN and not backend.FAST_THREADS
assert not trio_threads.FAST_TRIO_THREADS

async def double(x: int) -> int:
    await anyio.sleep(0.001)
    return 2 * x

@agentrt.tool
def hop(x: int) -> int:
    '''Go back to the loop and return.'''
    assert threading.current_thread().name != "agentrt worker"  # anyio's (or trio's) own
    anyio.from_thread.check_cancelled()
    return anyio.from_thread.run(double, x)

def respond(messages, tools):
    if messages[-1].role == "tool":
        return ModelTurn(text="got " + messages[-1].content)
    return ModelTurn(tool_calls=[call("hop", x=21)])

async def main():
    model = agentrt.get_async_model(FunctionModel(respond))
    async with model:
        print(await model.chain("go", tools=[hop]).text())

anyio.run(main, backend=sys.argv[1])
"""


@pytest.mark.parametrize("loop", ["asyncio", "trio"])
def test_the_portable_path_is_forced_by_agentrt_portable(loop: str) -> None:
    import subprocess
    import sys

    env = {**os.environ, "AGENTRT_PORTABLE": "1"}
    out = subprocess.run(
        [sys.executable, "-c", PORTABLE_SCRIPT, loop],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "got 42"


@pytest.mark.parametrize("anyio_backend", ["trio"], indirect=True)
async def test_on_trio_a_sync_tool_runs_in_agentrt_threads_and_reaches_trio() -> None:
    import trio

    from agentrt._backend import PORTABLE
    from agentrt._backend.trio_threads import FAST_TRIO_THREADS

    # The trio the suite runs on is a tested one: agentrt's hop unless forced portable.
    assert FAST_TRIO_THREADS is not PORTABLE
    seen: dict[str, Any] = {}

    async def on_the_loop() -> str:
        await trio.lowlevel.checkpoint()
        return request_id.get()

    @agentrt.tool
    def native() -> str:
        """Use trio's own bridges from the worker thread."""
        seen["thread"] = threading.current_thread().name
        trio.from_thread.check_cancelled()
        first = trio.from_thread.run(on_the_loop)
        second = trio.from_thread.run_sync(str.upper, first)
        return f"{first}/{second}"

    request_id.set("req-trio")
    model = agentrt.get_async_model(calls_then_answer([call("native")]))
    async with model:
        assert await model.chain("go", tools=[native]).text() == "last: req-trio/REQ-TRIO"
    assert (seen["thread"] == "agentrt worker") is FAST_TRIO_THREADS


@pytest.mark.parametrize("anyio_backend", ["trio"], indirect=True)
async def test_on_trio_a_cancelled_chain_is_seen_by_trio_check_cancelled() -> None:
    import trio

    assert await cancel_a_patient_tool(
        trio.from_thread.run_sync, trio.from_thread.check_cancelled, trio.Cancelled
    )
