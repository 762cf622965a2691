"""SQLite logs of chains, turns and tool calls: ``SQLiteLogger`` and the reading API.

Tables (schema version in ``PRAGMA user_version``, see ``MIGRATIONS``):

- ``chains``: model, prompt, system, offered tools, status, error, text, usage, timings;
- ``responses``: one row per turn: model, prompt, the messages new in the turn, system,
  filtered options, text, status, error, (raw) finish reason, usage, timings;
- ``tool_calls``: name, arguments as received, result or error, duration.
"""

from ._logger import SQLiteLogger, filter_options
from ._reader import read_chains, recent_chains
from ._schema import LOGS_PATH_ENV, MIGRATIONS, SCHEMA_VERSION, connect, default_logs_path

__all__ = [
    "LOGS_PATH_ENV",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "SQLiteLogger",
    "connect",
    "default_logs_path",
    "filter_options",
    "read_chains",
    "recent_chains",
]
