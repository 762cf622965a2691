"""Profile agentrt's per-turn path against the fake server.

``python -m benchmarks.profile --n 1 --seq 200`` (or ``--n 1000 --latency 0.1``) runs the
chain scenario in this process under cProfile (default) or pyinstrument and prints the top
costs, per turn. ``--lib raw`` profiles the raw-socket floor the same way.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import time
from pathlib import Path

import anyio

from .scenarios import ServerConfig, Spec
from .server import ServerProcess
from .worker import cpu_seconds, measure_chains


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
    parser.add_argument("--out", type=Path, help="also write the full report here")
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
    with ServerProcess(ServerConfig(latency=args.latency, tool_turns=args.k)) as server:
        spec.base_url = server.base_url
        cpu0, t0 = cpu_seconds(), time.perf_counter()
        if args.profiler == "pyinstrument":
            from pyinstrument import Profiler

            profiler = Profiler(interval=0.0005, async_mode="disabled")
            profiler.start()
            result = anyio.run(measure_chains, spec, backend=spec.backend)
            profiler.stop()
            text = profiler.output_text(unicode=True, color=False, show_all=False)
        else:
            prof = cProfile.Profile()
            prof.enable()
            result = anyio.run(measure_chains, spec, backend=spec.backend)
            prof.disable()
            buffer = io.StringIO()
            stats = pstats.Stats(prof, stream=buffer)
            stats.sort_stats(args.sort).print_stats(args.top)
            text = buffer.getvalue()
        cpu, wall = cpu_seconds() - cpu0, time.perf_counter() - t0
    print(text)
    print(
        f"{spec.turns} measured turns (+ 1 warm-up chain); under the profiler: "
        f"cpu {cpu:.2f} s, wall {wall:.2f} s; unprofiled worker figures: wall {result.wall:.3f} s "
        f"ok {result.ok} failed {result.failed}",
        file=sys.stderr,
    )
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
