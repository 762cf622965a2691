"""The log database: where it lives, how it is opened, and its versioned schema.

The schema version is SQLite's ``PRAGMA user_version``. ``MIGRATIONS[i]`` holds the
statements that bring a database from version ``i`` to ``i + 1``; each migration runs in
its own ``BEGIN IMMEDIATE`` transaction together with the version bump, so two processes
opening a fresh database at once cannot both apply it.
"""

from __future__ import annotations

import os
import sqlite3
import sys
from pathlib import Path

__all__ = [
    "LOGS_PATH_ENV",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "connect",
    "default_logs_path",
    "migrate",
]

#: Environment variable that overrides the default log database path.
LOGS_PATH_ENV = "AGENTRT_LOGS_PATH"

MIGRATIONS: list[tuple[str, ...]] = [
    # 0 -> 1: chains, their turns and the tool calls of each turn.
    (
        """
        CREATE TABLE chains (
            id TEXT PRIMARY KEY,
            model TEXT NOT NULL,
            prompt TEXT NOT NULL,
            system TEXT,
            tools TEXT NOT NULL,
            max_turns INTEGER,
            status TEXT NOT NULL,
            error TEXT,
            text TEXT,
            turns INTEGER NOT NULL DEFAULT 0,
            input_tokens INTEGER,
            output_tokens INTEGER,
            total_tokens INTEGER,
            started_at REAL NOT NULL,
            duration REAL
        )
        """,
        "CREATE INDEX chains_started_at ON chains (started_at)",
        """
        CREATE TABLE responses (
            id TEXT PRIMARY KEY,
            chain_id TEXT REFERENCES chains (id),
            turn INTEGER NOT NULL,
            model TEXT NOT NULL,
            prompt TEXT,
            messages TEXT NOT NULL,
            system TEXT,
            options TEXT NOT NULL,
            text TEXT NOT NULL,
            status TEXT NOT NULL,
            error TEXT,
            finish_reason TEXT,
            raw_finish_reason TEXT,
            input_tokens INTEGER,
            output_tokens INTEGER,
            total_tokens INTEGER,
            started_at REAL,
            duration REAL,
            time_to_first_chunk REAL
        )
        """,
        "CREATE INDEX responses_chain ON responses (chain_id, turn)",
        """
        CREATE TABLE tool_calls (
            id INTEGER PRIMARY KEY,
            response_id TEXT NOT NULL REFERENCES responses (id),
            chain_id TEXT,
            position INTEGER NOT NULL,
            call_id TEXT NOT NULL,
            name TEXT NOT NULL,
            arguments TEXT NOT NULL,
            result TEXT,
            error TEXT,
            duration REAL
        )
        """,
        "CREATE INDEX tool_calls_response ON tool_calls (response_id, position)",
    ),
    # 1 -> 2: typed results: the resolved output mode of each turn and chain, and the
    # chain's validated output as JSON.
    (
        "ALTER TABLE responses ADD COLUMN output_mode TEXT",
        "ALTER TABLE chains ADD COLUMN output_mode TEXT",
        "ALTER TABLE chains ADD COLUMN output TEXT",
    ),
]

#: The schema version this agentrt writes and reads.
SCHEMA_VERSION = len(MIGRATIONS)


def default_logs_path() -> Path:
    """Return the log database path: ``AGENTRT_LOGS_PATH``, else the user's data directory.

    The data directory is ``$XDG_DATA_HOME`` (default ``~/.local/share``) on Linux and
    other Unix systems, ``~/Library/Application Support`` on macOS and ``%LOCALAPPDATA%``
    on Windows; the file is ``agentrt/logs.db`` inside it.
    """
    override = os.environ.get(LOGS_PATH_ENV)
    if override:
        return Path(override).expanduser()
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = str(Path.home() / "Library" / "Application Support")
    else:
        base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "agentrt" / "logs.db"


def connect(path: Path) -> sqlite3.Connection:
    """Open (creating if needed) the database at ``path`` in WAL mode and migrate it.

    The connection is in autocommit mode (``isolation_level=None``): writers open their
    own transactions with ``BEGIN IMMEDIATE``. It may be used from any thread, one at a
    time; the caller serialises access.

    Raises:
        sqlite3.Error: the file cannot be opened or is not a usable database.
        RuntimeError: the database was written by a newer agentrt.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10.0)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        # In WAL mode NORMAL loses no committed transaction on a crash of the process.
        conn.execute("PRAGMA synchronous=NORMAL")
        migrate(conn)
    except BaseException:
        conn.close()
        raise
    return conn


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the database to :data:`SCHEMA_VERSION`; return the version it had.

    Raises:
        RuntimeError: the database's version is newer than this agentrt knows.
    """
    found = _version(conn)
    _check_not_newer(found)
    if found == SCHEMA_VERSION:
        return found
    conn.execute("BEGIN IMMEDIATE")
    try:
        # Re-read inside the write lock: another process may have migrated meanwhile.
        current = _version(conn)
        _check_not_newer(current)
        for version in range(current, SCHEMA_VERSION):
            for statement in MIGRATIONS[version]:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {version + 1}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return found


def _version(conn: sqlite3.Connection) -> int:
    version: int = conn.execute("PRAGMA user_version").fetchone()[0]
    return version


def _check_not_newer(version: int) -> None:
    if version > SCHEMA_VERSION:
        raise RuntimeError(
            f"the log database has schema version {version}, newer than the version "
            f"{SCHEMA_VERSION} this agentrt understands: upgrade agentrt or use another "
            f"--log-path / {LOGS_PATH_ENV}"
        )
