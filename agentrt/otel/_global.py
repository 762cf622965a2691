"""``instrument()`` / ``uninstrument()``: one ``OTelHandler`` for every model in the process.

The handler is registered with agentrt's global handler registry
(``agentrt.callbacks.add_global_handler``), which adds it to the hooks of every chain and
prompt created afterwards. A chain keeps the handlers it was created with: one created
before ``instrument()`` is not traced, one created before ``uninstrument()`` still is.
"""

from __future__ import annotations

import threading

from opentelemetry import metrics, trace

from ..callbacks import add_global_handler, remove_global_handler
from ._handler import DEFAULT_MAX_CONTENT_CHARS, OTelHandler

__all__ = ["instrument", "instrumented", "uninstrument"]

_lock = threading.Lock()
_installed: OTelHandler | None = None


def instrument(
    *,
    tracer_provider: trace.TracerProvider | None = None,
    meter_provider: metrics.MeterProvider | None = None,
    capture_content: bool | None = None,
    max_content_chars: int = DEFAULT_MAX_CONTENT_CHARS,
) -> OTelHandler:
    """Trace every chain, turn and tool call of every model in this process.

    Calling it again replaces the handler of the previous call (never two at once).

    Args:
        tracer_provider: where spans go; the global tracer provider by default.
        meter_provider: where metrics go; the global meter provider by default.
        capture_content: record message content; ``None`` reads
            ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`` (off unless ``true``).
        max_content_chars: the most characters one content attribute may have.

    Returns:
        The registered handler.

    Raises:
        UsageError: an argument of the wrong type (see :class:`OTelHandler`).
    """
    global _installed
    handler = OTelHandler(
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        capture_content=capture_content,
        max_content_chars=max_content_chars,
    )
    with _lock:
        if _installed is not None:
            remove_global_handler(_installed)
        add_global_handler(handler)
        _installed = handler
    return handler


def uninstrument() -> None:
    """Stop tracing chains created from now on (a no-op when not instrumented)."""
    global _installed
    with _lock:
        if _installed is not None:
            remove_global_handler(_installed)
            _installed = None


def instrumented() -> OTelHandler | None:
    """The handler :func:`instrument` registered, or ``None``."""
    return _installed
