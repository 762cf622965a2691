"""The batch engine: read items lazily, keep a bounded number running, emit one record each.

Shared by local batches and the Ray integration, which differ only in how one item is
executed (an ``Execute`` callable). What the engine guarantees:

- items are read as they are needed, never all at once: at most ``concurrency`` chains
  run, and a sync iterable is read in a worker thread, a chunk at a time;
- every item read gets exactly one record, whatever its chain did; a record is written to
  the results file (when there is one) before it is yielded;
- ``ordered=True`` yields in input order; a record that finished early waits in a reorder
  buffer, and when the oldest unfinished item is ``window`` positions behind the newest,
  submission stalls until it finishes (memory stays bounded, never the whole input);
- closing the iterator early or cancelling the consumer cancels the running chains; the
  records already finished are written before the iterator closes.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator
from collections.abc import Set as AbstractSet
from contextlib import aclosing
from typing import Any

import anyio
import anyio.to_thread

from ._items import BatchItem, make_item
from ._progress import Progress, ProgressOption
from ._result import BatchResult, BatchSummary
from ._store import ResultsFile

__all__ = ["Engine", "Execute"]

Execute = Callable[[BatchItem], Awaitable[BatchResult]]

#: Sync iterables other than lists and tuples are read in a worker thread, this many at once.
_READ_CHUNK = 256


class Engine:
    """One run of a batch (see the module docstring)."""

    def __init__(
        self,
        items: Any,
        execute: Execute,
        *,
        concurrency: int,
        ordered: bool,
        results_path: Any,
        progress: ProgressOption,
        revive: Callable[[BatchResult], BatchResult] | None = None,
    ) -> None:
        self._items = items
        self._execute = execute
        self._concurrency = concurrency
        self._ordered = ordered
        self._window = 2 * concurrency
        self._store = ResultsFile(results_path) if results_path is not None else None
        self._progress_option = progress
        self._revive = revive
        sized = hasattr(items, "__len__") and not hasattr(items, "__aiter__")
        self.summary = BatchSummary(total=len(items) if sized else None)
        self._slots = anyio.Semaphore(concurrency)
        self._next = 0  # the index the ordered output waits for
        self._moved = anyio.Event()
        self._error: BaseException | None = None
        self._feeding = anyio.CancelScope()

    # --- the output --------------------------------------------------------------------

    async def run(self) -> AsyncGenerator[BatchResult, None]:
        """Run the batch, yielding each record (in input order when ``ordered``)."""
        store = self._store
        progress: Progress | None = None
        try:
            if store is not None:
                await store.open()
            progress = Progress(self._progress_option, self.summary)
            send, receive = anyio.create_memory_object_stream[BatchResult](
                min(self._concurrency, 256)
            )
            # Only the consumer's own task may cancel this group (it is entered in the
            # consumer's task, across yields): a failure inside stops the feeding, and the
            # loop below ends when the stream closes.
            async with anyio.create_task_group() as tg:
                if store is not None:
                    tg.start_soon(self._write, store)
                tg.start_soon(self._feed, send, progress)
                async with receive:
                    if self._ordered:
                        buffer: dict[int, BatchResult] = {}
                        async for result in receive:
                            buffer[result.index] = result
                            while self._next in buffer:
                                ready = buffer.pop(self._next)
                                self._advance()
                                yield ready
                    else:
                        async for result in receive:
                            yield result
                tg.cancel_scope.cancel()  # only the writer is left, idle
            if self._error is not None:
                raise self._error
        finally:
            with anyio.CancelScope(shield=True):
                if store is not None:
                    await store.flush()
                    store.close()
            if progress is not None:
                progress.close()

    def _advance(self) -> None:
        self._next += 1
        if self._ordered:
            self._moved.set()
            self._moved = anyio.Event()

    def _fail(self, error: BaseException) -> None:
        if self._error is None:
            self._error = error
        self._feeding.cancel()

    async def _write(self, store: ResultsFile) -> None:
        try:
            await store.writer()
        except Exception as exc:  # the disk is full, the file went away, ...
            self._fail(exc)

    # --- the input ---------------------------------------------------------------------

    async def _feed(self, send: Any, progress: Progress) -> None:
        try:
            with self._feeding:
                async with send, anyio.create_task_group() as tg:
                    index = 0
                    async with aclosing(_read(self._items)) as raws:
                        async for raw in raws:
                            item = make_item(index, raw)
                            index += 1
                            while self._ordered and item.index >= self._next + self._window:
                                await self._moved.wait()
                            await self._slots.acquire()
                            tg.start_soon(self._one, item, send, progress)
                    self.summary.total = index
        except Exception as exc:  # the user's iterable raised: the batch stops with it
            self._fail(exc)

    async def _one(self, item: BatchItem, send: Any, progress: Progress) -> None:
        try:
            result = await self._resumed(item)
            if result is None:
                self.summary.in_flight += 1
                try:
                    result = await self._execute(item)
                finally:
                    self.summary.in_flight -= 1
                if self._store is not None:
                    await self._store.append(result)
            self.summary.add(result)
            progress.update()
            await send.send(result)
        except Exception as exc:  # the results file failed (disk full, ...): stop
            self._fail(exc)
        finally:
            self._slots.release()

    async def _resumed(self, item: BatchItem) -> BatchResult | None:
        store = self._store
        offset = store.completed.get(item.index) if store is not None else None
        if store is None or offset is None:
            return None
        old = await store.read(offset)
        if old.key != item.key:
            self.summary.rerun += 1
            return None
        old = dataclasses.replace(old, resumed=True)
        return self._revive(old) if self._revive is not None else old


async def _read(items: Any) -> AsyncGenerator[Any, None]:
    """Iterate ``items`` without blocking the loop on a slow sync iterator (files, ...)."""
    if hasattr(items, "__aiter__"):
        iterator = items.__aiter__()
        try:
            async for raw in iterator:
                yield raw
        finally:
            close = getattr(iterator, "aclose", None)
            if close is not None:
                await close()
        return
    if isinstance(items, (list, tuple, range, AbstractSet)):
        for raw in items:
            yield raw
        return
    iterator = iter(items)
    while True:
        chunk = await anyio.to_thread.run_sync(_take, iterator)
        for raw in chunk:
            yield raw
        if len(chunk) < _READ_CHUNK:
            return


def _take(iterator: Iterator[Any]) -> list[Any]:
    return list(itertools.islice(iterator, _READ_CHUNK))
