"""Shared pieces of the OpenTelemetry tests (no tests here).

The OpenTelemetry SDK's in-memory span exporter and metric reader collect what
``agentrt.otel`` emits; models talk to ``tools/fakeserver`` over loopback HTTP.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.to_thread
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import agentrt
from agentrt.otel import OTelHandler
from tools.fakeserver.script import ScriptedToolCall, Turn
from tools.fakeserver.server import FakeServer

KEY = "sk-otel-test-9f2d41c7a8e3b6"
PROVIDERS = {"openai": "openai", "anthropic": "anthropic", "gemini": "gcp.gemini"}
#: The generation options each test sets per provider, and the attribute each becomes.
OPTIONS: dict[str, dict[str, Any]] = {
    "openai": {"temperature": 0.25, "max_tokens": 100, "top_p": 0.5, "stop": ["END"], "seed": 7},
    "anthropic": {"temperature": 0.25, "max_tokens": 100, "top_p": 0.5, "stop": ["END"]},
    "gemini": {"temperature": 0.25, "max_tokens": 100, "top_p": 0.5, "stop": ["END"], "seed": 7},
}
OPTION_ATTRIBUTES = {
    "temperature": "gen_ai.request.temperature",
    "max_tokens": "gen_ai.request.max_tokens",
    "top_p": "gen_ai.request.top_p",
    "stop": "gen_ai.request.stop_sequences",
    "seed": "gen_ai.request.seed",
}


@pytest.fixture(scope="session")
def server() -> Iterator[FakeServer]:
    with FakeServer() as fake:
        yield fake


@pytest.fixture
def fake(server: FakeServer) -> Iterator[FakeServer]:
    server.reset()
    yield server
    server.reset()


def base_url(server: FakeServer, provider: str) -> str:
    return server.openai_base_url if provider == "openai" else server.url


def remote_model(server: FakeServer, provider: str, **options: Any) -> agentrt.AsyncModel:
    options.setdefault("retry", agentrt.RetryPolicy(initial_delay=0.01))  # short backoff
    return agentrt.get_async_model(
        f"{provider}:m-1", api_key=KEY, base_url=base_url(server, provider), **options
    )


@dataclass
class Telemetry:
    """An SDK tracer and meter provider collecting in memory, and a handler using them."""

    capture_content: bool | None = None
    max_content_chars: int | None = None
    exporter: InMemorySpanExporter = field(default_factory=InMemorySpanExporter)
    reader: InMemoryMetricReader = field(default_factory=InMemoryMetricReader)
    tracer_provider: TracerProvider = field(default_factory=TracerProvider)
    meter_provider: MeterProvider = field(init=False)
    handler: OTelHandler = field(init=False)

    def __post_init__(self) -> None:
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.meter_provider = MeterProvider(metric_readers=[self.reader])
        limit = self.max_content_chars
        extra = {} if limit is None else {"max_content_chars": limit}
        self.handler = OTelHandler(
            tracer_provider=self.tracer_provider,
            meter_provider=self.meter_provider,
            capture_content=self.capture_content,
            **extra,
        )

    def spans(self) -> list[ReadableSpan]:
        return sorted(self.exporter.get_finished_spans(), key=lambda s: s.start_time or 0)

    def named(self, prefix: str) -> list[ReadableSpan]:
        return [s for s in self.spans() if s.name.startswith(prefix)]

    def points(self, metric: str) -> list[HistogramDataPoint]:
        data = self.reader.get_metrics_data()
        found: list[HistogramDataPoint] = []
        if data is None:
            return found
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for m in scope.metrics:
                    if m.name == metric:
                        found.extend(m.data.data_points)  # type: ignore[arg-type]
        return found


@pytest.fixture
def telemetry() -> Telemetry:
    return Telemetry()


def children(spans: list[ReadableSpan], parent: ReadableSpan) -> list[ReadableSpan]:
    pid = parent.context.span_id  # type: ignore[union-attr]
    return [s for s in spans if s.parent is not None and s.parent.span_id == pid]


def shape(spans: list[ReadableSpan], root: ReadableSpan) -> list[str]:
    """The names of ``root``'s children by start time, each turn's tool spans sorted by name."""
    names: list[str] = []
    group: list[str] = []
    for span in children(spans, root):
        if span.name.startswith("execute_tool"):
            group.append(span.name)
            continue
        names += sorted(group)
        group = []
        names.append(span.name)
    return names + sorted(group)


def all_values(spans: list[ReadableSpan]) -> list[str]:
    """Every string in every span's name, attributes, events and status."""
    found: list[str] = []
    for span in spans:
        found.append(span.name)
        found.append(span.status.description or "")
        for attributes in [span.attributes or {}, *(e.attributes or {} for e in span.events)]:
            for key, value in attributes.items():
                found.append(key)
                found.extend(str(v) for v in (value if isinstance(value, tuple) else (value,)))
    return found


class Meeting:
    """Makes a sync and an async tool each wait for the other: they pass only in parallel."""

    def __init__(self) -> None:
        self.sync_started = threading.Event()
        self.async_started = threading.Event()

    def sync_side(self) -> bool:
        self.sync_started.set()
        return self.async_started.wait(10)

    async def async_side(self) -> bool:
        self.async_started.set()
        return await anyio.to_thread.run_sync(self.sync_started.wait, 10)


def tool_turn(index: int, text: str = "") -> Turn:
    """A turn asking for ``add`` (a sync tool) and ``mul`` (an async one)."""
    return Turn(
        text=text,
        tool_calls=[
            ScriptedToolCall("add", '{"a": 1, "b": 2}', id=f"call_add_{index}"),
            ScriptedToolCall("mul", '{"a": 2, "b": 3}', id=f"call_mul_{index}"),
        ],
    )
