"""Batch throughput: ``run_batch`` beside a plain task group, and Ray beside local.

Every chain is the same: one tool turn (``add``) then an answer, against the fake provider
server in its own process with ``--latency`` seconds before each answer (2 requests per
chain). Measured, asyncio, medians of ``--repeats`` interleaved runs:

- ``task group``: the hand-written baseline, ``concurrency`` chains at once through a
  semaphore, each ``await model.chain(...).text()``, nothing recorded;
- ``run_batch``: ``agentrt.run_batch`` at the same concurrency, every record iterated;
- ``run_batch + file``: the same with ``results_path`` (one fsync per ready group);
- ``ray``: ``agentrt.ray.run_batch`` with 2 actors x ``concurrency / 2`` chains on a
  local 2-CPU cluster (started once, not timed; the actors' start is timed).

Wall time and the driver process's CPU time are reported: on a shared machine the CPU
per chain is the steadier figure of agentrt's own cost.

Run: ``python -m benchmarks.batch_bench [--n 10000] [--concurrency 1000] [--latency 0.1]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio

import agentrt
from agentrt import run_batch

from .scenarios import ServerConfig
from .server import ROOT, ServerProcess


@agentrt.tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def bench_tools() -> list[Any]:
    """The tools of every chain (also the Ray workers' ``tools_factory``)."""
    return [add]


def model_for(base_url: str) -> agentrt.AsyncModel:
    return agentrt.get_async_model("openai:bench", base_url=base_url, api_key="sk-bench")


def prompts(n: int) -> list[str]:
    return [f"chain {i}" for i in range(n)]


async def task_group(base_url: str, n: int, concurrency: int) -> float:
    model = model_for(base_url)
    limit = anyio.Semaphore(concurrency)

    async def one(prompt: str) -> None:
        try:
            await model.chain(prompt, tools=[add]).text()
        finally:
            limit.release()

    async with model:
        started = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for prompt in prompts(n):
                await limit.acquire()
                tg.start_soon(one, prompt)
        return time.perf_counter() - started


async def batch(base_url: str, n: int, concurrency: int, *, results: bool = False) -> float:
    model = model_for(base_url)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "out.jsonl" if results else None
        async with model:
            started = time.perf_counter()
            count = 0
            async for record in run_batch(
                model, prompts(n), tools=[add], concurrency=concurrency, results_path=path
            ):
                assert record.status == "completed", record
                count += 1
            elapsed = time.perf_counter() - started
    assert count == n
    return elapsed


def ray_batch(base_url: str, n: int, concurrency: int) -> float:
    import agentrt.ray as agentrt_ray

    spec = agentrt_ray.ChainSpec(
        "openai:bench", options={"base_url": base_url}, tools_factory=bench_tools
    )
    started = time.perf_counter()
    count = 0
    run = agentrt_ray.run_batch(
        spec,
        prompts(n),
        actors=2,
        per_actor=max(1, concurrency // 2),
        runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}},
    )
    for record in run:
        assert record.status == "completed", record
        count += 1
    assert count == n
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.batch_bench")
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=1_000)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-ray", action="store_true")
    args = parser.parse_args(argv)
    n, concurrency = args.n, args.concurrency
    ideal = 2 * args.latency * -(-n // concurrency)
    runs: dict[str, Callable[[str], float]] = {
        "task group": lambda url: anyio.run(task_group, url, n, concurrency),
        "run_batch": lambda url: anyio.run(batch, url, n, concurrency),
        "run_batch + file": lambda url: anyio.run(lambda: batch(url, n, concurrency, results=True)),
    }
    if not args.no_ray:
        import agentrt.ray as agentrt_ray

        os.environ.setdefault("OPENAI_API_KEY", "sk-bench")
        agentrt_ray.start_local(num_cpus=2)
        runs["ray (2 actors)"] = lambda url: ray_batch(url, n, concurrency)
    times: dict[str, list[float]] = {name: [] for name in runs}
    cpu: dict[str, list[float]] = {name: [] for name in runs}
    with ServerProcess(ServerConfig(latency=args.latency, tool_turns=1)) as server:
        runs["task group"](server.base_url)  # warm-up: imports, connections
        for _ in range(args.repeats):
            for name, run in runs.items():
                before = time.process_time()
                times[name].append(run(server.base_url))
                cpu[name].append(time.process_time() - before)
    print(
        f"{n} chains (1 tool turn, 2 requests each), concurrency {concurrency}, "
        f"latency {args.latency * 1000:.0f} ms, ideal {ideal:.2f} s; "
        f"medians of {args.repeats}"
    )
    base = statistics.median(times["task group"])
    base_cpu = statistics.median(cpu["task group"])
    local = statistics.median(times["run_batch"])
    for name, values in times.items():
        median = statistics.median(values)
        spread = ", ".join(f"{v:.2f}" for v in values)
        cpu_us = statistics.median(cpu[name]) / n * 1e6
        cpu_note = (
            f"driver CPU {cpu_us:5.0f} us/chain "
            f"({(statistics.median(cpu[name]) / base_cpu - 1) * 100:+5.1f}%)"
            if not name.startswith("ray")
            else "driver CPU (workers not counted)"
        )
        print(
            f"  {name:<18} {median:6.2f} s  {n / median:6.0f} chains/s  "
            f"{(median / base - 1) * 100:+6.1f}% wall  {cpu_note}   ({spread})"
        )
    if "ray (2 actors)" in times:
        ray_median = statistics.median(times["ray (2 actors)"])
        print(
            f"  Ray adds {(ray_median - local) / n * 1000:.3f} ms per chain over local "
            "run_batch (wall time, actors' start included)"
        )


if __name__ == "__main__":
    main()
