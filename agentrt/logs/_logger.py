"""``SQLiteLogger``: a callback handler that records chains, turns and tool calls.

Guarantees:

- the event loop never waits on SQLite: every statement runs in a worker thread through
  ``anyio.to_thread.run_sync``, on one connection owned by the logger and serialised by a
  lock, so one logger serves any number of concurrent chains (and event loops);
- one transaction per turn: a turn's row, the rows of its tool calls and the updated chain
  row are written together once the turn's tools have all finished. A chain turn without
  tool calls (an answer, a failure, a cancellation) is the chain's last: it is written
  with the chain's final state at ``on_chain_end``, as are calls cut short by
  cancellation, with an error saying so. A lone ``model.prompt()`` turn is written when
  it ends;
- nothing secret is stored: request options whose names look like credentials are
  dropped, and the values of the providers' API-key environment variables (plus any
  ``redact=`` strings) are replaced by ``[redacted]`` wherever they appear.

An exception inside a hook is logged by agentrt's callback machinery and never breaks the
chain being recorded.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio.to_thread

from ..callbacks import CallbackHandler
from ..messages import Message, ToolCall, ToolResult
from ..output import output_json
from ..providers import PROVIDERS
from ._reader import read_chains
from ._schema import connect, default_logs_path

__all__ = ["SQLiteLogger", "filter_options"]

REDACTED = "[redacted]"

# Option names that may carry credentials ("max_tokens" and friends are kept).
_SECRET_NAME = re.compile(
    r"key|secret|token|passw|auth|credential|cookie|header|signature|session", re.IGNORECASE
)
_COUNT_NAME = re.compile(r"(^|_)tokens$", re.IGNORECASE)
_UNFINISHED = "the tool call was cancelled before it finished"

Statement = tuple[str, Sequence[Any]]


def filter_options(options: dict[str, Any]) -> dict[str, Any]:
    """Return the generation options that are safe to store.

    Drops names that look like credentials (``api_key``, ``extra_headers``, ``token``...,
    but not ``max_tokens``), at every nesting level, and values that are not plain JSON.
    """
    kept: dict[str, Any] = {}
    for name, value in options.items():
        if not isinstance(name, str):
            continue
        if _SECRET_NAME.search(name) and not _COUNT_NAME.search(name):
            continue
        cleaned = _plain_json(value)
        if cleaned is not _DROP:
            kept[name] = cleaned
    return kept


_DROP = object()


def _plain_json(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, dict):
        return filter_options(value)
    if isinstance(value, (list, tuple)):
        items = [_plain_json(v) for v in value]
        return [v for v in items if v is not _DROP]
    return _DROP


def _error_text(error: BaseException | None) -> str | None:
    if error is None:
        return None
    message = str(error)
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


def _user_text(messages: Iterable[Message]) -> str | None:
    texts = [m.content for m in messages if m.role == "user" and m.content]
    return "\n\n".join(texts) if texts else None


def _new_messages(messages: Sequence[Message]) -> list[Message]:
    """The messages a turn adds to the conversation: those after the last assistant one."""
    for index in range(len(messages) - 1, -1, -1):
        if messages[index].role == "assistant":
            return list(messages[index + 1 :])
    return list(messages)


@dataclass
class _PendingTurn:
    """A chain turn whose tool calls are still running."""

    response: Any
    calls: list[ToolCall]
    results: list[ToolResult | None] = field(default_factory=list)
    flushing: bool = False

    def add(self, call: ToolCall, result: ToolResult) -> None:
        for index, known in enumerate(self.calls):
            if known is call or (known.id == call.id and self.results[index] is None):
                self.results[index] = result
                return

    @property
    def complete(self) -> bool:
        return all(r is not None for r in self.results)


class SQLiteLogger(CallbackHandler):
    """Record every chain, turn and tool call into a SQLite database.

    Pass it in ``callbacks=[...]`` of a model, a chain or a prompt. One logger may serve
    many concurrent chains; close it when done (``close()``, ``await aclose()``, or use it
    as a context manager).

    Example::

        async with SQLiteLogger("logs.db") as logger:
            await model.chain("hi", callbacks=[logger]).text()

    Args:
        path: the database file; defaults to :func:`default_logs_path`
            (``AGENTRT_LOGS_PATH`` or the user's data directory).
        redact: extra strings never to store (replaced by ``[redacted]``).
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *, redact: Iterable[str] = ()):
        self.path = Path(path) if path is not None else default_logs_path()
        secrets = {os.environ.get(env) for _, _, env in PROVIDERS.values() if env}
        secrets.update(redact)
        # Very short values would redact ordinary words; real keys are long.
        self._secrets = tuple(sorted((s for s in secrets if s and len(s) >= 8), key=len)[::-1])
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._closed = False
        self._pending: dict[str, _PendingTurn] = {}

    # --- lifecycle -------------------------------------------------------------------

    def open(self) -> SQLiteLogger:
        """Open (and create or migrate) the database now instead of at the first write.

        Returns:
            The logger itself.

        Raises:
            sqlite3.Error: the file cannot be opened or is not a SQLite database.
            OSError: the directory cannot be created.
            RuntimeError: the logger is closed, or the database is from a newer agentrt.
        """
        with self._lock:
            self._connection()
        return self

    def close(self) -> None:
        """Close the connection; later writes fail (and are logged, not raised)."""
        with self._lock:
            self._closed = True
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    async def aclose(self) -> None:
        """Close the connection from async code, without blocking the event loop."""
        await anyio.to_thread.run_sync(self.close)

    def __enter__(self) -> SQLiteLogger:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> SQLiteLogger:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<SQLiteLogger {str(self.path)!r}>"

    # --- reading ---------------------------------------------------------------------

    async def recent_chains(self, limit: int = 10) -> list[dict[str, Any]]:
        """Return the most recent chains, newest first (see :func:`read_chains`)."""

        def read() -> list[dict[str, Any]]:
            with self._lock:
                return read_chains(self._connection(), limit)

        return await anyio.to_thread.run_sync(read)

    # --- hooks -----------------------------------------------------------------------

    async def on_turn_end(self, response: Any) -> None:
        """Write a lone turn; keep a chain turn until its tool calls have run."""
        if response.chain is None:  # a lone ``model.prompt()``
            await self._write([self._response_row(response)])
            return
        # A chain turn without tool calls is the chain's last: on_chain_end writes it with
        # the chain's final state, in one transaction.
        calls = response.message.tool_calls if response.status == "completed" else []
        self._pending[response.id] = _PendingTurn(response, calls, [None] * len(calls))

    async def on_tool_end(self, response: Any, call: ToolCall, result: ToolResult) -> None:
        """Record a tool result; write the turn once all its calls have one."""
        await self._tool_done(response, call, result)

    async def on_tool_error(self, response: Any, call: ToolCall, result: ToolResult) -> None:
        """Record a failed tool call; write the turn once all its calls have a result."""
        await self._tool_done(response, call, result)

    async def on_chain_end(self, chain: Any) -> None:
        """Write the turns still pending (calls cut short) and the chain's final state."""
        statements: list[Statement] = []
        for response in chain.responses:
            pending = self._pending.pop(response.id, None)
            if pending is not None:
                statements.extend(self._turn_rows(pending))
        statements.append(self._chain_row(chain))
        await self._write(statements)

    async def _tool_done(self, response: Any, call: ToolCall, result: ToolResult) -> None:
        pending = self._pending.get(response.id)
        if pending is None:
            return
        pending.add(call, result)
        if not pending.complete or pending.flushing:
            return
        # Checked and set without an await in between: one flush per turn.
        pending.flushing = True
        try:
            await self._write([*self._turn_rows(pending), self._chain_row(response.chain)])
        except BaseException:
            pending.flushing = False  # on_chain_end writes it instead
            raise
        self._pending.pop(response.id, None)

    # --- rows ------------------------------------------------------------------------

    def _clean(self, text: str | None) -> str | None:
        if text is None:
            return None
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text

    def _json(self, value: Any) -> str:
        return self._clean(json.dumps(value, ensure_ascii=False, default=str)) or ""

    def _turn_rows(self, pending: _PendingTurn) -> list[Statement]:
        response = pending.response
        rows = [self._response_row(response)]
        for position, (call, result) in enumerate(zip(pending.calls, pending.results, strict=True)):
            rows.append(self._tool_row(response, position, call, result))
        return rows

    def _response_row(self, response: Any) -> Statement:
        request = response.request
        new = _new_messages(request.messages)
        usage = response.usage
        chain = response.chain
        values = (
            response.id,
            chain.id if chain is not None else None,
            response.turn,
            response.model,
            self._clean(_user_text(new)),
            self._json([m.model_dump(mode="json", exclude_defaults=True) for m in new]),
            self._clean(request.system),
            self._json(filter_options(request.options)),
            self._clean(response.text_so_far) or "",
            response.status,
            self._clean(_error_text(response.error)),
            response.finish_reason,
            response.raw_finish_reason,
            usage.input_tokens if usage is not None else None,
            usage.output_tokens if usage is not None else None,
            usage.total_tokens if usage is not None else None,
            response.started_at,
            response.duration,
            response.time_to_first_chunk,
            response.output_mode,
        )
        return _INSERT_RESPONSE, values

    def _tool_row(
        self, response: Any, position: int, call: ToolCall, result: ToolResult | None
    ) -> Statement:
        if result is None:
            output, error, duration = None, _UNFINISHED, None
        elif result.is_error:
            output, duration = None, result.duration
            error = result.content.removeprefix("Error: ")
        else:
            output, error, duration = result.content, None, result.duration
        chain = response.chain
        values = (
            response.id,
            chain.id if chain is not None else None,
            position,
            call.id,
            call.name,
            self._clean(call.raw_arguments),
            self._clean(output),
            self._clean(error),
            duration,
        )
        return _INSERT_TOOL_CALL, values

    def _chain_row(self, chain: Any) -> Statement:
        usage = chain.usage
        output = output_json(chain.output_value)
        status = chain.status if chain.status != "pending" else "running"
        values = (
            chain.id,
            chain.model,
            self._clean(_user_text(chain.prompt)) or "",
            self._clean(chain.system),
            json.dumps(sorted(chain.tools)),
            chain.max_turns,
            status,
            self._clean(_error_text(chain.error)),
            self._clean(chain.final_text),
            len(chain.responses),
            usage.input_tokens if usage is not None else None,
            usage.output_tokens if usage is not None else None,
            usage.total_tokens if usage is not None else None,
            chain.started_at,
            chain.duration,
            chain.output_mode,
            self._json(output) if output is not None else None,
        )
        return _UPSERT_CHAIN, values

    # --- writing ---------------------------------------------------------------------

    async def _write(self, statements: list[Statement]) -> None:
        await anyio.to_thread.run_sync(self._write_sync, statements)

    def _write_sync(self, statements: list[Statement]) -> None:
        with self._lock:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                for sql, values in statements:
                    conn.execute(sql, values)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    def _connection(self) -> sqlite3.Connection:
        # Called with self._lock held.
        if self._closed:
            raise RuntimeError(f"{self!r} is closed")
        if self._conn is None:
            self._conn = connect(self.path)
        return self._conn


_INSERT_RESPONSE = """
INSERT OR REPLACE INTO responses (
    id, chain_id, turn, model, prompt, messages, system, options, text, status, error,
    finish_reason, raw_finish_reason, input_tokens, output_tokens, total_tokens,
    started_at, duration, time_to_first_chunk, output_mode
) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""

_INSERT_TOOL_CALL = """
INSERT INTO tool_calls (
    response_id, chain_id, position, call_id, name, arguments, result, error, duration
) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
"""

_UPSERT_CHAIN = """
INSERT INTO chains (
    id, model, prompt, system, tools, max_turns, status, error, text, turns,
    input_tokens, output_tokens, total_tokens, started_at, duration, output_mode, output
) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET
    status = excluded.status, error = excluded.error, text = excluded.text,
    output_mode = excluded.output_mode, output = excluded.output,
    turns = excluded.turns, input_tokens = excluded.input_tokens,
    output_tokens = excluded.output_tokens, total_tokens = excluded.total_tokens,
    duration = excluded.duration
"""
