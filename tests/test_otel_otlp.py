"""What an operator's collector receives: spans over OTLP/HTTP to a loopback receiver."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from test_otel_kit import KEY, fake, remote_model, server, tool_turn

import agentrt
from agentrt.otel import OTelHandler
from agentrt.otel import _semconv as sc
from tools.fakeserver.script import Turn
from tools.fakeserver.server import FakeServer

__all__ = ["fake", "server"]  # fixtures, used by name


class Collector:
    """A minimal OTLP/HTTP trace receiver on 127.0.0.1 keeping every request it got."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                headers = {k.lower(): v for k, v in self.headers.items()}
                collector.requests.append((self.path, headers, body))
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1/traces"

    def spans(self) -> list[tuple[dict[str, Any], Span]]:
        """Every span received, with its resource attributes."""
        found = []
        for _path, _headers, body in self.requests:
            request = ExportTraceServiceRequest.FromString(body)
            for resource_spans in request.resource_spans:
                resource = _attributes(resource_spans.resource.attributes)
                for scope_spans in resource_spans.scope_spans:
                    assert scope_spans.scope.name == "agentrt"
                    found.extend((resource, span) for span in scope_spans.spans)
        return found


def _value(any_value: Any) -> Any:
    kind = any_value.WhichOneof("value")
    if kind == "array_value":
        return tuple(_value(v) for v in any_value.array_value.values)
    return getattr(any_value, kind)


def _attributes(pairs: Any) -> dict[str, Any]:
    return {pair.key: _value(pair.value) for pair in pairs}


@pytest.fixture
def collector() -> Iterator[Collector]:
    receiver = Collector()
    receiver.thread.start()
    yield receiver
    receiver.server.shutdown()
    receiver.server.server_close()


@agentrt.tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@agentrt.tool
async def mul(a: int, b: int) -> int:
    """Multiply two integers."""
    return a * b


@pytest.mark.anyio
async def test_spans_reach_an_otlp_http_collector(fake: FakeServer, collector: Collector) -> None:
    provider = TracerProvider(resource=Resource.create({"service.name": "support-agent"}))
    exporter = OTLPSpanExporter(endpoint=collector.endpoint, timeout=10)
    provider.add_span_processor(BatchSpanProcessor(exporter))  # exports off the event loop
    handler = OTelHandler(tracer_provider=provider)
    fake.push(tool_turn(0), Turn(text="3 and 6"))
    model = remote_model(fake, "anthropic", temperature=0.5)
    assert await model.chain("go", tools=[add, mul], callbacks=[handler]).text() == "3 and 6"
    await model.aclose()
    provider.shutdown()  # exports what is left, then stops the exporter

    assert {path for path, _, _ in collector.requests} == {"/v1/traces"}
    assert all(h["content-type"] == "application/x-protobuf" for _, h, _ in collector.requests)
    received = collector.spans()
    assert all(resource["service.name"] == "support-agent" for resource, _ in received)
    spans = {(span.name, span.span_id): span for _, span in received}
    names = sorted(name for name, _ in spans)
    assert names == ["chat m-1", "chat m-1", "execute_tool add", "execute_tool mul", "invoke_agent"]
    (root,) = [s for s in spans.values() if not s.parent_span_id]
    assert root.kind == Span.SPAN_KIND_INTERNAL
    for span in spans.values():
        assert span.trace_id == root.trace_id
        if span is not root:
            assert span.parent_span_id == root.span_id
    chats = [s for s in spans.values() if s.name == "chat m-1"]
    for chat in chats:
        assert chat.kind == Span.SPAN_KIND_CLIENT
        attributes = _attributes(chat.attributes)
        assert attributes[sc.PROVIDER_NAME] == "anthropic"
        assert attributes["gen_ai.request.temperature"] == 0.5
        assert attributes[sc.SERVER_PORT] == fake.port
        assert attributes[sc.USAGE_INPUT_TOKENS] == 10
    finishes = sorted(_attributes(c.attributes)[sc.RESPONSE_FINISH_REASONS] for c in chats)
    assert finishes == [("stop",), ("tool_calls",)]
    # nothing secret on the wire
    assert all(KEY.encode() not in body for _, _, body in collector.requests)
