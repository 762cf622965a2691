"""OpenTelemetry traces and metrics of chains, turns and tool calls (the ``otel`` extra).

Spans and metrics follow the OpenTelemetry GenAI semantic conventions, version
:data:`SEMCONV_VERSION` (status Development). Nothing leaves the process unless the
application configured an exporter, and message content is recorded only when asked for.

Example::

    from opentelemetry.sdk.trace import TracerProvider
    import agentrt.otel

    agentrt.otel.instrument(tracer_provider=TracerProvider())
"""

from __future__ import annotations

try:
    import opentelemetry.trace  # noqa: F401 - fail here, with the fix, not deep inside
except ImportError as exc:  # pragma: no cover - the extra is installed in CI
    raise ImportError("agentrt.otel needs OpenTelemetry: pip install 'agentrt[otel]'") from exc

from ._global import instrument, instrumented, uninstrument
from ._handler import CAPTURE_CONTENT_ENV, DEFAULT_MAX_CONTENT_CHARS, OTelHandler
from ._semconv import SEMCONV_VERSION

__all__ = [
    "CAPTURE_CONTENT_ENV",
    "DEFAULT_MAX_CONTENT_CHARS",
    "SEMCONV_VERSION",
    "OTelHandler",
    "instrument",
    "instrumented",
    "uninstrument",
]
