"""Running one batch item as a chain and turning whatever happened into its record.

Used by local batches and, inside each worker, by the Ray integration.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ..errors import RateLimitError
from ._items import BatchItem
from ._pace import PacingHandler, pacer_pause
from ._result import BatchResult

__all__ = ["MakeChain", "revive_output", "run_item"]

MakeChain = Callable[..., Any]


async def run_item(
    make_chain: MakeChain,
    item: BatchItem,
    options: dict[str, Any],
    *,
    handler: Any = None,
    pacer: Any = None,
    attempt: int = 1,
) -> BatchResult:
    """Run ``item``'s chain to its end and return its record; only cancellation escapes.

    Args:
        make_chain: ``model.chain`` (or the sync facade's equivalent).
        item: the normalised input.
        options: the batch's chain options; the item's own options override them.
        handler: a callback handler added to every chain (pacing).
        pacer: told about ``RateLimitError`` failures and completed chains.
        attempt: the attempt number to record.
    """
    started = time.perf_counter()
    if item.problem is not None:
        return BatchResult(
            item.index,
            item.input,
            "failed",
            error_type="UsageError",
            error=item.problem,
            attempt=attempt,
            key=item.key,
        )
    merged = {**options, **item.options}
    want_output = merged.get("output_type") is not None
    if handler is not None:
        merged["callbacks"] = [*merged.get("callbacks", ()), handler]
    if pacer is not None and not isinstance(handler, PacingHandler):
        # No per-request pacing: a 429 pause holds the chain's start instead.
        await pacer_pause(pacer)
    chain: Any = None
    try:
        chain = make_chain(item.prompt, **merged)
        await chain.text()
        output = await chain.output() if want_output and hasattr(chain, "output") else None
    except Exception as exc:
        if pacer is not None and isinstance(exc, RateLimitError):
            pacer.rate_limited()
        return BatchResult(
            item.index,
            item.input,
            "failed",
            usage=chain.usage if chain is not None else None,
            turns=len(chain.responses) if chain is not None else 0,
            duration=time.perf_counter() - started,
            error_type=type(exc).__name__,
            error=str(exc),
            attempt=attempt,
            key=item.key,
        )
    responses = chain.responses
    if chain.status == "cancelled":  # CancelChain from a tool or a hook
        error = chain.error
        return BatchResult(
            item.index,
            item.input,
            "cancelled",
            usage=chain.usage,
            turns=len(responses),
            duration=time.perf_counter() - started,
            error_type=type(error).__name__ if error is not None else None,
            error=str(error) if error is not None else None,
            attempt=attempt,
            key=item.key,
        )
    if pacer is not None:
        pacer.succeeded()
    return BatchResult(
        item.index,
        item.input,
        "completed",
        # The final answer: the last turn's text (earlier turns asked for tools).
        text=responses[-1].text_so_far if responses else "",
        output=output,
        usage=chain.usage,
        turns=len(responses),
        duration=time.perf_counter() - started,
        attempt=attempt,
        key=item.key,
    )


def revive_output(output_type: Any) -> Callable[[BatchResult], BatchResult] | None:
    """A function that turns a resumed record's JSON ``output`` back into ``output_type``.

    ``None`` when ``output_type`` is not something pydantic validates (a JSON Schema
    dict, say): the stored JSON is then kept as it is.
    """
    if output_type is None or isinstance(output_type, dict):
        return None
    from pydantic import TypeAdapter

    try:
        adapter: TypeAdapter[Any] = TypeAdapter(output_type)
    except Exception:
        return None

    def revive(record: BatchResult) -> BatchResult:
        import dataclasses

        if record.output is None:
            return record
        try:
            value = adapter.validate_python(record.output)
        except Exception:
            return record
        return dataclasses.replace(record, output=value)

    return revive
