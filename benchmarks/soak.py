"""Soak: thousands of tool-calling chains through one model while the provider misbehaves.

``python -m benchmarks.soak [--chains N] [--concurrency C] [--fault-rate F] [--seed S]``

Runs ``N`` chains (each ``K`` tool turns, then an answer) through ONE
``agentrt.get_async_model("openai:soak", ...)`` instance, ``C`` at a time, against the fake
provider server. The server injects a fault into a fraction ``F`` of all requests (seeded):
429 with a tiny ``Retry-After``, 500, 503, a stream dropped part-way, an error event inside
the stream. Then it checks:

* every chain either completed (with the right tool results) or failed with a typed
  agentrt error; failures are counted by type;
* usage is exact: the usage of all chains, failed ones included, adds up to the tokens the
  server reported in the responses it sent whole (a broken stream is always cut before its
  usage chunk, so the server knows which usage reached the client);
* memory: RSS after the run is at most 10% above RSS after the warm-up;
* file descriptors: after ``await model.aclose()`` the process holds as many as before the
  model existed.

The server runs in a subprocess (``python -m benchmarks.soak --serve``), so this process's
RSS and descriptors are the client's alone; it reports what it answered as a JSON line
when asked on its stdin. Exit status 1 when a check fails. ``tests/test_soak.py`` runs a
CI-sized version of the same code.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import random
import select
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import anyio

ROOT = Path(__file__).resolve().parent.parent
MODEL = "openai:soak"
API_KEY = "sk-soak"
_BANNER = "soak server on "

#: The kinds of fault the server injects, equally likely.
FAULTS = ("429", "500", "503", "drop", "error_event")


# --- the server side (runs in the subprocess) ---------------------------------------------


class SoakResponder:
    """Answers like ``bench_responder``, with seeded faults; counts what it sent.

    A conversation with fewer than ``tool_turns`` tool results gets a call to
    ``add(a, b)``; then a text answer. Every whole response reports usage; its tokens are
    added to ``stats`` only when the response goes out whole.
    """

    def __init__(self, tool_turns: int, fault_rate: float, seed: int) -> None:
        self.tool_turns = tool_turns
        self.fault_rate = fault_rate
        self.rng = random.Random(seed)
        self.stats: Counter[str] = Counter()
        self.lock = threading.Lock()

    def __call__(self, wire: str, body: dict[str, Any]) -> Any:
        from tools.fakeserver import openai_wire
        from tools.fakeserver.script import Fault, ScriptedToolCall, Turn

        assert wire == "openai", wire
        rng = self.rng
        messages = body.get("messages") or []
        done = sum(1 for m in messages if m.get("role") == "tool")
        usage = (10 + 7 * len(messages), rng.randint(1, 40))
        if done < self.tool_turns:
            arguments = json.dumps({"a": done, "b": rng.randint(0, 999)})
            call = ScriptedToolCall("add", arguments, id=f"call_{done}_{rng.getrandbits(32):x}")
            turn = Turn(tool_calls=[call], usage=usage)
        else:
            turn = Turn(text=f"done after {done} tool calls", usage=usage)
        with self.lock:
            self.stats["requests"] += 1
            if rng.random() >= self.fault_rate:
                self.stats["ok"] += 1
                self.stats["input_tokens"] += usage[0]
                self.stats["output_tokens"] += usage[1]
                return turn
            kind = rng.choice(FAULTS)
            self.stats[f"fault_{kind}"] += 1
        if kind == "429":
            return Fault(status=429, headers={"retry-after": "0.01"}, message="slow down")
        if kind == "500":
            return Fault(status=500)
        if kind == "503":
            return Fault(status=503, headers={"retry-after": "0"})
        if kind == "error_event":
            return Fault(error_event=True, turn=turn, message="overloaded")
        # Cut the stream anywhere before its usage chunk (the last two events are the usage
        # chunk and [DONE]), so a broken response never reports usage.
        events = openai_wire.render_sse(turn, str(body.get("model", "")))
        before_usage = sum(len(e) for e in events[:-2])
        return Fault(drop_after_bytes=rng.randrange(before_usage), turn=turn)

    def snapshot(self) -> dict[str, int]:
        with self.lock:
            return dict(self.stats)


def serve(tool_turns: int, fault_rate: float, seed: int) -> None:
    """Run the soak server until stdin closes; answer ``stats`` lines with a JSON line."""
    from tools.fakeserver.server import FakeServer

    responder = SoakResponder(tool_turns, fault_rate, seed)
    server = FakeServer()
    server.responder = responder
    server.record_requests = False
    with server:
        print(_BANNER + server.url, flush=True)
        for line in sys.stdin:
            if line.strip() == "stats":
                print(json.dumps(responder.snapshot()), flush=True)


class SoakServer:
    """The soak server in a subprocess; use it as a context manager."""

    def __init__(self, tool_turns: int, fault_rate: float, seed: int) -> None:
        self.args = [
            "--serve",
            "--tool-turns",
            str(tool_turns),
            "--fault-rate",
            repr(fault_rate),
            "--seed",
            str(seed),
        ]
        self.url = ""
        self._proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> SoakServer:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.soak", *self.args],
            cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            line = self._readline(20.0)
            if not line.startswith(_BANNER):
                raise RuntimeError(f"the soak server did not start: {line!r}")
            self.url = line[len(_BANNER) :].strip()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def stats(self) -> dict[str, int]:
        """Ask the server what it answered so far."""
        proc = self._proc
        assert proc is not None and proc.stdin is not None
        proc.stdin.write("stats\n")
        proc.stdin.flush()
        stats: dict[str, int] = json.loads(self._readline(10.0))
        return stats

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.stdin is not None:
            proc.stdin.close()  # the server exits at end of input
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        if proc.stdout is not None:
            proc.stdout.close()

    def _readline(self, timeout: float) -> str:
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], timeout)
        if not ready:
            raise RuntimeError(f"the soak server did not answer within {timeout} s")
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the soak server exited (status {proc.poll()})")
        return line


# --- the client side ------------------------------------------------------------------------


def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@dataclass
class SoakConfig:
    """What to run; the defaults are the full soak."""

    chains: int = 20_000
    concurrency: int = 100
    fault_rate: float = 0.05
    seed: int = 0
    tool_turns: int = 3
    backend: str = "asyncio"
    #: Chains run before the RSS baseline is taken (default: a tenth, at least 10 rounds).
    warmup: int | None = None
    #: First retry backoff of the provider, in seconds (the 500s have no Retry-After).
    retry_delay: float = 0.02
    max_retries: int = 2
    #: Allowed RSS growth after warm-up, as a fraction; ``None`` reports without checking.
    max_rss_growth: float | None = 0.10
    #: The chains after warm-up run in this many tranches, RSS sampled after each.
    tranches: int = 9

    def warmup_chains(self) -> int:
        if self.warmup is not None:
            return min(self.warmup, self.chains)
        return min(max(self.chains // 10, 10 * self.concurrency), self.chains // 2)


@dataclass
class SoakResult:
    """What a soak run measured; :meth:`problems` lists the failed checks."""

    config: SoakConfig
    completed: int = 0
    #: Failed chains by exception type (typed agentrt errors only).
    failures: Counter[str] = field(default_factory=Counter)
    #: Chains that ended with something other than an agentrt error, or a wrong answer.
    untyped: list[str] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)
    input_tokens: int = 0
    output_tokens: int = 0
    server: dict[str, int] = field(default_factory=dict)
    #: (chains done, RSS bytes) after the warm-up and after each later tranche.
    rss: list[tuple[int, int]] = field(default_factory=list)
    fds_start: int = -1
    fds_peak: int = -1
    fds_end: int = -1
    threads_end: int = 0
    seconds: float = 0.0

    @property
    def rss_growth(self) -> float | None:
        if len(self.rss) < 2 or not self.rss[0][1]:
            return None
        return self.rss[-1][1] / self.rss[0][1] - 1

    def problems(self) -> list[str]:
        """Return the failed checks, each as a sentence (empty when all passed)."""
        found = []
        ended = self.completed + sum(self.failures.values()) + len(self.untyped)
        if ended != self.config.chains:
            found.append(f"{ended} chains ended, {self.config.chains} were started")
        if self.untyped:
            found.append(f"{len(self.untyped)} chains failed untyped: {self.untyped[:3]}")
        if self.wrong:
            found.append(f"{len(self.wrong)} chains completed wrongly: {self.wrong[:3]}")
        server = (self.server.get("input_tokens", 0), self.server.get("output_tokens", 0))
        if (self.input_tokens, self.output_tokens) != server:
            found.append(
                f"usage is not exact: chains add up to {self.input_tokens} in / "
                f"{self.output_tokens} out, the server sent {server[0]} / {server[1]}"
            )
        growth, limit = self.rss_growth, self.config.max_rss_growth
        if limit is not None and growth is not None and growth > limit:
            found.append(f"RSS grew {growth:.1%} after warm-up (limit {limit:.0%})")
        if self.fds_end != self.fds_start:
            found.append(
                f"{self.fds_end} file descriptors open after aclose(), {self.fds_start} before"
            )
        return found

    def summary(self) -> str:
        cfg = self.config
        failed = sum(self.failures.values()) + len(self.untyped)
        by_type = ", ".join(f"{name} {n}" for name, n in self.failures.most_common()) or "none"
        faults = {k.removeprefix("fault_"): v for k, v in self.server.items() if "fault_" in k}
        fault_text = ", ".join(f"{k} {v}" for k, v in sorted(faults.items())) or "none"
        lines = [
            f"soak: {cfg.chains} chains (K={cfg.tool_turns}) through one model, "
            f"{cfg.concurrency} at a time, fault rate {cfg.fault_rate:.1%}, seed {cfg.seed}, "
            f"{cfg.backend}",
            f"  chains:   {self.completed} completed, {failed} failed ({by_type})",
            f"  server:   {self.server.get('requests', 0)} requests, "
            f"{self.server.get('ok', 0)} answered whole, faults: {fault_text}",
            f"  usage:    chains {self.input_tokens} in / {self.output_tokens} out; "
            f"server {self.server.get('input_tokens', 0)} / "
            f"{self.server.get('output_tokens', 0)}",
        ]
        if self.rss:
            mb = ", ".join(f"{n}: {r / 2**20:.1f}" for n, r in self.rss)
            growth = self.rss_growth
            lines.append(
                f"  RSS (MB): {mb}"
                + (f"; growth after warm-up {growth:+.1%}" if growth is not None else "")
            )
        lines += [
            f"  fds:      {self.fds_start} before the model, peak {self.fds_peak}, "
            f"{self.fds_end} after aclose(); threads at the end: {self.threads_end}",
            f"  time:     {self.seconds:.1f} s, {cfg.chains / max(self.seconds, 1e-9):.0f} "
            "chains/s",
        ]
        problems = self.problems()
        lines.append("checks:   " + ("all passed" if not problems else "FAILED"))
        lines += [f"  - {p}" for p in problems]
        return "\n".join(lines)


def count_fds() -> int:
    """Open file descriptors of this process (-1 where ``/proc`` is unavailable)."""
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return -1


def rss_bytes() -> int:
    """Resident set size of this process in bytes (0 where ``/proc`` is unavailable)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


async def _one_chain(model: Any, result: SoakResult) -> None:
    import agentrt

    cfg = result.config
    chain = model.chain("soak", tools=[add], max_turns=cfg.tool_turns + 2)
    try:
        await chain.text()
    except agentrt.AgentrtError as exc:
        result.failures[type(exc).__name__] += 1
    except Exception as exc:  # the check: this must never happen
        result.untyped.append(f"{type(exc).__name__}: {exc}")
    else:
        problem = _check_chain(chain, cfg.tool_turns)
        if problem:
            result.wrong.append(problem)
        else:
            result.completed += 1
    usage = chain.usage
    if usage is not None:
        result.input_tokens += usage.input_tokens
        result.output_tokens += usage.output_tokens


def _check_chain(chain: Any, tool_turns: int) -> str | None:
    if chain.status != "completed" or len(chain.responses) != tool_turns + 1:
        return f"status {chain.status} after {len(chain.responses)} turns"
    for response in chain.responses[:-1]:
        calls, results = response.message.tool_calls, response.tool_results
        if len(calls) != 1 or len(results) != 1:
            return f"{len(calls)} calls, {len(results)} results in one turn"
        expected = str(add(**(calls[0].arguments or {})))
        if results[0].is_error or results[0].content != expected:
            return f"add{calls[0].arguments} gave {results[0].content!r}"
    if chain.responses[-1].text_so_far != f"done after {tool_turns} tool calls":
        return f"final answer {chain.responses[-1].text_so_far!r}"
    return None


async def _run_chains(model: Any, count: int, result: SoakResult) -> None:
    chains = iter(range(count))

    async def worker() -> None:
        for _ in chains:  # shared by the workers: each chain runs once
            await _one_chain(model, result)
        result.fds_peak = max(result.fds_peak, count_fds())

    async with anyio.create_task_group() as tg:
        for _ in range(min(result.config.concurrency, count)):
            tg.start_soon(worker)


async def _client(base_url: str, result: SoakResult) -> None:
    import agentrt

    cfg = result.config
    result.fds_start = count_fds()
    model = agentrt.get_async_model(
        MODEL, base_url=base_url, api_key=API_KEY, max_retries=cfg.max_retries, timeout=30.0
    )
    provider: Any = model.provider
    provider.retry = dataclasses.replace(provider.retry, initial_delay=cfg.retry_delay)
    provider.retry = dataclasses.replace(provider.retry, max_delay=cfg.retry_delay * 4)
    try:
        warmup = cfg.warmup_chains()
        await _run_chains(model, warmup, result)
        done = warmup
        tranche = max(1, -(-(cfg.chains - warmup) // max(1, cfg.tranches)))
        while True:
            gc.collect()
            result.rss.append((done, rss_bytes()))
            if done >= cfg.chains:
                break
            count = min(tranche, cfg.chains - done)
            await _run_chains(model, count, result)
            done += count
    finally:
        await model.aclose()
    result.fds_end = count_fds()


def run_soak(config: SoakConfig) -> SoakResult:
    """Run a soak with its own server subprocess and return what it measured."""
    result = SoakResult(config)
    with SoakServer(config.tool_turns, config.fault_rate, config.seed) as server:
        started = time.perf_counter()
        anyio.run(_client, server.url + "/v1", result, backend=config.backend)
        result.seconds = time.perf_counter() - started
        result.server = server.stats()
    result.threads_end = threading.active_count()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__)
    defaults = SoakConfig()
    parser.add_argument("--chains", type=int, default=defaults.chains)
    parser.add_argument("--concurrency", type=int, default=defaults.concurrency)
    parser.add_argument("--fault-rate", type=float, default=defaults.fault_rate)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--tool-turns", type=int, default=defaults.tool_turns, metavar="K")
    parser.add_argument("--backend", choices=["asyncio", "trio"], default=defaults.backend)
    parser.add_argument("--warmup", type=int, default=None, help="chains before the RSS baseline")
    parser.add_argument("--retry-delay", type=float, default=defaults.retry_delay)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.tool_turns, args.fault_rate, args.seed)
        return 0
    config = SoakConfig(
        chains=args.chains,
        concurrency=args.concurrency,
        fault_rate=args.fault_rate,
        seed=args.seed,
        tool_turns=args.tool_turns,
        backend=args.backend,
        warmup=args.warmup,
        retry_delay=args.retry_delay,
    )
    result = run_soak(config)
    print(result.summary())
    return 1 if result.problems() else 0


if __name__ == "__main__":
    sys.exit(main())
