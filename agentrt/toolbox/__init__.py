"""Ready-made tools: pass them in ``tools=[...]`` or by name to ``agentrt chain -T``.

- :data:`calculator`: safe arithmetic (an ``ast`` whitelist, never ``eval``);
- :data:`now`: the current date and time in an IANA time zone;
- :class:`HTTPTools`: ``http_get`` limited to allowed hosts, a size and a time;
- :class:`FileTools`: ``read_file`` and ``list_dir`` confined to a root directory.

Example::

    from agentrt.toolbox import FileTools, HTTPTools, calculator, now

    tools = [calculator, now, FileTools("docs"), HTTPTools(["api.example.com"])]
"""

from .calculator import CalculatorError, calculator, evaluate
from .clock import now
from .files import FileTools, PathEscapeError
from .http import HTTP_ALLOW_ENV, HostNotAllowedError, HTTPTools, allowed_hosts_from_env
from .registry import BUNDLED_TOOLS, ToolSettings, bundled_tool, bundled_tools

__all__ = [
    "BUNDLED_TOOLS",
    "HTTP_ALLOW_ENV",
    "CalculatorError",
    "FileTools",
    "HTTPTools",
    "HostNotAllowedError",
    "PathEscapeError",
    "ToolSettings",
    "allowed_hosts_from_env",
    "bundled_tool",
    "bundled_tools",
    "calculator",
    "evaluate",
    "now",
]
