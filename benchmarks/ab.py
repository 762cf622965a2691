"""Before/after: the same scenarios on two checkouts of agentrt, interleaved run by run.

``python -m benchmarks.ab --before /path/to/old/checkout [--rounds 5] [--match TEXT]``
measures agentrt's ``core`` scenarios (see :mod:`benchmarks.scenarios`) with the worker of
each checkout in turn: for every round and scenario one fake server process is started
and the old checkout's worker and this one's run against it back to back (in alternating
order), so load that comes and goes on a shared machine falls on both alike. Each worker
imports agentrt from its own checkout (it runs with that checkout as its working
directory). Prints, per scenario, the minimum and median CPU ms per turn and wall seconds
of each side and the after/before ratio of the minimum CPU. Figures are reported, never
asserted.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from .run import RESULT_MARK, worker_env
from .scenarios import Result, Spec, build_plan, server_for
from .server import ServerProcess

HERE = Path(__file__).resolve().parent.parent


def _run(spec: Spec, cwd: Path, env: dict[str, str], timeout: float) -> Result:
    command = [sys.executable, "-m", "benchmarks.worker", spec.to_json()]
    done = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(RESULT_MARK):
            return Result(**json.loads(line[len(RESULT_MARK) :]))
    raise RuntimeError(f"the worker in {cwd} failed: {done.stderr.strip()[-400:]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ab", description=__doc__)
    parser.add_argument("--before", type=Path, required=True, help="the old checkout")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--match", default="", help="only scenarios containing this text")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per worker")
    args = parser.parse_args(argv)
    before = args.before.resolve()
    if not (before / "agentrt").is_dir() or not (before / "benchmarks" / "worker.py").exists():
        parser.error(f"{before} is not an agentrt checkout with benchmarks/worker.py")
    trees = {"before": before, "after": HERE}
    plan = build_plan(quick=False, repeat=1, only={"agentrt"}, groups={"core"})
    specs = [s for s in plan.specs if args.match in s.scenario]
    if not specs:
        parser.error(f"no core scenario contains {args.match!r}")
    cpu: dict[tuple[str, str], dict[str, list[float]]] = {}
    wall: dict[tuple[str, str], dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory(prefix="agentrt-ab-") as tmp:
        env = worker_env(tmp)
        for round_ in range(args.rounds):
            for spec in specs:
                order = list(trees.items())
                if round_ % 2:
                    order.reverse()
                config = server_for(spec)
                assert config is not None  # every core scenario talks to the fake server
                with ServerProcess(config) as server:
                    measured = dataclasses.replace(spec, base_url=server.base_url)
                    for name, cwd in order:
                        result = _run(measured, cwd, env, args.timeout)
                        key = (spec.scenario, "stream" if spec.stream else "json")
                        per_turn = result.cpu / measured.turns * 1000
                        cpu.setdefault(key, {}).setdefault(name, []).append(per_turn)
                        wall.setdefault(key, {}).setdefault(name, []).append(result.wall)
            print(f"round {round_ + 1} of {args.rounds} done", file=sys.stderr, flush=True)
    print(
        "| scenario | mode | CPU ms/turn before (min, median) | after | after/before (min) "
        "| wall s before (min) | after |"
    )
    print("|---|---|---|---|---|---|---|")
    for key, sides in cpu.items():
        b, a = sides["before"], sides["after"]
        print(
            f"| {key[0]} | {key[1]} | {min(b):.3f}, {statistics.median(b):.3f} "
            f"| {min(a):.3f}, {statistics.median(a):.3f} | {min(a) / min(b):.2f} "
            f"| {min(wall[key]['before']):.2f} | {min(wall[key]['after']):.2f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
