"""The results file: JSON Lines, appended and fsynced, read back to resume.

Guarantees: a record is on disk (written, flushed and fsynced) before the batch yields it,
so a killed process loses at most the chains that were still running. Records finishing
together share one fsync (group commit), done in a worker thread so the event loop never
waits on the disk. A line cut short by a crash is removed when the file is opened again.

Resume: the last record of each index counts. An index whose last record is
``completed`` is not run again if the input at that index still has the same hash
(``key``); otherwise the item is run again and its new record appended after the old one.
"""

from __future__ import annotations

import os
from pathlib import Path

import anyio
import anyio.to_thread

from ..errors import UsageError
from ._result import BatchResult

__all__ = ["ResultsFile"]


class ResultsFile:
    """An append-only JSONL file of :class:`BatchResult` records."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        #: index -> byte offset of its last record, for the indexes last ``completed``.
        self.completed: dict[int, int] = {}
        self._file: int | None = None
        self._pending: list[tuple[bytes, anyio.Event]] = []
        self._wake = anyio.Event()

    # --- opening -----------------------------------------------------------------------

    async def open(self) -> None:
        """Read what a previous run left, cut a torn last line, and open for appending.

        Raises:
            UsageError: the file holds something other than batch records.
        """
        await anyio.to_thread.run_sync(self._open_sync)

    def _open_sync(self) -> None:
        completed: dict[int, int] = {}
        end = 0
        if self.path.exists():
            with self.path.open("rb") as f:
                offset = 0
                for number, line in enumerate(f, 1):
                    if not line.endswith(b"\n"):
                        break  # torn by a crash: dropped below
                    try:
                        record = BatchResult.from_json(line)
                    except (ValueError, TypeError) as exc:
                        raise UsageError(
                            f"results_path={str(self.path)!r}: line {number} is not a batch "
                            f"record ({exc}); pass the results file of an earlier run, or a "
                            "new path"
                        ) from exc
                    if record.status == "completed":
                        completed[record.index] = offset
                    else:
                        completed.pop(record.index, None)
                    offset += len(line)
                end = offset
        self.completed = completed
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            os.ftruncate(fd, end)
            os.lseek(fd, end, os.SEEK_SET)
        except BaseException:
            os.close(fd)
            raise
        self._file = fd

    async def read(self, offset: int) -> BatchResult:
        """Read back the record that starts at ``offset``."""
        return await anyio.to_thread.run_sync(self._read_sync, offset)

    def _read_sync(self, offset: int) -> BatchResult:
        with self.path.open("rb") as f:
            f.seek(offset)
            return BatchResult.from_json(f.readline())

    # --- appending ---------------------------------------------------------------------

    async def append(self, record: BatchResult) -> None:
        """Queue ``record`` and return once it is on disk."""
        done = anyio.Event()
        self._pending.append(((record.to_json() + "\n").encode(), done))
        self._wake.set()
        await done.wait()

    async def writer(self) -> None:
        """Write queued records as they come, one fsync per group; run as a task."""
        while True:
            await self._wake.wait()
            self._wake = anyio.Event()
            await self.flush()

    async def flush(self) -> None:
        """Write every queued record now (call it shielded when the batch is cancelled)."""
        while self._pending:
            group, self._pending = self._pending, []
            await anyio.to_thread.run_sync(self._write_sync, b"".join(line for line, _ in group))
            for _, done in group:
                done.set()

    def _write_sync(self, data: bytes) -> None:
        assert self._file is not None
        view = memoryview(data)
        while view:
            written = os.write(self._file, view)
            view = view[written:]
        os.fsync(self._file)

    def close(self) -> None:
        """Close the file."""
        if self._file is not None:
            os.close(self._file)
            self._file = None
