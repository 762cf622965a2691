"""Reading the log database back: recent chains with their turns and tool calls."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path
from typing import Any

from ._schema import connect, default_logs_path

__all__ = ["read_chains", "recent_chains"]


def recent_chains(
    path: str | os.PathLike[str] | None = None, limit: int = 10
) -> list[dict[str, Any]]:
    """Return the ``limit`` most recent chains in the log database at ``path``.

    A database that does not exist yet holds no chains: it is not created.

    Args:
        path: the database; defaults to :func:`default_logs_path`.
        limit: how many chains, newest first.

    Returns:
        One dict per chain, as described in :func:`read_chains`.

    Raises:
        sqlite3.Error: the file is not a usable database.
        RuntimeError: the database is from a newer agentrt.
    """
    db = Path(path) if path is not None else default_logs_path()
    if not db.exists():
        return []
    conn = connect(db)
    try:
        return read_chains(conn, limit)
    finally:
        conn.close()


def read_chains(conn: sqlite3.Connection, limit: int = 10) -> list[dict[str, Any]]:
    """Read the ``limit`` most recent chains, newest first, from an open connection.

    Each chain is a dict with ``id``, ``model``, ``prompt``, ``system``, ``tools``,
    ``max_turns``, ``status``, ``error``, ``text``, ``started_at`` (Unix time),
    ``duration`` (seconds), ``usage`` (``None`` when no turn reported any) and ``turns``:
    a list of dicts with ``id``, ``turn``, ``model``, ``prompt``, ``messages``,
    ``system``, ``options``, ``text``, ``status``, ``error``, ``finish_reason``,
    ``raw_finish_reason``, ``usage``, ``started_at``, ``duration``,
    ``time_to_first_chunk`` and ``tool_calls`` (``call_id``, ``name``, ``arguments``
    as received, ``result``, ``error``, ``duration``).
    """
    if limit <= 0:
        return []
    conn_rows = conn.execute(
        "SELECT id, model, prompt, system, tools, max_turns, status, error, text, "
        "input_tokens, output_tokens, total_tokens, started_at, duration "
        "FROM chains ORDER BY started_at DESC, rowid DESC LIMIT ?",
        (limit,),
    ).fetchall()
    chains = []
    for row in conn_rows:
        (id_, model, prompt, system, tools, max_turns, status, error, text) = row[:9]
        chains.append(
            {
                "id": id_,
                "model": model,
                "prompt": prompt,
                "system": system,
                "tools": json.loads(tools),
                "max_turns": max_turns,
                "status": status,
                "error": error,
                "text": text,
                "usage": _usage(row[9:12]),
                "started_at": row[12],
                "duration": row[13],
                "turns": _turns(conn, id_),
            }
        )
    return chains


def _usage(values: tuple[Any, ...]) -> dict[str, int] | None:
    if values[0] is None:
        return None
    return dict(zip(("input_tokens", "output_tokens", "total_tokens"), values, strict=True))


def _turns(conn: sqlite3.Connection, chain_id: str) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT id, turn, model, prompt, messages, system, options, text, status, error, "
        "finish_reason, raw_finish_reason, input_tokens, output_tokens, total_tokens, "
        "started_at, duration, time_to_first_chunk "
        "FROM responses WHERE chain_id = ? ORDER BY turn",
        (chain_id,),
    ).fetchall()
    calls: dict[str, list[dict[str, Any]]] = {}
    for call in conn.execute(
        "SELECT response_id, call_id, name, arguments, result, error, duration "
        "FROM tool_calls WHERE chain_id = ? ORDER BY response_id, position",
        (chain_id,),
    ):
        calls.setdefault(call[0], []).append(
            {
                "call_id": call[1],
                "name": call[2],
                "arguments": call[3],
                "result": call[4],
                "error": call[5],
                "duration": call[6],
            }
        )
    return [
        {
            "id": row[0],
            "turn": row[1],
            "model": row[2],
            "prompt": row[3],
            "messages": json.loads(row[4]),
            "system": row[5],
            "options": json.loads(row[6]),
            "text": row[7],
            "status": row[8],
            "error": row[9],
            "finish_reason": row[10],
            "raw_finish_reason": row[11],
            "usage": _usage(row[12:15]),
            "started_at": row[15],
            "duration": row[16],
            "time_to_first_chunk": row[17],
            "tool_calls": calls.get(row[0], []),
        }
        for row in rows
    ]
