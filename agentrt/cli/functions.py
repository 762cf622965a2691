"""Loading ``--functions FILE.py``: its public functions and tools become tools."""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import sys
from pathlib import Path
from typing import Any

from ..tools import Tool, Toolbox
from .exit_codes import CLIError, ExitCode

__all__ = ["load_functions"]


def load_functions(path: str) -> list[Any]:
    """Run the Python file at ``path`` and return what it offers as tools.

    Offered: functions defined in the file whose names do not start with ``_``, and
    ``Tool`` objects and ``Toolbox`` instances bound to public names (imported or not).

    Raises:
        CLIError: the file cannot be read or run, or offers nothing.
    """
    file = Path(path).expanduser()
    if not file.is_file():
        raise CLIError(f"--functions: no such file: {path}", ExitCode.USAGE)
    digest = hashlib.sha1(str(file.resolve()).encode()).hexdigest()[:12]
    module_name = f"agentrt_functions_{digest}"
    spec = importlib.util.spec_from_file_location(module_name, file)
    if spec is None or spec.loader is None:
        raise CLIError(f"--functions: cannot load {path} as Python", ExitCode.USAGE)
    module = importlib.util.module_from_spec(spec)
    # Registered before running, so dataclasses and pydantic models in it can resolve.
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[module_name]
        raise CLIError(
            f"--functions: running {path} raised {type(exc).__name__}: {exc}", ExitCode.USAGE
        ) from exc
    offered: list[Any] = []
    for name, value in vars(module).items():
        if name.startswith("_"):
            continue
        if isinstance(value, (Tool, Toolbox)) or (
            inspect.isfunction(value) and value.__module__ == module_name
        ):
            offered.append(value)
    if not offered:
        raise CLIError(f"--functions: {path} defines no public functions or tools", ExitCode.USAGE)
    return offered
