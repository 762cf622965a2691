"""Run the benchmarks: ``python -m benchmarks.run [--quick] [--repeat 3] [--only agentrt,raw]``.

For every (library, scenario, repeat) a fresh fake provider server is started in its own
process and the measurement runs in a fresh worker process (``benchmarks.worker``), so CPU
time and peak RSS are the client's alone. Prints markdown tables of medians and writes a
JSON file (default ``benchmarks/results/latest.json``).

Exit status: 0 when every measurement ran (skipped peers are fine), 1 when a worker
crashed or a chain failed. Timings are reported, never asserted.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from benchmarks._smoke import SMOKE

from .scenarios import Result, Spec, build_plan, server_for
from .server import ROOT, ServerProcess
from .worker import RESULT_MARK

DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "latest.json"
#: How repeats are summarised: "median" (default) or "min" (``--stat min``: the least
#: disturbed run, useful on a shared machine when comparing small code changes).
STAT = "median"
GROUPS = ("core", "callbacks", "limiter", "stream", "transport")
VERSIONED = (
    "agentrt",
    "httpx",
    "httpcore",
    "httpx2",
    "anyio",
    "trio",
    "pydantic",
    "aiohttp",
    "httpx-aiohttp",
    "pydantic-ai-slim",
    "openai-agents",
    "openai",
    "langchain",
    "langchain-core",
    "langchain-openai",
    "llm",
)


@dataclass
class Row:
    """All repeats of one spec."""

    spec: Spec
    results: list[Result] = field(default_factory=list)

    @property
    def measured(self) -> list[Result]:
        return [r for r in self.results if r.skipped is None]

    @property
    def skipped(self) -> str | None:
        reasons = [r.skipped for r in self.results if r.skipped]
        return reasons[0] if reasons and not self.measured else None

    def median(self, get: Callable[[Result], float | None]) -> float | None:
        """The median over repeats (the minimum when ``STAT`` says so)."""
        values = [v for v in (get(r) for r in self.measured) if v is not None]
        if not values:
            return None
        return min(values) if STAT == "min" else statistics.median(values)

    @property
    def wall(self) -> float | None:
        return self.median(lambda r: r.wall)

    @property
    def cpu_ms_per_turn(self) -> float | None:
        turns = self.spec.turns
        return self.median(lambda r: r.cpu / turns * 1000)

    @property
    def rss(self) -> float | None:
        return self.median(lambda r: r.peak_rss_mb)

    @property
    def ok(self) -> int:
        return min((r.ok for r in self.measured), default=0)

    @property
    def failed(self) -> int:
        return max((r.failed for r in self.measured), default=0)

    def extra(self, key: str) -> Any:
        values: list[Any] = [r.extra[key] for r in self.measured if r.extra.get(key) is not None]
        if values and all(isinstance(v, (int, float)) for v in values):
            return statistics.median([float(v) for v in values])
        return values[0] if values else None

    def to_json(self) -> dict[str, Any]:
        return {
            "spec": dataclasses.asdict(self.spec) | {"turns": self.spec.turns},
            "summary": STAT,
            "median": {
                "wall_s": self.wall,
                "wall_over_ideal": _ratio(self.wall, self.spec.ideal),
                "cpu_ms_per_turn": self.cpu_ms_per_turn,
                "peak_rss_mb": self.rss,
                "ok": self.ok,
                "failed": self.failed,
            },
            "skipped": self.skipped,
            "results": [dataclasses.asdict(r) for r in self.results],
        }


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


# --- running ---------------------------------------------------------------------------------


def worker_env(tmp: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        PYTHONUNBUFFERED="1",
        OPENAI_API_KEY="sk-bench",
        LLM_USER_PATH=tmp,  # llm keeps its keys and logs here, not in the home directory
        LANGSMITH_TRACING="false",
        LANGCHAIN_TRACING_V2="false",
        OPENAI_AGENTS_DISABLE_TRACING="1",
    )
    return env


def run_one(spec: Spec, *, timeout: float, env: dict[str, str]) -> Result:
    """Run one spec in a fresh worker process (with a fresh server when it needs one)."""
    config = server_for(spec)
    if config is None:
        return _run_worker(spec, timeout=timeout, env=env)
    with ServerProcess(config) as server:
        spec = dataclasses.replace(spec, base_url=server.base_url)
        return _run_worker(spec, timeout=timeout, env=env)


def _run_worker(spec: Spec, *, timeout: float, env: dict[str, str]) -> Result:
    command = [sys.executable, "-m", "benchmarks.worker", spec.to_json()]
    proc = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return Result(failed=spec.n * spec.seq, error=f"worker timed out after {timeout} s")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    for line in reversed(out.splitlines()):
        if line.startswith(RESULT_MARK):
            return Result(**json.loads(line[len(RESULT_MARK) :]))
    tail = err.strip().splitlines()[-1:] or [f"exit status {proc.returncode}"]
    return Result(failed=spec.n * spec.seq, error=f"worker crashed: {tail[0]}"[:300])


def describe(spec: Spec) -> str:
    bits = [spec.lib, spec.mode if spec.kind == "chains" else spec.kind]
    if spec.variant:
        bits.append(spec.variant)
    if spec.backend != "asyncio":
        bits.append(spec.backend)
    return f"{spec.scenario} | {' '.join(bits)}"


def run_plan(specs: list[Spec], repeat: int, *, timeout: float) -> list[Row]:
    rows = [Row(spec) for spec in specs]
    with tempfile.TemporaryDirectory(prefix="agentrt-bench-") as tmp:
        env = worker_env(tmp)
        total = len(rows) * repeat
        done = 0
        # Repeats are interleaved (all specs, then all again) so drift on a shared machine
        # spreads over every library instead of penalising one.
        for round_ in range(repeat):
            for row in rows:
                if row.results and row.results[-1].skipped:
                    row.results.append(row.results[-1])
                    done += 1
                    continue
                started = time.perf_counter()
                result = run_one(row.spec, timeout=timeout, env=env)
                row.results.append(result)
                done += 1
                took = time.perf_counter() - started
                status = result.skipped and f"skipped: {result.skipped}"
                if status is None:
                    cpu = result.cpu / row.spec.turns * 1000
                    status = (
                        f"wall {result.wall:.3f} s, cpu {cpu:.3f} ms/turn, "
                        f"rss {result.peak_rss_mb:.0f} MB, ok {result.ok} failed {result.failed}"
                    )
                    if result.error:
                        status += f" ({result.error})"
                print(
                    f"[{done}/{total}] r{round_ + 1} {describe(row.spec)}: {status} [{took:.1f} s]",
                    file=sys.stderr,
                    flush=True,
                )
    return rows


# --- reporting -------------------------------------------------------------------------------


def _f(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _table(header: list[str], lines: Iterable[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out.extend("| " + " | ".join(line) + " |" for line in lines)
    return "\n".join(out)


def _lib_label(spec: Spec, row: Row) -> str:
    label = spec.lib
    variant = row.extra("variant") or spec.variant
    if variant:
        label += f" ({variant})"
    return label


def core_table(rows: list[Row]) -> str:
    raw = {
        (r.spec.scenario, r.spec.stream): r.cpu_ms_per_turn
        for r in rows
        if r.spec.lib == "raw" and r.spec.kind == "chains"
    }
    lines = []
    for row in rows:
        spec = row.spec
        if row.skipped:
            lines.append([spec.scenario, spec.lib, spec.mode, f"skipped: {row.skipped}"] + [""] * 5)
            continue
        cpu = row.cpu_ms_per_turn
        lines.append(
            [
                spec.scenario,
                _lib_label(spec, row),
                spec.mode,
                _f(row.wall, 3),
                _f(_ratio(row.wall, spec.ideal), 1) if spec.ideal else "—",
                _f(cpu, 3),
                _f(_ratio(cpu, raw.get((spec.scenario, spec.stream))), 1) + "x",
                _f(row.rss, 0),
                f"{row.ok}/{spec.n * spec.seq}",
            ]
        )
    header = [
        "scenario",
        "library",
        "mode",
        "wall s",
        "wall/ideal",
        "CPU ms/turn",
        "x raw",
        "peak RSS MB",
        "chains ok",
    ]
    return _table(header, lines)


def callbacks_table(rows: list[Row]) -> str:
    base = {r.spec.stream: r.cpu_ms_per_turn for r in rows if r.spec.variant == "none"}
    lines = []
    for row in rows:
        cpu = row.cpu_ms_per_turn
        delta = _ratio(cpu, base.get(row.spec.stream))
        lines.append(
            [
                row.spec.variant,
                row.spec.mode,
                _f(cpu, 3),
                "—" if delta is None else f"{(delta - 1) * 100:+.1f}%",
                f"{row.ok}/{row.spec.n * row.spec.seq}",
            ]
        )
    return _table(["handler", "mode", "CPU ms/turn", "vs none", "chains ok"], lines)


def limiter_table(rows: list[Row]) -> str:
    lines = [
        [
            row.spec.backend,
            str(row.extra("calls")),
            str(row.extra("limiter")),
            _f(row.wall, 3),
            _f(row.extra("ideal"), 3),
            _f(row.extra("tool_phase"), 3),
            str(row.extra("peak_running")),
            str(row.extra("peak_worker_threads")),
            f"{row.ok}/1",
        ]
        for row in rows
    ]
    header = [
        "backend",
        "calls",
        "limiter",
        "wall s",
        "ideal s",
        "tool phase s",
        "peak concurrent calls",
        "peak worker threads",
        "ok",
    ]
    return _table(header, lines)


def stream_table(rows: list[Row]) -> str:
    by_lib = {_lib_label(row.spec, row): row for row in rows}
    lines = [
        [
            _lib_label(row.spec, row),
            str(row.extra("chunks_per_answer")),
            _f(row.extra("cpu_us_per_chunk"), 2),
            _f(row.extra("ttfc_median_ms"), 3),
            _f(row.extra("ttfc_min_ms"), 3),
            f"{row.ok}/{row.extra('answers')}",
        ]
        for row in rows
    ]
    text = _table(
        ["library", "chunks", "CPU µs/chunk", "TTFC median ms", "TTFC min ms", "answers ok"],
        lines,
    )
    raw = by_lib.get("raw")
    for label, ours in by_lib.items():
        if raw is None or ours is raw:
            continue
        a, b = ours.extra("cpu_us_per_chunk"), raw.extra("cpu_us_per_chunk")
        ta, tb = ours.extra("ttfc_median_ms"), raw.extra("ttfc_median_ms")
        if None not in (a, b, ta, tb):
            text += (
                f"\n\n{label} beyond the raw client: {a - b:.2f} µs CPU per chunk; "
                f"median time to first chunk {ta - tb:+.3f} ms."
            )
    return text


def transport_table(rows: list[Row]) -> str:
    lines = []
    for row in rows:
        spec = row.spec
        if row.skipped:
            lines.append(
                [spec.scenario, spec.variant, spec.backend, spec.mode, f"skipped: {row.skipped}"]
                + [""] * 4
            )
            continue
        lines.append(
            [
                spec.scenario.removeprefix("g: transports "),
                spec.variant,
                spec.backend,
                spec.mode,
                _f(row.wall, 3),
                _f(_ratio(row.wall, spec.ideal), 1) if spec.ideal else "—",
                _f(row.cpu_ms_per_turn, 3),
                _f(row.rss, 0),
                f"{row.ok}/{spec.n * spec.seq}",
            ]
        )
    header = [
        "scenario",
        "transport",
        "backend",
        "mode",
        "wall s",
        "wall/ideal",
        "CPU ms/turn",
        "peak RSS MB",
        "chains ok",
    ]
    return _table(header, lines)


def report(rows: list[Row]) -> str:
    sections = []
    groups: list[tuple[str, Callable[[Row], bool], Callable[[list[Row]], str]]] = [
        ("Chains (a, b, c)", lambda r: r.spec.scenario[:2] in ("a:", "b:", "c:"), core_table),
        (
            "d: callback machinery, agentrt N=1 K=3",
            lambda r: r.spec.scenario.startswith("d:"),
            callbacks_table,
        ),
        ("e: sync tools through one limiter", lambda r: r.spec.kind == "limiter", limiter_table),
        ("f: a 500-chunk streamed answer", lambda r: r.spec.kind == "stream", stream_table),
        (
            "g: agentrt transports",
            lambda r: r.spec.scenario.startswith("g:"),
            transport_table,
        ),
    ]
    for title, keep, render in groups:
        chosen = [r for r in rows if keep(r)]
        if chosen:
            sections.append(f"### {title}\n\n{render(chosen)}")
    return "\n\n".join(sections)


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def meta(args: argparse.Namespace) -> dict[str, Any]:
    versions = {}
    for name in VERSIONED:
        versions[name] = _version(name)
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "loadavg_at_end": os.getloadavg(),
        "args": vars(args),
        "versions": versions,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small N, 1 repeat, agentrt+raw")
    parser.add_argument("--repeat", type=int, default=3, help="runs per spec (median reported)")
    parser.add_argument("--only", default="", help="comma-separated libraries")
    parser.add_argument(
        "--groups", default=",".join(GROUPS), help=f"comma-separated, of {','.join(GROUPS)}"
    )
    parser.add_argument("--match", default="", help="only scenarios containing this text")
    parser.add_argument(
        "--variants", default="", help="comma-separated agentrt variants (transports, handlers)"
    )
    parser.add_argument(
        "--stat", choices=["median", "min"], default="median", help="summary over repeats"
    )
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per worker")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write JSON")
    args = parser.parse_args(argv)
    if SMOKE:  # CI: only check that the harness still runs
        args.quick, args.repeat, args.only = True, 1, args.only or "agentrt,raw"
        args.json = Path(tempfile.gettempdir()) / "agentrt-bench-smoke.json"
    global STAT
    STAT = args.stat
    only = {lib.strip() for lib in args.only.split(",") if lib.strip()} or None
    groups = {g.strip() for g in args.groups.split(",") if g.strip()}
    if unknown := groups - set(GROUPS):
        parser.error(f"unknown group(s): {', '.join(sorted(unknown))}")
    plan = build_plan(quick=args.quick, repeat=max(1, args.repeat), only=only, groups=groups)
    variants = {v.strip() for v in args.variants.split(",") if v.strip()}
    specs = [
        s
        for s in plan.specs
        if args.match in s.scenario and (not variants or not s.variant or s.variant in variants)
    ]
    if not specs:
        parser.error("nothing to run")
    started = time.perf_counter()
    rows = run_plan(specs, plan.repeat, timeout=args.timeout)
    text = report(rows)
    print(text)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    payload = {"meta": meta(args), "rows": [row.to_json() for row in rows], "markdown": text}
    args.json.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    elapsed = time.perf_counter() - started
    print(f"\n{len(rows)} specs x {plan.repeat} in {elapsed:.0f} s; JSON: {args.json}")
    broken = [row for row in rows if any(r.error or r.failed for r in row.measured)]
    for row in broken:
        errors = {r.error for r in row.measured if r.error}
        print(f"FAILED: {describe(row.spec)}: {'; '.join(sorted(errors))}", file=sys.stderr)
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
