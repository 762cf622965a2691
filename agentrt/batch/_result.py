"""Batch records and totals: ``BatchResult``, ``BatchSummary``, ``BatchProgress``.

A ``BatchResult`` is one line of the results file (``to_json`` / ``from_json``); the
summary and the progress numbers are derived from the records as they are made.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from ..messages import Usage

__all__ = ["BatchProgress", "BatchResult", "BatchSummary", "ItemStatus"]

ItemStatus = Literal["completed", "failed", "cancelled"]


@dataclass(frozen=True, slots=True)
class BatchResult:
    """The record of one input of a batch; every input gets exactly one.

    Attributes:
        index: the 0-based position of the input.
        input: the input's ``id`` when it had one, else the input itself (as JSON data).
        status: ``"completed"``, ``"failed"`` (the chain raised) or ``"cancelled"`` (a
            tool or hook raised ``CancelChain``).
        text: the final answer (the last turn's text); ``None`` unless completed.
        output: the validated ``output_type`` value when one was asked for, else ``None``.
        usage: the chain's usage added up; ``None`` when the provider reported none.
        turns: how many model calls the chain made.
        duration: seconds the chain ran.
        error_type: the exception's class name when it failed or was cancelled.
        error: the exception's message.
        attempt: 1, or more when the item was run again after its worker died (Ray).
        key: a hash of the input, checked when a run resumes from a results file.
        resumed: the record was read back from the results file, not run now.
    """

    index: int
    input: Any
    status: ItemStatus
    text: str | None = None
    output: Any = None
    usage: Usage | None = None
    turns: int = 0
    duration: float = 0.0
    error_type: str | None = None
    error: str | None = None
    attempt: int = 1
    key: str = ""
    resumed: bool = False

    def to_json(self) -> str:
        """Return the record as one line of JSON (no newline)."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        del data["resumed"]
        data["usage"] = self.usage.model_dump(exclude_none=True) if self.usage is not None else None
        data["output"] = _dump_output(self.output)
        return json.dumps(data, ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, line: str | bytes) -> BatchResult:
        """Read a record written by :meth:`to_json`.

        Raises:
            ValueError: the line is not such a record.
        """
        data = json.loads(line)
        if not isinstance(data, dict) or "index" not in data or "status" not in data:
            raise ValueError("not a batch record")
        names = {f.name for f in dataclasses.fields(cls)}
        known = {k: v for k, v in data.items() if k in names}
        usage = known.get("usage")
        known["usage"] = Usage.model_validate(usage) if usage is not None else None
        return cls(**known)


def _dump_output(value: Any) -> Any:
    if value is None or isinstance(value, (str, int, float, bool, list, dict)):
        return value
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    from pydantic import TypeAdapter

    return TypeAdapter(type(value)).dump_python(value, mode="json")


@dataclass(frozen=True, slots=True)
class BatchProgress:
    """How far a batch is: what ``progress=callable`` receives after every record.

    Attributes:
        done: records so far (completed, failed, cancelled and resumed).
        completed: completed records (resumed ones included).
        failed: failed records.
        cancelled: cancelled records.
        resumed: records read back from the results file instead of run.
        total: how many inputs there are, when ``items`` has a length; else ``None``.
        in_flight: chains running now.
        elapsed: seconds since the batch started.
        rate: records per second run in this session (resumed ones not counted).
        eta: estimated seconds left, when ``total`` is known and the rate is not zero.
        input_tokens: input tokens reported so far.
        output_tokens: output tokens reported so far.
        total_tokens: total tokens reported so far.
    """

    done: int
    completed: int
    failed: int
    cancelled: int
    resumed: int
    total: int | None
    in_flight: int
    elapsed: float
    rate: float
    eta: float | None
    input_tokens: int
    output_tokens: int
    total_tokens: int


@dataclass(slots=True)
class BatchSummary:
    """The totals of a batch, kept up to date as records are made.

    Attributes:
        total: the number of inputs when known (``len(items)``, or counted at the end).
        completed: completed records (resumed ones included).
        failed: failed records.
        cancelled: cancelled records.
        resumed: records read back from the results file.
        rerun: records in the results file whose input had changed, run again.
        in_flight: chains running now.
        usage: the usage of every chain run in this session.
        failures: failed and cancelled records by ``error_type``.
        started: ``time.monotonic()`` at the start.
        duration: seconds from the start to the last record.
    """

    total: int | None = None
    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    resumed: int = 0
    rerun: int = 0
    in_flight: int = 0
    usage: Usage = field(default_factory=Usage)
    failures: dict[str, int] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    duration: float = 0.0

    @property
    def done(self) -> int:
        """Records so far."""
        return self.completed + self.failed + self.cancelled

    def add(self, result: BatchResult) -> None:
        """Count one record."""
        if result.status == "completed":
            self.completed += 1
        elif result.status == "failed":
            self.failed += 1
        else:
            self.cancelled += 1
        if result.status != "completed":
            kind = result.error_type or "unknown"
            self.failures[kind] = self.failures.get(kind, 0) + 1
        if result.resumed:
            self.resumed += 1
        elif result.usage is not None:
            self.usage = self.usage + result.usage
        self.duration = time.monotonic() - self.started

    def progress(self) -> BatchProgress:
        """The numbers a progress display shows."""
        elapsed = time.monotonic() - self.started
        ran = self.done - self.resumed
        rate = ran / elapsed if elapsed > 0 else 0.0
        eta = None
        if self.total is not None and rate > 0:
            eta = max(0, self.total - self.done) / rate
        return BatchProgress(
            done=self.done,
            completed=self.completed,
            failed=self.failed,
            cancelled=self.cancelled,
            resumed=self.resumed,
            total=self.total,
            in_flight=self.in_flight,
            elapsed=elapsed,
            rate=rate,
            eta=eta,
            input_tokens=self.usage.input_tokens,
            output_tokens=self.usage.output_tokens,
            total_tokens=self.usage.total_tokens,
        )
