"""Bundled tools by name, for ``agentrt chain -T NAME`` and ``agentrt tools``.

Configurable tools are built per call from :class:`ToolSettings`: ``read_file`` and
``list_dir`` need a root directory, ``http_get`` an allowlist.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UnknownToolError
from ..tools import Tool
from .calculator import calculator
from .clock import now
from .files import FileTools
from .http import HTTPTools

__all__ = ["BUNDLED_TOOLS", "ToolSettings", "bundled_tool", "bundled_tools"]


@dataclass(frozen=True)
class ToolSettings:
    """What the configurable bundled tools need.

    Attributes:
        root: the directory ``read_file`` and ``list_dir`` are confined to.
        allowed_hosts: the hosts ``http_get`` may fetch (empty: none).
    """

    root: Path = field(default_factory=Path.cwd)
    allowed_hosts: tuple[str, ...] = ()


def _file_tool(name: str) -> Callable[[ToolSettings], Tool]:
    def build(settings: ToolSettings) -> Tool:
        (tool,) = [t for t in FileTools(settings.root).tools() if t.name == name]
        return tool

    return build


def _http_get(settings: ToolSettings) -> Tool:
    tool: Tool = HTTPTools(settings.allowed_hosts).http_get
    return tool


#: name -> factory building the tool from the settings.
BUNDLED_TOOLS: dict[str, Callable[[ToolSettings], Tool]] = {
    "calculator": lambda _: calculator,
    "now": lambda _: now,
    "http_get": _http_get,
    "read_file": _file_tool("read_file"),
    "list_dir": _file_tool("list_dir"),
}


def bundled_tool(name: str, settings: ToolSettings | None = None) -> Tool:
    """Return the bundled tool called ``name``.

    Raises:
        UnknownToolError: no bundled tool has that name; the message lists them.
    """
    factory = BUNDLED_TOOLS.get(name)
    if factory is None:
        known = ", ".join(BUNDLED_TOOLS)
        raise UnknownToolError(f"there is no bundled tool named {name!r}; the tools are: {known}")
    return factory(settings or ToolSettings())


def bundled_tools(
    names: Iterable[str] | None = None,
    *,
    root: str | os.PathLike[str] | None = None,
    allowed_hosts: Iterable[str] = (),
) -> list[Tool]:
    """Return bundled tools by name (all of them when ``names`` is ``None``).

    Args:
        names: tool names, e.g. ``["calculator", "read_file"]``.
        root: the directory for ``read_file`` and ``list_dir`` (default: the current one).
        allowed_hosts: the allowlist for ``http_get`` (default: empty, refusing all).

    Raises:
        UnknownToolError: a name is not a bundled tool.
    """
    settings = ToolSettings(
        root=Path(root) if root is not None else Path.cwd(),
        allowed_hosts=tuple(allowed_hosts),
    )
    return [bundled_tool(name, settings) for name in (names or BUNDLED_TOOLS)]
