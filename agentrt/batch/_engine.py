"""The batch engine: read items lazily, keep a bounded number running, emit one record each.

Shared by local batches and the Ray integration, which differ only in how one item is
executed (an ``Execute`` callable; one with ``start()``, ``serve()`` and ``stop()``
methods gets them called at the start (it may return the concurrency to use), as a
background task, and at the end, shielded).
What the engine guarantees:

- items are read as they are needed, never all at once: at most ``concurrency`` chains
  run, and a sync iterable is read in a worker thread, a chunk at a time;
- every item read gets exactly one record, whatever its chain did; a record is written to
  the results file (when there is one) before it is yielded, in the order yielded; when
  the batch is stopped early, the records that had finished but were not yielded yet are
  written at the end;
- ``ordered=True`` yields in input order; a record that finished early waits in a reorder
  buffer, and when the oldest unfinished item is ``window`` positions behind the newest,
  submission stalls until it finishes (memory stays bounded, never the whole input);
- closing the iterator early or cancelling the consumer cancels the running chains; the
  records already finished are written before the iterator closes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator
from collections.abc import Set as AbstractSet
from contextlib import aclosing
from typing import Any

import anyio
import anyio.lowlevel
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
        self._store = ResultsFile(results_path) if results_path is not None else None
        self._progress_option = progress
        self._revive = revive
        sized = hasattr(items, "__len__") and not hasattr(items, "__aiter__")
        self.summary = BatchSummary(total=len(items) if sized else None)
        self._next = 0  # the index the ordered output waits for
        self._moved = anyio.Event()
        self._error: BaseException | None = None
        self._buffer: dict[int, BatchResult] = {}  # finished, waiting for their turn
        self._unsent: list[BatchResult] = []  # finished, not delivered when stopped

    # --- the output --------------------------------------------------------------------

    async def run(self) -> AsyncGenerator[BatchResult, None]:
        """Run the batch, yielding each record (in input order when ``ordered``)."""
        store = self._store
        progress: Progress | None = None
        send: Any = None
        receive: Any = None
        try:
            if store is not None:
                await store.open()
            start = getattr(self._execute, "start", None)
            if start is not None:
                # The executor may only know its capacity once started (Ray: the workers).
                self._concurrency = await start() or self._concurrency
            self._window = 2 * self._concurrency
            self._slots = anyio.Semaphore(self._concurrency)
            send, receive = anyio.create_memory_object_stream[BatchResult](
                min(self._concurrency, 256)
            )
            progress = Progress(self._progress_option, self.summary)
            # This group is entered in the consumer's task and stays open across yields:
            # only code running in that task may cancel it (the feeder ends by closing the
            # stream, even when the items raise).
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._feed, send, progress)
                serve = getattr(self._execute, "serve", None)
                if serve is not None:
                    tg.start_soon(serve)
                async with aclosing(self._groups(receive)) as groups:
                    try:
                        async for group in groups:
                            if store is not None:
                                try:
                                    await store.write([r for r in group if not r.resumed])
                                except Exception as exc:  # the disk is full, the file went
                                    self._error = exc
                                    break
                            for ready in group:
                                yield ready
                    except GeneratorExit:
                        # The consumer stopped early: cancel the running chains and end
                        # normally (a GeneratorExit through the task group would come out
                        # wrapped in an exception group).
                        pass
                tg.cancel_scope.cancel()  # chains still running when the loop stopped
            if self._error is not None:
                raise self._error
        finally:
            with anyio.CancelScope(shield=True):
                if store is not None:
                    if receive is not None:
                        await self._write_leftovers(store, receive)
                    store.close()
                if receive is not None:
                    receive.close()
                    send.close()  # the feeder closes it, unless it never started
                stop = getattr(self._execute, "stop", None)
                if stop is not None:
                    await stop()
            if progress is not None:
                progress.close()

    async def _write_leftovers(self, store: ResultsFile, receive: Any) -> None:
        """Write the records that finished but were never yielded (the batch was stopped)."""
        leftovers = [*self._buffer.values(), *self._unsent]
        _drain(receive, leftovers)
        self._buffer.clear()
        self._unsent.clear()
        leftovers.sort(key=lambda r: r.index)
        with contextlib.suppress(OSError):  # already failing: the first error is raised
            await store.write([r for r in leftovers if not r.resumed])

    async def _groups(self, receive: Any) -> AsyncGenerator[list[BatchResult], None]:
        """The records to yield next, grouped as they became ready (one fsync per group)."""
        buffer = self._buffer
        async for result in receive:
            batch = [result]
            _drain(receive, batch)
            if not self._ordered:
                yield batch
                continue
            for r in batch:
                buffer[r.index] = r
            ready = []
            while self._next in buffer:
                ready.append(buffer.pop(self._next))
                self._advance()
            if ready:
                yield ready

    def _advance(self) -> None:
        self._next += 1
        if self._ordered:
            self._moved.set()
            self._moved = anyio.Event()

    # --- the input ---------------------------------------------------------------------

    async def _feed(self, send: Any, progress: Progress) -> None:
        async with send, anyio.create_task_group() as tg:
            try:
                index = 0
                async with aclosing(_read(self._items)) as raws:
                    async for raw in raws:
                        item = make_item(index, raw)
                        index += 1
                        while self._ordered and item.index >= self._next + self._window:
                            await self._moved.wait()
                        await self._slots.acquire()
                        # A slot freed by a chain being cancelled must not start another.
                        await anyio.lowlevel.checkpoint_if_cancelled()
                        tg.start_soon(self._one, item, send, progress)
                self.summary.total = index
            except Exception as exc:
                # The user's iterable raised: the items read so far finish and are
                # yielded, then the batch raises it.
                if self._error is None:
                    self._error = exc

    async def _one(self, item: BatchItem, send: Any, progress: Progress) -> None:
        try:
            result = await self._resumed(item)
            if result is None:
                self.summary.in_flight += 1
                try:
                    result = await self._execute(item)
                finally:
                    self.summary.in_flight -= 1
            self.summary.add(result)
            progress.update()
            try:
                await send.send(result)
            except BaseException:
                # Stopped while waiting to deliver: still written when the batch ends.
                self._unsent.append(result)
                raise
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


def _drain(receive: Any, into: list[BatchResult]) -> None:
    """Move every record already in the stream into ``into``, without waiting."""
    try:
        while True:
            into.append(receive.receive_nowait())
    except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
        pass


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
        chunk, error = await anyio.to_thread.run_sync(_take, iterator)
        for raw in chunk:
            yield raw
        if error is not None:
            raise error
        if len(chunk) < _READ_CHUNK:
            return


def _take(iterator: Iterator[Any]) -> tuple[list[Any], Exception | None]:
    chunk: list[Any] = []
    try:
        chunk.extend(itertools.islice(iterator, _READ_CHUNK))
    except Exception as exc:  # raised after the items before it: those still count
        return chunk, exc
    return chunk, None
