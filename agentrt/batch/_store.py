"""The results file: JSON Lines, appended and fsynced, read back to resume.

Guarantees: a record is on disk (written and fsynced) before the batch yields it, and the
file holds the records in the order they are yielded. Records ready together share one
write and one fsync (group commit), done in a worker thread so the event loop never waits
on the disk. A line cut short by a crash is removed when the file is opened again. The file is
locked (``flock``) while a batch has it open, so two batches cannot interleave in it.

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


def _lock(fd: int, path: Path) -> None:
    """Hold an exclusive advisory lock on the file while the batch runs (POSIX only).

    Raises:
        UsageError: another batch (in this process or another) has the file open.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no lock
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        raise UsageError(
            f"results_path={str(path)!r} is in use by another running batch; give each "
            "batch its own results file"
        ) from exc


class ResultsFile:
    """An append-only JSONL file of :class:`BatchResult` records."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        #: index -> byte offset of its last record, for the indexes last ``completed``.
        self.completed: dict[int, int] = {}
        self._file: int | None = None

    # --- opening -----------------------------------------------------------------------

    async def open(self) -> None:
        """Read what a previous run left, cut a torn last line, and open for appending.

        Raises:
            UsageError: the file holds something other than batch records.
        """
        await anyio.to_thread.run_sync(self._open_sync)

    def _open_sync(self) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            _lock(fd, self.path)
            end = self._load()
            os.ftruncate(fd, end)
            os.lseek(fd, end, os.SEEK_SET)
        except BaseException:
            os.close(fd)
            raise
        self._file = fd

    def _load(self) -> int:
        """Index the records a previous run left; return where the whole lines end."""
        completed: dict[int, int] = {}
        offset = 0
        with self.path.open("rb") as f:
            for number, line in enumerate(f, 1):
                if not line.endswith(b"\n"):
                    break  # torn by a crash: cut off by the caller
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
        self.completed = completed
        return offset

    async def read(self, offset: int) -> BatchResult:
        """Read back the record that starts at ``offset``."""
        return await anyio.to_thread.run_sync(self._read_sync, offset)

    def _read_sync(self, offset: int) -> BatchResult:
        with self.path.open("rb") as f:
            f.seek(offset)
            return BatchResult.from_json(f.readline())

    # --- appending ---------------------------------------------------------------------

    async def write(self, records: list[BatchResult]) -> None:
        """Append ``records`` and return once they are on disk (one fsync for all)."""
        if records:
            data = "".join(r.to_json() + "\n" for r in records).encode()
            await anyio.to_thread.run_sync(self._write_sync, data)

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
