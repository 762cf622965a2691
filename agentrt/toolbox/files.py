"""``FileTools``: ``read_file`` and ``list_dir`` confined to one root directory.

Every path the model sends is resolved (following symbolic links) and must land inside
the root, itself resolved once when the toolbox is created. So ``../`` sequences, absolute
paths elsewhere and symbolic links pointing out of the root are all refused, each with a
message saying which rule it broke. Files are opened through their resolved path.

A process that can change the tree while a call runs (swap a directory for a link between
the check and the open) is outside this guarantee: give the tools a root that the model's
other tools cannot write to.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

from ..errors import ToolError
from ..tools import Toolbox

__all__ = ["FileTools", "PathEscapeError"]


class PathEscapeError(ToolError, PermissionError):
    """A path leads outside the toolbox's root directory."""


class FileTools(Toolbox):
    """``read_file`` and ``list_dir`` over the files below ``root``.

    Args:
        root: the directory the tools may read; it must exist.
        max_bytes: the most bytes ``read_file`` returns; longer files are truncated.
        max_entries: the most entries ``list_dir`` returns.

    Raises:
        NotADirectoryError: ``root`` is not an existing directory.
    """

    def __init__(
        self, root: str | os.PathLike[str], *, max_bytes: int = 200_000, max_entries: int = 1_000
    ) -> None:
        resolved = Path(root).expanduser().resolve()
        if not resolved.is_dir():
            raise NotADirectoryError(f"FileTools root {str(root)!r} is not a directory")
        self._root = resolved
        self._max_bytes = max_bytes
        self._max_entries = max_entries

    @property
    def root(self) -> Path:
        """The resolved root directory."""
        return self._root

    def _resolve(self, path: str) -> Path:
        """Map a model-given path to a real path inside the root, or refuse it."""
        if "\x00" in path:
            raise PathEscapeError(f"the path {path!r} contains a NUL character")
        given = Path(path.strip() or ".")
        candidate = given if given.is_absolute() else self._root / given
        try:
            resolved = candidate.resolve()
        except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop
            raise ToolError(f"cannot resolve the path {path!r}: {exc}") from exc
        if resolved == self._root or resolved.is_relative_to(self._root):
            return resolved
        lexical = Path(os.path.normpath(candidate))
        if lexical == self._root or lexical.is_relative_to(self._root):
            raise PathEscapeError(
                f"the path {path!r} goes through a symbolic link that points outside the "
                "allowed root directory; only files inside it can be read"
            )
        if given.is_absolute():
            raise PathEscapeError(
                f"the absolute path {path!r} is outside the allowed root directory; "
                "use a path relative to it"
            )
        raise PathEscapeError(
            f"the path {path!r} leaves the allowed root directory ('..' cannot go above "
            "it); use a path relative to the root"
        )

    def _relative(self, resolved: Path) -> str:
        return resolved.relative_to(self._root).as_posix() or "."

    def read_file(self, path: str) -> dict[str, Any]:
        """Read a text file below the root directory.

        Args:
            path: the file's path relative to the root directory, e.g. "docs/notes.txt".
        """
        resolved = self._resolve(path)
        try:
            mode = resolved.stat().st_mode
            if stat.S_ISDIR(mode):
                raise ToolError(f"{path!r} is a directory: call list_dir on it")
            if not stat.S_ISREG(mode):
                # A FIFO or device would block or never end.
                raise ToolError(f"{path!r} is not a regular file")
            with resolved.open("rb") as handle:
                data = handle.read(self._max_bytes + 1)
                size = os.fstat(handle.fileno()).st_size
        except FileNotFoundError as exc:
            raise ToolError(f"there is no file {path!r}; call list_dir to see the files") from exc
        except OSError as exc:
            raise ToolError(f"cannot read {path!r}: {exc.strerror or exc}") from exc
        truncated = len(data) > self._max_bytes
        return {
            "path": self._relative(resolved),
            "size": size,
            "truncated": truncated,
            "content": data[: self._max_bytes].decode("utf-8", errors="replace"),
        }

    def list_dir(self, path: str = ".") -> dict[str, Any]:
        """List a directory below the root directory: names, types and sizes.

        Args:
            path: the directory's path relative to the root directory; "." is the root.
        """
        resolved = self._resolve(path)
        try:
            with os.scandir(resolved) as scan:
                entries = sorted(scan, key=lambda e: e.name)
        except FileNotFoundError as exc:
            raise ToolError(f"there is no directory {path!r}") from exc
        except NotADirectoryError as exc:
            raise ToolError(f"{path!r} is a file, not a directory: call read_file") from exc
        except OSError as exc:
            raise ToolError(f"cannot list {path!r}: {exc.strerror or exc}") from exc
        listed = [_describe(entry) for entry in entries[: self._max_entries]]
        return {
            "path": self._relative(resolved),
            "entries": listed,
            "truncated": len(entries) > self._max_entries,
        }


def _describe(entry: os.DirEntry[str]) -> dict[str, Any]:
    try:
        info = entry.stat(follow_symlinks=False)
    except OSError:
        return {"name": entry.name, "type": "unknown"}
    mode = info.st_mode
    if stat.S_ISLNK(mode):
        kind = "symlink"
    elif stat.S_ISDIR(mode):
        kind = "directory"
    elif stat.S_ISREG(mode):
        kind = "file"
    else:
        kind = "other"
    described: dict[str, Any] = {"name": entry.name, "type": kind}
    if kind == "file":
        described["size"] = info.st_size
    return described
