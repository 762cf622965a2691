"""Cancellation at any point, on asyncio and trio, for every provider.

Whenever a chain is cancelled (during the request, mid-stream, while its tools run, while
a done-callback runs, or by a consumer that stops iterating) the contract is the same:
``chain.status == "cancelled"``, done-callbacks run exactly once, the caller's
cancellation propagates, abandoned sync tools finish in the background, and the
conversation history stays valid, so the next ``conversation.chain()`` sends a request
the provider accepts. Cancellation is triggered by events, never by sleeps.
"""

from __future__ import annotations

import gc
import threading
import time
from collections import Counter
from contextlib import aclosing
from typing import Any

import anyio
import anyio.from_thread
import anyio.lowlevel
import pytest
from _faultkit import (
    TARGETS,
    Target,
    assert_pool_idle,
    client_sockets,
    exchanges,
    run_checked,
    wait_until,
)

import agentrt
from agentrt import AsyncModel, CallbackHandler
from tools.fakeserver.script import Fault, ScriptedToolCall, Turn
from tools.fakeserver.server import FakeServer

pytestmark = pytest.mark.anyio

targets = pytest.mark.parametrize("target", TARGETS, ids=str)

#: A long streamed answer: a cancel requested after its first chunk always finds more reads
#: to come (httpx reads at most 64 KB at a time), so it lands mid-stream.
LONG = "All work and no play makes Jack a dull boy. " * 6000
STREAMED = Turn(text=LONG, text_chunk_chars=1000)
CANCELLED = "Error: the tool call was cancelled before it finished"


class Recorder(CallbackHandler):
    """Counts how often each end-of-life callback of a chain and its turns ran."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def on_turn_start(self, response: Any) -> None:
        response.on_done(lambda r: self.counts.update([f"turn {r.turn} done"]))

    def on_turn_end(self, response: Any) -> None:
        self.counts[f"turn {response.turn} end"] += 1

    def on_chain_end(self, chain: Any) -> None:
        self.counts["chain end"] += 1

    def chain_done(self, chain: Any) -> None:
        self.counts["chain done"] += 1

    def watch(self, chain: agentrt.AsyncChain) -> agentrt.AsyncChain:
        chain.on_done(self.chain_done)
        return chain

    def assert_once(self, turns: int) -> None:
        expected = {"chain end": 1, "chain done": 1}
        for turn in range(turns):
            expected |= {f"turn {turn} end": 1, f"turn {turn} done": 1}
        assert dict(self.counts) == expected


async def consume(chain: agentrt.AsyncChain, outcome: list[str]) -> None:
    """Await the chain, recording whether the caller's cancellation reached us."""
    try:
        await chain.text()
    except anyio.get_cancelled_exc_class():
        outcome.append("cancelled")
        raise
    outcome.append("returned")


async def next_chain_is_well_formed(
    conversation: Any, server: FakeServer, target: Target
) -> list[Any]:
    """Continue the conversation; check the request it sends; return its tool exchanges."""
    sent = len(server.requests)
    server.push(Turn(text="fine"))
    chain = conversation.chain("carry on")
    assert await chain.text() == "fine"
    assert chain.status == "completed"
    return exchanges(target.name, server.requests[sent].json)


# --- during the request ------------------------------------------------------------------


@targets
@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
async def test_cancel_during_the_request(
    fake_server: FakeServer, target: Target, stream: bool
) -> None:
    async def scenario(model: AsyncModel) -> None:
        conversation = model.conversation()
        fake_server.push(Fault(delay=5.0, turn=Turn(text="never seen")))
        recorder = Recorder()
        chain = recorder.watch(conversation.chain("first", callbacks=[recorder]))
        outcome: list[str] = []
        started = time.monotonic()
        async with anyio.create_task_group() as tg:
            tg.start_soon(consume, chain, outcome)
            await wait_until(lambda: len(fake_server.requests) == 1, "the request arrived")
            tg.cancel_scope.cancel()
        assert time.monotonic() - started < 2.0  # did not wait for the answer
        assert outcome == ["cancelled"]
        assert chain.status == "cancelled" and chain.responses[0].status == "cancelled"
        recorder.assert_once(turns=1)
        assert_pool_idle(model)
        assert [m.role for m in conversation.messages] == []  # nothing committed: no turn completed
        assert await next_chain_is_well_formed(conversation, fake_server, target) == []

    await run_checked(fake_server, target.model(fake_server, stream=stream), scenario)


@targets
async def test_deadline_during_the_request(fake_server: FakeServer, target: Target) -> None:
    async def scenario(model: AsyncModel) -> None:
        fake_server.push(Fault(delay=5.0, turn=Turn(text="never seen")))
        chain = model.chain("first")
        with anyio.move_on_after(0.05) as scope:
            await chain.text()
        assert scope.cancelled_caught
        assert chain.status == "cancelled"

    await run_checked(fake_server, target.model(fake_server), scenario)


# --- mid-stream ---------------------------------------------------------------------------


@targets
@pytest.mark.parametrize("how", ["scope-from-on_chunk", "task-group-on-event"])
async def test_cancel_mid_stream(fake_server: FakeServer, target: Target, how: str) -> None:
    async def scenario(model: AsyncModel) -> None:
        conversation = model.conversation()
        fake_server.push(STREAMED)
        recorder = Recorder()
        first_chunk = anyio.Event()
        scope = anyio.CancelScope()

        def on_chunk(chunk: agentrt.StreamChunk) -> None:
            if how == "scope-from-on_chunk":
                scope.cancel()
            first_chunk.set()

        chain = recorder.watch(conversation.chain("first", on_chunk=on_chunk, callbacks=[recorder]))
        outcome: list[str] = []
        if how == "scope-from-on_chunk":
            with scope:
                await consume(chain, outcome)
            assert scope.cancelled_caught
        else:
            async with anyio.create_task_group() as tg:
                tg.start_soon(consume, chain, outcome)
                await first_chunk.wait()
                tg.cancel_scope.cancel()
        assert outcome == ["cancelled"]
        response = chain.responses[0]
        assert 0 < len(response.text_so_far) < len(LONG)
        assert LONG.startswith(response.text_so_far)
        assert chain.status == "cancelled" and response.status == "cancelled"
        recorder.assert_once(turns=1)
        assert_pool_idle(model)  # the half-read response was closed, not left in flight
        assert [m.role for m in conversation.messages] == []  # nothing committed: no turn completed
        assert await next_chain_is_well_formed(conversation, fake_server, target) == []

    await run_checked(fake_server, target.model(fake_server), scenario)
    # Nothing of the cut stream is left suspended: on trio, an async generator collected
    # unfinished (httpx reads bodies through several) warns, and warnings are errors here.
    gc.collect()


# --- while tools run ----------------------------------------------------------------------


class Blockers:
    """Tools that block until released, signalling when each has started."""

    def __init__(self, count: int) -> None:
        self.started = [anyio.Event() for _ in range(count)]
        self.release = threading.Event()
        self.sync_finished: list[int] = []
        self.lock = threading.Lock()

        async def wait_async(n: int) -> str:
            """Block on the event loop."""
            self.started[n].set()
            await anyio.sleep_forever()
            raise AssertionError("unreachable")

        def wait_sync(n: int) -> str:
            """Block in a worker thread."""
            anyio.from_thread.run_sync(self.started[n].set)
            self.release.wait(10)
            with self.lock:
                self.sync_finished.append(n)
            return "finished late"

        async def quick() -> str:
            """Finish at once."""
            return "quick result"

        self.tools = [agentrt.tool(wait_async), agentrt.tool(wait_sync), agentrt.tool(quick)]

    async def all_started(self) -> None:
        for event in self.started:
            await event.wait()


@targets
@pytest.mark.parametrize("kinds", ["async", "sync", "mixed"])
async def test_cancel_while_concurrent_tools_run(
    fake_server: FakeServer, target: Target, kinds: str
) -> None:
    names = {"async": ["wait_async"] * 3, "sync": ["wait_sync"] * 3}.get(
        kinds, ["wait_async", "wait_sync", "wait_async", "wait_sync"]
    )
    calls = [ScriptedToolCall("quick", "{}", "call_quick")] + [
        ScriptedToolCall(name, f'{{"n": {n}}}', f"call_{n}") for n, name in enumerate(names)
    ]
    n_sync = names.count("wait_sync")

    async def scenario(model: AsyncModel) -> None:
        blockers = Blockers(len(names))
        conversation = model.conversation()
        fake_server.push(Turn(text="Working on it.", tool_calls=calls))
        recorder = Recorder()
        quick_done = anyio.Event()

        def after_call(tool: Any, call: Any, result: Any) -> None:
            if call.id == "call_quick":
                quick_done.set()

        chain = recorder.watch(
            conversation.chain(
                "first", tools=blockers.tools, callbacks=[recorder], after_call=after_call
            )
        )
        outcome: list[str] = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(consume, chain, outcome)
            await blockers.all_started()
            await quick_done.wait()
            tg.cancel_scope.cancel()
        assert outcome == ["cancelled"]
        assert chain.status == "cancelled"
        recorder.assert_once(turns=1)

        # Abandon policy: cancellation did not wait for the sync tools' threads...
        assert blockers.sync_finished == []
        # ...which finish in the background once they can, their results discarded.
        blockers.release.set()
        await wait_until(lambda: len(blockers.sync_finished) == n_sync, "sync tools finished")

        # Every call has a result: the real one if it finished, a synthetic one if not.
        history = conversation.messages
        assert [m.role for m in history] == ["user", "assistant"] + ["tool"] * len(calls)
        assert [c.id for c in history[1].tool_calls] == [c.id for c in calls]
        results = {m.tool_call_id: (m.content, m.is_error) for m in history[2:]}
        assert results.pop("call_quick") == ("quick result", False)
        assert set(results.values()) == {(CANCELLED, True)}
        assert [r.tool_call_id for r in chain.tool_results] == [c.id for c in calls]

        (exchange,) = await next_chain_is_well_formed(conversation, fake_server, target)
        assert exchange.calls == [c.id for c in calls]
        sent = {key: (content, error) for key, content, error in exchange.results}
        assert sent.pop("call_quick") == ("quick result", False)
        assert set(sent.values()) == {(CANCELLED, True)}
        assert_pool_idle(model)

    await run_checked(fake_server, target.model(fake_server), scenario)


# --- while a done-callback runs -----------------------------------------------------------


@targets
async def test_cancel_during_a_turns_done_callback(fake_server: FakeServer, target: Target) -> None:
    """A turn's async on_done is shielded: it completes, then the chain is cancelled."""

    async def scenario(model: AsyncModel) -> None:
        blockers = Blockers(1)
        conversation = model.conversation()
        fake_server.push(Turn(tool_calls=[ScriptedToolCall("wait_sync", '{"n": 0}', "call_0")]))
        in_callback, release = anyio.Event(), anyio.Event()
        finished: list[str] = []

        class Slow(CallbackHandler):
            def on_turn_start(self, response: Any) -> None:
                @response.on_done
                async def slow(response: Any) -> None:
                    in_callback.set()
                    await release.wait()
                    await anyio.lowlevel.checkpoint()  # still not cancelled: shielded
                    finished.append(response.status)

        recorder = Recorder()
        chain = recorder.watch(
            conversation.chain("first", tools=blockers.tools, callbacks=[Slow(), recorder])
        )
        scope = anyio.CancelScope()
        outcome: list[str] = []

        async def run() -> None:
            with scope:
                await consume(chain, outcome)

        async with anyio.create_task_group() as tg:
            tg.start_soon(run)
            await in_callback.wait()
            scope.cancel()
            for _ in range(10):  # let the cancellation reach the callback, if it could
                await anyio.lowlevel.checkpoint()
            assert finished == []
            release.set()
        assert finished == ["completed"]  # ran to completion, exactly once
        assert scope.cancelled_caught and outcome == ["cancelled"]
        assert chain.status == "cancelled"
        recorder.assert_once(turns=1)
        assert blockers.sync_finished == []  # the tool never started
        history = conversation.messages
        assert [(m.role, m.content) for m in history[2:]] == [("tool", CANCELLED)]
        (exchange,) = await next_chain_is_well_formed(conversation, fake_server, target)
        assert [(content, error) for _, content, error in exchange.results] == [(CANCELLED, True)]

    await run_checked(fake_server, target.model(fake_server), scenario)


@targets
async def test_cancel_during_the_chains_done_callback(
    fake_server: FakeServer, target: Target
) -> None:
    """The chain's async on_done is shielded: it completes once, whatever the caller does."""

    async def scenario(model: AsyncModel) -> None:
        fake_server.push(Turn(text="answer"))
        in_callback, release = anyio.Event(), anyio.Event()
        finished: list[str] = []
        recorder = Recorder()
        chain = recorder.watch(model.chain("first", callbacks=[recorder]))

        @chain.on_done
        async def slow(chain: Any) -> None:
            in_callback.set()
            await release.wait()
            await anyio.lowlevel.checkpoint()
            finished.append(chain.status)

        scope = anyio.CancelScope()

        async def run() -> None:
            with scope:
                await chain.text()

        async with anyio.create_task_group() as tg:
            tg.start_soon(run)
            await in_callback.wait()
            scope.cancel()
            for _ in range(10):
                await anyio.lowlevel.checkpoint()
            assert finished == []
            release.set()
        assert finished == ["completed"]
        assert scope.cancel_called
        recorder.assert_once(turns=1)

    await run_checked(fake_server, target.model(fake_server), scenario)


# --- a consumer that stops early ----------------------------------------------------------


@targets
async def test_break_out_of_iteration_with_aclosing(
    fake_server: FakeServer, target: Target
) -> None:
    async def scenario(model: AsyncModel) -> None:
        conversation = model.conversation()
        fake_server.push(STREAMED)
        recorder = Recorder()
        chain = recorder.watch(conversation.chain("first", callbacks=[recorder]))
        async with aclosing(aiter(chain)) as chunks:
            async for chunk in chunks:
                assert chunk.content
                break
        # Closed at once: no cancellation error, just a chain that ended early.
        assert chain.status == "cancelled" and chain.error is None
        assert chain.responses[0].status == "cancelled"
        recorder.assert_once(turns=1)
        assert_pool_idle(model)
        assert [m.role for m in conversation.messages] == []  # nothing committed: no turn completed
        assert await next_chain_is_well_formed(conversation, fake_server, target) == []

    await run_checked(fake_server, target.model(fake_server), scenario)
    gc.collect()  # nothing left suspended, see test_cancel_mid_stream


@targets
async def test_plain_break_out_of_iteration(
    fake_server: FakeServer, target: Target, anyio_backend: str
) -> None:
    """Without aclosing, the chain ends when its iterator is garbage collected.

    asyncio closes it quietly; trio closes it too but warns (``ResourceWarning``), as it
    does for every async generator abandoned this way: use ``aclosing`` there.
    """

    async def scenario(model: AsyncModel) -> None:
        conversation = model.conversation()
        fake_server.push(STREAMED)
        recorder = Recorder()
        chain = recorder.watch(conversation.chain("first", callbacks=[recorder]))

        async def stop_early() -> None:
            async for _chunk in chain:
                break

        if anyio_backend == "trio":
            with pytest.warns(ResourceWarning, match="aclosing"):
                await stop_early()
        else:
            await stop_early()
        await wait_until(lambda: chain.status != "running", "the abandoned chain was closed")
        assert chain.status == "cancelled"
        await wait_until(lambda: recorder.counts["chain done"] == 1, "done callbacks ran")
        recorder.assert_once(turns=1)
        assert_pool_idle(model)
        assert await next_chain_is_well_formed(conversation, fake_server, target) == []

    await run_checked(fake_server, target.model(fake_server), scenario)


@targets
async def test_many_chains_cancelled_while_connecting_leave_no_socket_open(
    fake_server: FakeServer, target: Target
) -> None:
    """Issue 10 point 3: cancelling 50 chains ~20 ms in leaked sockets on asyncio.

    The connection attempts of ``happy_eyeballs_delay`` (CPython's staggered race) lost
    the socket that won the race when the caller was cancelled; it stayed open until
    garbage collection (a ``ResourceWarning``, an error under pytest).
    """
    fake_server.latency = 0.05
    port = int(target.base_url(fake_server).rsplit(":", 1)[1].split("/")[0])
    for _round in range(3):
        model = target.model(fake_server)
        async with model:
            with anyio.move_on_after(0.02):
                async with anyio.create_task_group() as tg:
                    for n in range(50):
                        tg.start_soon(model.chain(f"question {n}").text)
        # The model is closed: its pool's sockets are closed; any other one leaked.
        assert client_sockets(port) in (0, None)
    gc.collect()  # a leaked socket would warn here (ResourceWarning is an error)
