"""CPU per turn with OpenTelemetry instrumentation off and on (``agentrt.otel``).

``python -m benchmarks.otel_bench`` runs whole chains (``k`` tool turns and a final answer)
against the in-memory OpenAI endpoint of :mod:`benchmarks.micro`, so only agentrt, httpx's
client layers and the instrumentation run. Variants are interleaved round by round so
machine noise hits them alike; each is reported as the minimum over rounds (noise only ever
adds CPU, so on a shared machine the minimum is the steadiest figure) and the median:

- ``off``: no handler (what every chain costs without ``agentrt.otel``);
- ``off-after-uninstrument``: ``instrument()`` then ``uninstrument()``;
- ``on-api-only``: ``instrument()`` with the OpenTelemetry API's no-op providers (no SDK
  installed, as in a process where nobody configured OpenTelemetry): agentrt's own cost;
- ``on``: ``instrument()`` with the OpenTelemetry SDK, a ``BatchSpanProcessor`` into an
  exporter that drops everything, and a ``MeterProvider`` whose periodic reader exports
  into a no-op exporter: the spans and metrics are really built, nothing is sent;
- ``on-content``: the same with ``capture_content=True``.

The target of issue 14: ``on`` costs at most 15% more CPU per turn than ``off``. To tell
agentrt's part from the SDK's, ``sdk-floor`` times, without agentrt, the SDK calls a turn of
this chain makes: two spans (a ``chat`` span with its attributes, and on average one tool or
agent span) made current and ended, and three histogram records.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from collections.abc import Callable, Sequence
from typing import Any

import anyio

from .micro import MemoryTransport, _chains, add, close_memory_model, memory_model
from .scenarios import PROMPT

VARIANTS = ("off", "off-after-uninstrument", "on-api-only", "on", "on-content")


def _sdk() -> tuple[Any, Any, Callable[[], None]]:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import (
        MetricExporter,
        MetricExportResult,
        PeriodicExportingMetricReader,
    )
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    class DropSpans(SpanExporter):
        def export(self, spans: Sequence[Any]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    class DropMetrics(MetricExporter):
        def export(self, metrics_data: Any, timeout_millis: float = 0, **kwargs: Any) -> Any:
            return MetricExportResult.SUCCESS

        def force_flush(self, timeout_millis: float = 0) -> bool:
            return True

        def shutdown(self, timeout_millis: float = 0, **kwargs: Any) -> None:
            pass

    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(DropSpans()))
    reader = PeriodicExportingMetricReader(DropMetrics(), export_interval_millis=1000)
    meter_provider = MeterProvider(metric_readers=[reader])

    def shutdown() -> None:
        tracer_provider.shutdown()
        meter_provider.shutdown()

    return tracer_provider, meter_provider, shutdown


async def run_variant(variant: str, *, stream: bool, chains: int, k: int) -> dict[str, float]:
    """CPU and wall time per turn of ``chains`` chains under one variant."""
    import agentrt.otel

    shutdown: Callable[[], None] | None = None
    if variant == "on-api-only":
        from opentelemetry import metrics, trace

        agentrt.otel.instrument(
            tracer_provider=trace.NoOpTracerProvider(), meter_provider=metrics.NoOpMeterProvider()
        )
    elif variant != "off":
        tracer_provider, meter_provider, shutdown = _sdk()
        agentrt.otel.instrument(
            tracer_provider=tracer_provider,
            meter_provider=meter_provider,
            capture_content=variant == "on-content",
        )
        if variant == "off-after-uninstrument":
            agentrt.otel.uninstrument()
    model = memory_model(MemoryTransport(k), own=True, stream=stream)
    try:
        return await _chains(lambda: model.chain(PROMPT, tools=[add]).text(), chains, k)
    finally:
        agentrt.otel.uninstrument()
        await close_memory_model(model)
        if shutdown is not None:
            shutdown()


def sdk_floor(turns: int = 20_000) -> float:
    """CPU (µs) of the SDK calls of one turn, made directly: what agentrt cannot save."""
    import time

    from opentelemetry import context, trace

    tracer_provider, meter_provider, shutdown = _sdk()
    tracer = tracer_provider.get_tracer("floor")
    histogram = meter_provider.get_meter("floor").create_histogram("floor", unit="s")
    common = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "bench",
        "server.address": "bench.invalid",
        "server.port": 80,
    }
    end = {
        "gen_ai.response.finish_reasons": ("tool_calls",),
        "gen_ai.usage.input_tokens": 10,
        "gen_ai.usage.output_tokens": 5,
    }
    cpu0 = time.process_time()
    for _ in range(turns):
        for attributes in (common, {"gen_ai.operation.name": "execute_tool"}):
            span = tracer.start_span("chat bench", attributes=attributes)
            token = context.attach(trace.set_span_in_context(span))
            span.set_attributes(end)
            span.end()
            context.detach(token)
        for value in (0.001, 10, 5):
            histogram.record(value, common)
    cpu = time.process_time() - cpu0
    shutdown()
    return cpu / turns * 1e6


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {"sdk_floor_cpu_us_per_turn": round(sdk_floor(), 1)}
    for stream in (True, False):
        rounds: dict[str, list[float]] = {v: [] for v in VARIANTS}
        for _ in range(args.rounds):
            for variant in VARIANTS:
                figures = await run_variant(variant, stream=stream, chains=args.chains, k=args.k)
                rounds[variant].append(figures["cpu_us_per_turn"])
        best = {v: min(r) for v, r in rounds.items()}
        middle = {v: statistics.median(r) for v, r in rounds.items()}
        results["stream" if stream else "json"] = {
            v: {
                "cpu_us_per_turn": round(best[v], 1),
                "vs_off_percent": round((best[v] / best["off"] - 1) * 100, 1),
                "median_cpu_us_per_turn": round(middle[v], 1),
                "median_vs_off_percent": round((middle[v] / middle["off"] - 1) * 100, 1),
            }
            for v in VARIANTS
        }
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chains", type=int, default=60, help="chains per variant and round")
    parser.add_argument("--k", type=int, default=3, help="tool turns per chain")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--json", action="store_true", help="print JSON only")
    args = parser.parse_args(argv)
    if os.environ.get("AGENTRT_SMOKE"):  # CI runs the README's command: the smallest variant
        args.chains, args.rounds = 3, 1
    results = anyio.run(main_async, args)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(
        f"CPU per turn, {args.k} tool turns + 1 per chain, {args.chains} chains per round: "
        f"minimum (and median) of {args.rounds} rounds"
    )
    floor = results.pop("sdk_floor_cpu_us_per_turn")
    print(f"  the SDK's own calls for one turn (sdk-floor): {floor:.1f} µs")
    for mode, figures in results.items():
        for variant, row in figures.items():
            print(
                f"  {mode:6} {variant:24} {row['cpu_us_per_turn']:8.1f} µs"
                f"  {row['vs_off_percent']:+6.1f}%   (median {row['median_cpu_us_per_turn']:.1f} µs"
                f" {row['median_vs_off_percent']:+.1f}%)"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
