"""Batches: one chain per input, thousands at a time, one record each.

``run_batch(model, items, ...)`` is an async iterator of :class:`BatchResult` records
(``run_batch_sync`` the same for a sync ``Model``); ``RateLimit`` paces the whole batch.
Beyond one machine, :mod:`agentrt.ray` runs the same records on a Ray cluster.
"""

from __future__ import annotations

from ._pace import RateLimit
from ._result import BatchProgress, BatchResult, BatchSummary
from ._run import BatchRun, BatchRunSync, run_batch, run_batch_sync

__all__ = [
    "BatchProgress",
    "BatchResult",
    "BatchRun",
    "BatchRunSync",
    "BatchSummary",
    "RateLimit",
    "run_batch",
    "run_batch_sync",
]
