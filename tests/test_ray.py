"""Ray batches on a real local 2-CPU cluster bound to 127.0.0.1, over ``tools/fakeserver``.

The cluster starts once for the module (about 10 s); the workers reach the fake server on
127.0.0.1. The API key reaches them through their environment only.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import agentrt
import agentrt.ray as agentrt_ray
from agentrt import BatchResult, RateLimit, UsageError
from agentrt.ray import ChainSpec
from agentrt.toolbox import bundled_tools
from tests.test_batch import expected_failure, observed_rpm, responder_for
from tools.fakeserver.script import Turn
from tools.fakeserver.server import FakeServer

pytestmark = pytest.mark.anyio

KEY = "sk-ray-cluster-env-key-0123456789"
CALCULATOR = functools.partial(bundled_tools, ["calculator"])


@pytest.fixture(scope="module")
def ray() -> Iterator[Any]:
    """The ray module, connected to a local cluster on 127.0.0.1.

    Not imported at the top: ray reads RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER when imported,
    and start_local sets it first.
    """
    # The workers inherit the environment the cluster starts with: the key is set for
    # the start only, so no other test sees it.
    saved = os.environ.get("OPENAI_API_KEY")
    os.environ["OPENAI_API_KEY"] = KEY
    try:
        agentrt_ray.start_local(num_cpus=2)
    finally:
        if saved is None:
            del os.environ["OPENAI_API_KEY"]
        else:
            os.environ["OPENAI_API_KEY"] = saved
    import ray

    # Every listener of the cluster is bound to the loopback address.
    assert ray.util.get_node_ip_address() == "127.0.0.1"
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def server() -> Iterator[FakeServer]:
    with FakeServer() as server:
        yield server


@pytest.fixture
def fake(server: FakeServer, ray: Any) -> Iterator[FakeServer]:
    server.reset()
    server.responder = responder_for("calculator")
    yield server
    server.reset()


def spec_for(server: FakeServer, **kwargs: Any) -> ChainSpec:
    return ChainSpec(
        "openai:fake",
        options={"base_url": server.openai_base_url, "max_retries": 0},
        tools_factory=CALCULATOR,
        **kwargs,
    )


@pytest.mark.timeout(240)
def test_two_thousand_chains_two_actors_one_killed_mid_run(fake: FakeServer, ray: Any) -> None:
    fake.latency = 0.01  # so that the killed worker has chains in flight
    n = 2_000
    run = agentrt_ray.run_batch(spec_for(fake), [f"item {i}" for i in range(n)], actors=2)
    records: list[BatchResult] = []
    killed: list[Any] = []
    for record in run:
        records.append(record)
        if len(records) == 300:
            assert len(run.actors) == 2
            killed.append(run.actors[0])
            ray.kill(killed[0])
    # Every input, in order, exactly once.
    assert [r.index for r in records] == list(range(n))
    resubmitted = [r for r in records if r.attempt == 2]
    assert resubmitted, "the killed worker had chains in flight"
    assert all(r.attempt in (1, 2) for r in records)
    for record in records:
        kind = expected_failure(record.index)
        if kind is None:
            assert record.status == "completed", record
            assert record.text == f"answer {record.index}" and record.turns == 2
            assert record.input == f"item {record.index}"
        else:
            assert record.status == "failed" and record.error_type == kind, record
    summary = run.summary
    assert summary.completed + summary.failed == n
    assert summary.failed == sum(1 for i in range(n) if expected_failure(i))
    assert killed[0] not in run.actors
    # The key came from the workers' environment...
    keys = {r.headers.get("authorization") for r in fake.requests}
    assert keys == {f"Bearer {KEY}"}


def test_keys_are_never_in_the_object_store(fake: FakeServer, ray: Any) -> None:
    spec = spec_for(fake)
    blob = ray.cloudpickle.dumps(spec)
    assert KEY.encode() not in blob and b"sk-" not in blob
    # ... and a spec cannot carry one.
    with pytest.raises(UsageError, match="must not hold credentials"):
        ChainSpec("openai:fake", options={"api_key": KEY})
    # What travels per item holds no key either: the worker's record.
    records = list(agentrt_ray.run_batch(spec, ["item 1", "item 2"], actors=1))
    assert all(KEY.encode() not in ray.cloudpickle.dumps(r) for r in records)


async def test_async_driver_unordered_with_resume(fake: FakeServer, tmp_path: Path) -> None:
    path = tmp_path / "ray.jsonl"
    items = [f"item {i}" for i in range(120)]
    spec = spec_for(fake)
    first = []
    async with agentrt_ray.run_batch(
        spec, items, actors=2, per_actor=8, ordered=False, results_path=path
    ) as run:
        async for record in run:
            first.append(record)
            if len(first) == 50:
                break
    on_disk = [BatchResult.from_json(line) for line in path.read_text().splitlines()]
    assert len(on_disk) >= 50
    completed = {r.index for r in on_disk if r.status == "completed"}

    run = agentrt_ray.run_batch(spec, items, actors=2, per_actor=8, results_path=path)
    again = [r async for r in run]
    assert [r.index for r in again] == list(range(120))
    assert {r.index for r in again if r.resumed} == completed
    assert run.summary.resumed == len(completed)


def test_rate_limit_is_shared_by_the_workers(fake: FakeServer) -> None:
    fake.responder = lambda wire, body: Turn(text="ok")
    rpm = 3_000
    n = 121
    run = agentrt_ray.run_batch(
        spec_for(fake),
        [f"item {i}" for i in range(n)],
        actors=2,
        per_actor=8,
        rate_limit=RateLimit(requests_per_minute=rpm),
    )
    assert all(r.status == "completed" for r in run)
    times = sorted(r.time for r in fake.requests)
    assert len(times) == n
    observed = observed_rpm(times)
    assert 0.95 * rpm <= observed <= 1.05 * rpm, observed


def _not_importable_by_the_workers() -> list[Any]:
    return []


def test_bad_specs_fail_clearly(fake: FakeServer) -> None:
    with pytest.raises(agentrt.UnknownModelError):
        ChainSpec("nosuch:model")
    with pytest.raises(UsageError, match="max_turns"):
        ChainSpec("offline", max_turns=0)
    lock = threading.Lock()
    unpicklable = ChainSpec("offline", tools_factory=lambda: [lock])
    with pytest.raises(UsageError, match="must pickle"):
        agentrt_ray.run_batch(unpicklable, ["a"])
    with pytest.raises(UsageError, match="per_actor= must be a positive integer"):
        agentrt_ray.run_batch(ChainSpec("offline"), ["a"], per_actor=0)
    with pytest.raises(UsageError, match="max_attempts"):
        agentrt_ray.run_batch(ChainSpec("offline"), ["a"], max_attempts=0)
    with pytest.raises(UsageError, match="takes a ChainSpec"):
        agentrt_ray.run_batch("offline", ["a"])  # type: ignore[arg-type]
    broken = ChainSpec("offline", tools_factory=functools.partial(bundled_tools, ["nosuch"]))
    with pytest.raises(UsageError, match="no bundled tool named 'nosuch'"):
        list(agentrt_ray.run_batch(broken, ["a"], actors=1))
    # This test module is not importable inside the workers.
    local = ChainSpec("offline", tools_factory=_not_importable_by_the_workers)
    with pytest.raises(UsageError, match="could not start"):
        list(agentrt_ray.run_batch(local, ["a"], actors=1))


def test_malformed_items_get_failed_records_on_the_driver(fake: FakeServer) -> None:
    records = list(
        agentrt_ray.run_batch(
            ChainSpec("offline"), ["ok", {"nope": 1}, {"prompt": "x", "id": "k"}], actors=1
        )
    )
    assert [r.status for r in records] == ["completed", "failed", "completed"]
    assert records[1].error_type == "UsageError" and records[2].input == "k"


def test_cli_batch_on_a_local_ray_cluster(tmp_path: Path) -> None:
    """``agentrt batch --ray local`` starts its own cluster (in a subprocess) and resumes."""
    import subprocess
    import sys

    source = tmp_path / "in.txt"
    source.write_text("".join(f'compute {{"expression": "{i}*2"}}\n' for i in range(30)))
    out = tmp_path / "out.jsonl"
    command = [
        sys.executable, "-m", "agentrt", "batch", str(source), "-o", str(out),
        "-T", "calculator", "--ray", "local", "--concurrency", "4", "--no-progress",
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    records = [BatchResult.from_json(line) for line in out.read_text().splitlines()]
    assert [r.index for r in records] == list(range(30))
    assert records[7].text is not None and "returned 14" in records[7].text
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "30 from an earlier run" in again.stderr
