"""Profile agentrt's per-turn path against the fake server.

``python -m benchmarks.profile --n 1 --seq 200`` (or ``--n 1000 --k 2 --latency 0.1``)
runs the chain scenario in this process and profiles only the measured part (after imports
and a warm-up chain) with cProfile (default) or pyinstrument. cProfile output ends with the
time per turn split by package (agentrt, httpx, httpcore, h11, anyio, asyncio, ...): absolute
figures are inflated by the profiler, the split is what to read. ``--lib raw`` profiles the
raw-socket floor the same way.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import anyio

from .scenarios import ServerConfig, Spec
from .server import ServerProcess
from .worker import measure_chains

#: (substring of a profiled file name, group) in match order.
GROUPS = [
    ("/agentrt/", "agentrt"),
    ("/benchmarks/", "benchmarks harness"),
    ("/httpx/", "httpx"),
    ("/httpx2/", "httpx"),
    ("/httpcore/", "httpcore"),
    ("/httpcore2/", "httpcore"),
    ("/h11/", "h11"),
    ("/anyio/", "anyio"),
    ("/sniffio/", "anyio"),
    ("/trio/", "trio"),
    ("/tenacity/", "tenacity"),
    ("/pydantic", "pydantic"),
    ("/aiohttp/", "aiohttp"),
    ("/httpx_aiohttp/", "aiohttp"),
    ("/asyncio/", "asyncio"),
    ("/json/", "json"),
    ("/contextlib.py", "contextlib"),
    ("/selectors.py", "asyncio"),
    ("/socket.py", "socket"),
]


def group_of(filename: str, function: str) -> str:
    for needle, group in GROUPS:
        if needle in filename:
            return group
    if filename == "~":
        if "epoll" in function or "poll" in function or "select" in function:
            return "kernel: poll (waiting)"
        if "socket" in function or "send" in function or "recv" in function:
            return "kernel: socket calls"
        if "json" in function:
            return "json"
        return "builtins (C)"
    return "other python"


def by_group(stats: pstats.Stats) -> dict[str, float]:
    totals: dict[str, float] = defaultdict(float)
    raw: Any = stats.stats  # type: ignore[attr-defined]
    for (filename, _line, function), (_cc, _nc, tottime, _ct, _callers) in raw.items():
        totals[group_of(filename, function)] += tottime
    return dict(totals)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile")
    parser.add_argument("--lib", default="agentrt", choices=["agentrt", "raw"])
    parser.add_argument("--n", type=int, default=1)
    parser.add_argument("--k", type=int, default=3)
    parser.add_argument("--seq", type=int, default=200)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--json", action="store_true", help="non-streaming endpoint")
    parser.add_argument("--variant", default="", help="agentrt transport/callback variant")
    parser.add_argument("--backend", default="asyncio", choices=["asyncio", "trio"])
    parser.add_argument("--profiler", default="cprofile", choices=["cprofile", "pyinstrument"])
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--sort", default="tottime", help="pstats sort key (cProfile)")
    parser.add_argument("--out", type=Path, help="also write the report here")
    args = parser.parse_args(argv)
    spec = Spec(
        "profile",
        args.lib,
        n=args.n,
        k=args.k,
        seq=args.seq,
        latency=args.latency,
        stream=not args.json,
        variant=args.variant,
        backend=args.backend,
    )
    report: list[str] = []

    @contextmanager
    def cprofile_around() -> Iterator[None]:
        prof = cProfile.Profile()
        prof.enable()
        try:
            yield
        finally:
            prof.disable()
        buffer = io.StringIO()
        stats = pstats.Stats(prof, stream=buffer)
        stats.sort_stats(args.sort).print_stats(args.top)
        report.append(buffer.getvalue())
        groups = by_group(stats)
        total = sum(groups.values())
        lines = [f"time per turn by package (cProfile, {spec.turns} turns):"]
        for name, seconds in sorted(groups.items(), key=lambda item: -item[1]):
            lines.append(
                f"  {name:<26} {seconds / spec.turns * 1e6:9.1f} µs  {seconds / total:6.1%}"
            )
        report.append("\n".join(lines))

    @contextmanager
    def pyinstrument_around() -> Iterator[None]:
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.0002, async_mode="disabled")
        profiler.start()
        try:
            yield
        finally:
            profiler.stop()
        report.append(profiler.output_text(unicode=True, color=False, show_all=False))

    around = cprofile_around if args.profiler == "cprofile" else pyinstrument_around
    with ServerProcess(ServerConfig(latency=args.latency, tool_turns=args.k)) as server:
        spec.base_url = server.base_url
        result = anyio.run(partial(measure_chains, spec, around), backend=spec.backend)
    text = "\n".join(report)
    print(text)
    print(
        f"{spec.turns} turns profiled: wall {result.wall:.3f} s, cpu {result.cpu:.3f} s "
        f"({result.cpu / spec.turns * 1000:.3f} ms/turn under the profiler); "
        f"ok {result.ok} failed {result.failed}"
    )
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
