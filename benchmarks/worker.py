"""One measurement in a fresh process: ``python -m benchmarks.worker '<spec json>'``.

Prints one line ``RESULT <json>`` (a :class:`~benchmarks.scenarios.Result`). CPU is the
process's user+sys time (every thread) over the measured part only: imports, client
construction and one warm-up chain come before it. Peak RSS is the process maximum.
"""

from __future__ import annotations

import dataclasses
import gc
import importlib
import json
import resource
import sys
import threading
import time
import traceback
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Protocol

import anyio

from .scenarios import Result, Spec, Unavailable, expected_answer

RESULT_MARK = "RESULT "

CLIENT_MODULES = {
    "agentrt": "benchmarks.agentrt_client",
    "raw": "benchmarks.baseline_raw",
    "pydantic-ai": "benchmarks.peers.pydantic_ai_peer",
    "openai-agents": "benchmarks.peers.openai_agents_peer",
    "langchain": "benchmarks.peers.langchain_peer",
    "llm": "benchmarks.peers.llm_peer",
}


class ChainClient(Protocol):
    async def run_chain(self) -> str: ...

    async def aclose(self) -> None: ...


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _opener(lib: str) -> Callable[[Spec], Awaitable[ChainClient]]:
    try:
        module = importlib.import_module(CLIENT_MODULES[lib])
    except KeyError:
        raise Unavailable(f"unknown library {lib!r}") from None
    opener: Callable[[Spec], Awaitable[ChainClient]] = module.open_client
    return opener


class GCTimer:
    """Time spent in the cyclic garbage collector while the block runs (all generations)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.collections = [0, 0, 0]
        self._started = 0.0

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._started
            self.collections[info["generation"]] += 1

    def __enter__(self) -> GCTimer:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc_info: object) -> None:
        gc.callbacks.remove(self._callback)

    def figures(self) -> dict[str, Any]:
        return {"gc_s": self.seconds, "gc_collections": self.collections}


# --- chains --------------------------------------------------------------------------------


async def measure_chains(
    spec: Spec, around: Callable[[], AbstractContextManager[object]] = nullcontext
) -> Result:
    """Run ``spec.n`` concurrent slots of ``spec.seq`` chains each; ``around`` wraps the
    measured part (the profiler uses it to skip imports and the warm-up)."""
    client = await _opener(spec.lib)(spec)
    result = Result()
    expected = expected_answer(spec.k)
    try:
        await client.run_chain()  # warm-up: lazy imports, first connection
        variant = getattr(client, "variant", None)
        if variant:
            result.extra["variant"] = variant

        async def slot() -> None:
            for _ in range(spec.seq):
                try:
                    text = await client.run_chain()
                except Exception as exc:
                    result.failed += 1
                    if result.error is None:
                        result.error = f"{type(exc).__name__}: {exc}"[:300]
                    continue
                if expected in text:
                    result.ok += 1
                else:
                    result.failed += 1
                    if result.error is None:
                        result.error = f"unexpected answer {text[:100]!r}"

        threshold = spec.params.get("gc_threshold0")
        if threshold:  # what a service could set: fewer, larger gen-0 collections
            gc.set_threshold(int(threshold), *gc.get_threshold()[1:])
        with around(), GCTimer() as gc_timer:
            cpu0, t0 = cpu_seconds(), time.perf_counter()
            async with anyio.create_task_group() as tg:
                for _ in range(spec.n):
                    tg.start_soon(slot)
            result.wall = time.perf_counter() - t0
            result.cpu = cpu_seconds() - cpu0
        result.extra.update(gc_timer.figures())
    finally:
        await client.aclose()
    return result


# --- e: many sync tool calls through one limiter ------------------------------------------


async def measure_limiter(spec: Spec) -> Result:
    from agentrt.testing import FunctionModel, ModelTurn, call

    calls = int(spec.params["calls"])
    threads = int(spec.params["threads"])
    sleep = float(spec.params["sleep"])
    lock = threading.Lock()
    state = {"running": 0, "peak_running": 0, "peak_threads": 0, "first": 0.0, "last": 0.0}

    def nap() -> str:
        """Sleep a little, like a blocking I/O call."""
        now = time.perf_counter()
        with lock:
            state["running"] += 1
            state["peak_running"] = max(state["peak_running"], state["running"])
            state["peak_threads"] = max(state["peak_threads"], threading.active_count())
            if not state["first"]:
                state["first"] = now
        time.sleep(sleep)
        with lock:
            state["running"] -= 1
            state["last"] = time.perf_counter()
        return "ok"

    def script(messages: list[Any], _tools: list[Any]) -> Any:
        if messages[-1].role == "user":
            return ModelTurn(tool_calls=[call("nap", id=f"c{i}") for i in range(calls)])
        return expected_answer(0)

    model = FunctionModel(script)
    result = Result()
    base_threads = threading.active_count()
    cpu0, t0 = cpu_seconds(), time.perf_counter()
    chain = model.chain("go", tools=[nap], limiter=anyio.CapacityLimiter(threads))
    text = await chain.text()
    ended = time.perf_counter()
    result.wall = ended - t0
    result.cpu = cpu_seconds() - cpu0
    ok = (
        text == expected_answer(0)
        and all(not r.is_error for r in chain.tool_results)
        and len(chain.tool_results) == calls
    )
    result.ok, result.failed = (1, 0) if ok else (0, 1)
    result.extra.update(
        calls=calls,
        limiter=threads,
        ideal=calls / threads * sleep,
        tool_phase=state["last"] - state["first"],
        before_first_tool=state["first"] - t0,
        after_last_tool=ended - state["last"],
        peak_running=state["peak_running"],
        base_threads=base_threads,
        peak_threads=state["peak_threads"],
        peak_worker_threads=state["peak_threads"] - base_threads,
    )
    return result


# --- f: a long streamed answer --------------------------------------------------------------


async def measure_stream(spec: Spec) -> Result:
    chunks = int(spec.params["chunks"])
    prompts = int(spec.params["prompts"])
    if spec.lib == "agentrt":
        first = _agentrt_stream_prompt(spec)
    elif spec.lib == "raw":
        first = _raw_stream_prompt(spec)
    else:
        raise Unavailable(f"no streaming scenario for {spec.lib}")
    once, aclose = await first
    result = Result()
    try:
        await once()  # warm-up
        ttfc: list[float] = []
        cpu0, t0 = cpu_seconds(), time.perf_counter()
        for _ in range(prompts):
            got, first_at = await once()
            if got == chunks:
                result.ok += 1
                ttfc.append(first_at)
            else:
                result.failed += 1
                result.error = f"got {got} chunks, expected {chunks}"
        result.wall = time.perf_counter() - t0
        result.cpu = cpu_seconds() - cpu0
    finally:
        await aclose()
    ttfc.sort()
    result.extra.update(
        chunks_per_answer=chunks,
        answers=prompts,
        cpu_us_per_chunk=result.cpu / max(1, prompts * chunks) * 1e6,
        ttfc_median_ms=ttfc[len(ttfc) // 2] * 1000 if ttfc else None,
        ttfc_min_ms=ttfc[0] * 1000 if ttfc else None,
    )
    return result


StreamOnce = Callable[[], Awaitable[tuple[int, float]]]


async def _agentrt_stream_prompt(spec: Spec) -> tuple[StreamOnce, Callable[[], Awaitable[None]]]:
    from .agentrt_client import http_client

    client = http_client(spec.variant)
    import agentrt

    model = agentrt.get_async_model(
        "openai:bench",
        base_url=spec.base_url,
        api_key="sk-bench",
        **({"http_client": client} if client is not None else {}),
    )

    async def once() -> tuple[int, float]:
        t0 = time.perf_counter()
        first = 0.0
        got = 0
        async for chunk in model.prompt("Say a lot."):
            if chunk.content:
                if not got:
                    first = time.perf_counter() - t0
                got += 1
        return got, first

    async def aclose() -> None:
        await model.aclose()
        if client is not None:
            await client.aclose()

    return once, aclose


async def _raw_stream_prompt(spec: Spec) -> tuple[StreamOnce, Callable[[], Awaitable[None]]]:
    from .baseline_raw import RawClient

    client = RawClient(spec.base_url, stream=True)

    async def once() -> tuple[int, float]:
        t0 = time.perf_counter()
        outcome = await client.turn([{"role": "user", "content": "Say a lot."}], tools=False)
        first = (outcome.first_chunk_at or t0) - t0
        return outcome.chunks, first

    return once, client.aclose


# --- entry point ----------------------------------------------------------------------------

MEASURES = {"chains": measure_chains, "limiter": measure_limiter, "stream": measure_stream}


def run(spec: Spec) -> Result:
    try:
        result = anyio.run(MEASURES[spec.kind], spec, backend=spec.backend)
    except Unavailable as exc:
        return Result(skipped=str(exc))
    except Exception as exc:
        traceback.print_exc()
        return Result(failed=spec.n * spec.seq, error=f"{type(exc).__name__}: {exc}"[:300])
    result.peak_rss_mb = peak_rss_mb()
    return result


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    spec = Spec.from_json(args[0])
    result = run(spec)
    print(RESULT_MARK + json.dumps(dataclasses.asdict(result)), flush=True)


if __name__ == "__main__":
    main()
