"""agentrt's own httpx transport: pool reuse and the connection limit."""

from __future__ import annotations

import time
from collections.abc import Iterator

import anyio
import httpx
import pytest

from agentrt._transport import LeanTransport
from tools.fakeserver.script import Turn
from tools.fakeserver.server import FakeServer

pytestmark = pytest.mark.anyio

BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def slow_server() -> Iterator[FakeServer]:
    server = FakeServer(latency=0.1)
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def test_connections_are_reused(fake_server: FakeServer) -> None:
    transport = LeanTransport()
    async with httpx.AsyncClient(transport=transport) as client:
        for _ in range(5):
            fake_server.push(Turn(text="ok"))
            response = await client.post(
                f"{fake_server.openai_base_url}/chat/completions", json=BODY
            )
            assert response.json()["choices"][0]["message"]["content"] == "ok"
        assert transport.connections_in_use == 0
        assert transport.idle_connections == 1


async def test_max_connections_makes_requests_wait(slow_server: FakeServer) -> None:
    transport = LeanTransport(max_connections=2)
    peak = 0
    finished = anyio.Event()

    async def watch() -> None:
        nonlocal peak
        while not finished.is_set():
            peak = max(peak, transport.connections_in_use)
            await anyio.sleep(0.005)

    async with httpx.AsyncClient(transport=transport) as client:

        async def one() -> None:
            response = await client.post(
                f"{slow_server.openai_base_url}/chat/completions", json=BODY
            )
            assert response.status_code == 200

        start = time.perf_counter()
        async with anyio.create_task_group() as outer:
            outer.start_soon(watch)
            async with anyio.create_task_group() as tg:
                for _ in range(6):
                    tg.start_soon(one)
            finished.set()
        elapsed = time.perf_counter() - start
    assert peak == 2
    assert elapsed >= 0.25  # three waves of two, not one wave of six
    assert transport.connections_in_use == 0


async def test_pool_timeout_when_every_connection_stays_busy(slow_server: FakeServer) -> None:
    transport = LeanTransport(max_connections=1)
    timeout = httpx.Timeout(5.0, pool=0.02)
    async with httpx.AsyncClient(transport=transport, timeout=timeout) as client:
        url = f"{slow_server.openai_base_url}/chat/completions"
        results: list[object] = []

        async def one() -> None:
            try:
                results.append((await client.post(url, json=BODY)).status_code)
            except httpx.PoolTimeout as exc:
                results.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(one)
            tg.start_soon(one)
    assert 200 in results
    assert any(isinstance(r, httpx.PoolTimeout) for r in results)
    assert transport.connections_in_use == 0


def test_bad_limit_is_refused() -> None:
    with pytest.raises(ValueError, match="max_connections"):
        LeanTransport(max_connections=0)


@pytest.mark.parametrize("runner", ["asyncio", "trio"])
def test_one_model_across_several_event_loop_runs(fake_server: FakeServer, runner: str) -> None:
    """Pooled connections of a finished run are not reused broken: each run gets answers."""
    import agentrt

    model = agentrt.get_async_model(
        "openai:gpt-x", api_key="sk-test", base_url=fake_server.openai_base_url
    )

    async def ask(n: int) -> str:
        fake_server.push(Turn(text=f"answer {n}"))
        return await model.prompt(f"question {n}").text()

    answers = [anyio.run(ask, n, backend=runner) for n in range(3)]
    assert answers == ["answer 0", "answer 1", "answer 2"]
    anyio.run(model.aclose, backend=runner)
