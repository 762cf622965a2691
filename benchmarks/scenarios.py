"""What a measurement is: the spec a worker runs, the result it reports, the scenario list."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Literal

Kind = Literal["chains", "limiter", "stream"]

#: The prompt every chain starts from.
PROMPT = "What is 1 + 2? Use the add tool."


class Unavailable(Exception):
    """A library or transport a measurement needs is not installed: the spec is skipped."""


def expected_answer(k: int) -> str:
    """The final text the fake server's bench responder sends after ``k`` tool results."""
    return f"done after {k} tool calls"


@dataclass
class Spec:
    """One measurement, run by ``python -m benchmarks.worker`` in a fresh process."""

    scenario: str
    lib: str
    kind: Kind = "chains"
    #: Concurrent chains.
    n: int = 1
    #: Tool turns per chain (then one final answer).
    k: int = 2
    #: Server latency per request, seconds.
    latency: float = 0.0
    #: Chains each concurrent slot runs one after another.
    seq: int = 1
    stream: bool = True
    #: Library-specific variant: the transport for agentrt, the handler kind, ...
    variant: str = ""
    #: Async backend (agentrt only: ``asyncio`` or ``trio``).
    backend: str = "asyncio"
    base_url: str = ""
    #: Micro-benchmark knobs (limiter: calls, threads, sleep; stream: chunks, prompts).
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def turns(self) -> int:
        return self.n * self.seq * (self.k + 1)

    @property
    def ideal(self) -> float:
        return self.seq * (self.k + 1) * self.latency

    @property
    def mode(self) -> str:
        return "stream" if self.stream else "json"

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Spec:
        return cls(**json.loads(text))


@dataclass
class Result:
    """What one worker run measured."""

    wall: float = 0.0
    cpu: float = 0.0
    peak_rss_mb: float = 0.0
    ok: int = 0
    failed: int = 0
    error: str | None = None
    skipped: str | None = None
    #: Scenario-specific figures (threads, time to first chunk, ...).
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ServerConfig:
    """How the fake provider server must behave for a scenario."""

    latency: float = 0.0
    tool_turns: int = 2
    #: When set, answer every request with a text streamed in this many chunks (no tools).
    text_chunks: int | None = None


def server_for(spec: Spec) -> ServerConfig | None:
    """The server a spec needs, or ``None`` for in-process scenarios."""
    if spec.kind == "limiter" or spec.params.get("memory"):
        return None
    if spec.kind == "stream":
        return ServerConfig(latency=spec.latency, text_chunks=int(spec.params["chunks"]))
    return ServerConfig(latency=spec.latency, tool_turns=spec.k)


# --- the catalogue ------------------------------------------------------------------------

PEERS = ("pydantic-ai", "openai-agents", "langchain", "llm")
AGENTRT_TRANSPORTS = (
    "agentrt-default",
    "httpx-pool-1000",
    "httpx-default-limits",
    "httpx2-pool",
    "aiohttp",
    "agentrt-default-trio",
    "httpx-pool-1000-trio",
)


@dataclass(frozen=True)
class Plan:
    """Which specs a run measures and how often."""

    specs: list[Spec]
    repeat: int


def _core(name: str, n: int, k: int, latency: float, seq: int, libs: list[str]) -> list[Spec]:
    specs: list[Spec] = []
    for lib in libs:
        if lib == "raw":
            specs.extend(
                Spec(name, lib, n=n, k=k, latency=latency, seq=seq, stream=stream)
                for stream in (True, False)
            )
        elif lib == "agentrt":
            specs.extend(
                Spec(name, lib, n=n, k=k, latency=latency, seq=seq, stream=stream)
                for stream in (True, False)
            )
        else:
            specs.append(Spec(name, lib, n=n, k=k, latency=latency, seq=seq, stream=False))
    return specs


def build_plan(*, quick: bool, repeat: int, only: set[str] | None, groups: set[str]) -> Plan:
    """Return the specs for the chosen libraries and scenario groups."""
    libs = ["agentrt", "raw"] if quick else ["agentrt", "raw", *PEERS]
    if only:
        libs = [lib for lib in libs if lib in only] + [
            lib for lib in sorted(only) if lib not in libs
        ]
    specs: list[Spec] = []
    if quick:
        if "core" in groups:
            specs += _core("a: N=1 K=3 L=0", 1, 3, 0.0, 20, libs)
            specs += _core("b: N=100 K=2 L=100ms", 100, 2, 0.1, 1, libs)
            specs += _core("c: N=50 K=3 L=50ms", 50, 3, 0.05, 1, libs)
    elif "core" in groups:
        specs += _core("a: N=1 K=3 L=0", 1, 3, 0.0, 200, libs)
        specs += _core("b: N=1000 K=2 L=100ms", 1000, 2, 0.1, 1, libs)
        specs += _core("c: N=200 K=3 L=50ms", 200, 3, 0.05, 1, libs)
    if "agentrt" in libs:
        seq = 20 if quick else 200
        if "callbacks" in groups:
            # On the in-memory transport (benchmarks.micro.MemoryTransport): a few percent
            # are lost in socket and scheduling noise end to end on a shared machine.
            specs += [
                Spec(
                    "d: callbacks N=1 K=3 (in-memory transport)",
                    "agentrt",
                    k=3,
                    seq=seq * 3,
                    variant=variant,
                    stream=stream,
                    base_url="http://bench.invalid/v1",
                    params={"memory": True},
                )
                for stream in (True, False)
                for variant in ("none", "noop-handler", "noop-async-handler")
            ]
        if "limiter" in groups:
            calls = 200 if quick else 1000
            specs += [
                Spec(
                    f"e: {calls} sync tools x 10ms, limiter 100",
                    "agentrt",
                    kind="limiter",
                    backend=backend,
                    params={"calls": calls, "threads": 100, "sleep": 0.01},
                )
                for backend in ("asyncio", "trio")
            ]
        if "stream" in groups:
            prompts = 10 if quick else 100
            specs += [
                Spec(
                    "f: 500-chunk answer",
                    lib,
                    kind="stream",
                    k=0,
                    variant=variant,
                    params={"chunks": 500, "prompts": prompts},
                )
                for lib, variant in (("agentrt", ""), ("agentrt", "httpx-pool-1000"), ("raw", ""))
            ]
        if "transport" in groups and not quick:
            for name, n, k, latency, seq in (
                ("g: transports N=1 K=3 L=0", 1, 3, 0.0, 200),
                ("g: transports N=1000 K=2 L=100ms", 1000, 2, 0.1, 1),
            ):
                specs += [
                    Spec(
                        name,
                        "agentrt",
                        n=n,
                        k=k,
                        latency=latency,
                        seq=seq,
                        stream=stream,
                        variant=variant,
                        backend="trio" if variant.endswith("trio") else "asyncio",
                    )
                    for variant in AGENTRT_TRANSPORTS
                    for stream in (True, False)
                ]
    return Plan(specs, 1 if quick else repeat)
