"""The benchmark harness still works: tiny runs of its scenarios, checking results, never times.

The figures themselves are for ``python -m benchmarks.run``; this only keeps the harness
from rotting (a renamed API, a broken baseline) between runs.
"""

from __future__ import annotations

from collections.abc import Iterator

import anyio
import pytest

from benchmarks.scenarios import ServerConfig, Spec
from benchmarks.server import ServerProcess
from benchmarks.worker import measure_chains, measure_limiter


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    with ServerProcess(ServerConfig(latency=0.0, tool_turns=2)) as process:
        yield process


@pytest.mark.parametrize("lib", ["agentrt", "raw"])
@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
def test_chain_scenario_runs_every_chain_to_the_expected_answer(
    server: ServerProcess, lib: str, stream: bool
) -> None:
    spec = Spec("smoke", lib, n=3, k=2, seq=2, stream=stream, base_url=server.base_url)
    result = anyio.run(measure_chains, spec)
    assert (result.ok, result.failed, result.error) == (6, 0, None)
    assert result.cpu > 0 and result.wall > 0


def test_limiter_scenario_never_exceeds_the_limiter() -> None:
    params = {"calls": 40, "threads": 4, "sleep": 0.002}
    result = anyio.run(measure_limiter, Spec("smoke", "agentrt", kind="limiter", params=params))
    assert (result.ok, result.failed) == (1, 0)
    assert result.extra["peak_running"] == 4
    assert result.extra["peak_worker_threads"] <= 4
