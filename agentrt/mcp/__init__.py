"""Use any Model Context Protocol server's tools in a chain, and serve agentrt tools over MCP.

Built on the official ``mcp`` SDK (the ``mcp`` extra: ``pip install 'agentrt[mcp]'``)::

    async with agentrt.mcp.connect(["uvx", "mcp-server-git"], prefix="git") as git:
        chain = model.chain("What changed?", tools=[git, my_tool])

- :func:`connect`: one server (stdio command, streamable HTTP URL, legacy SSE URL);
- :func:`load_config`: every server of an ``{"mcpServers": {...}}`` file;
- :func:`connect_sync`: the same for scripts using :func:`agentrt.get_model`;
- :func:`serve`: publish agentrt tools as an MCP server.
"""

from __future__ import annotations

import math
import sys
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from contextlib import AsyncExitStack, ExitStack, asynccontextmanager, contextmanager
from os import PathLike
from typing import TYPE_CHECKING, Any, TextIO

import anyio

from ..errors import UsageError
from ._connection import Connection
from ._serve import serve, serve_async
from ._targets import Target, name_filter, read_config, resolve_target
from ._toolbox import MCPOutput, MCPTool, MCPToolbox, check_prefix, model_name, to_output

if TYPE_CHECKING:
    from anyio.from_thread import BlockingPortal

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup

__all__ = [
    "MCPOutput",
    "MCPTool",
    "MCPToolbox",
    "connect",
    "connect_sync",
    "load_config",
    "load_config_sync",
    "model_name",
    "serve",
    "serve_async",
    "to_output",
]


def _seconds(value: float | None, what: str, *, optional: bool) -> float | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        allowed = "a positive number of seconds" + (" or None" if optional else "")
        raise UsageError(f"{what} must be {allowed}, got {value!r}")
    if math.isinf(value) and not optional:
        raise UsageError(f"{what} must be finite, got {value!r}")
    return float(value)


@asynccontextmanager
async def connect(
    target: str | Sequence[str],
    *,
    prefix: str | None = None,
    timeout: float | None = 60,  # noqa: ASYNC109 (per tool call, not for this function)
    connect_timeout: float = 10,
    env: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
    allow: Iterable[str] | None = None,
    deny: Iterable[str] | None = None,
    transport: str | None = None,
    cwd: str | PathLike[str] | None = None,
    errlog: TextIO | None = None,
) -> AsyncIterator[MCPToolbox]:
    """Connect to an MCP server and yield its tools as a toolbox for ``tools=[...]``.

    One task that agentrt starts here owns the connection: it opens it, serves every tool
    call and closes it when the block ends (ending a stdio server's process group within a
    few seconds), so a chain cancelled mid-call never touches the connection.

    Args:
        target: a command (``["uvx", "mcp-server-git"]`` or ``"uvx mcp-server-git"``) for a
            stdio server, or an ``http(s)://`` URL (streamable HTTP; legacy SSE when it ends
            in ``/sse``).
        prefix: when given, the model sees ``{prefix}__{tool}``.
        timeout: seconds one call may take (``None``: no limit); a tool's own ``timeout``
            wins. A timed-out call is cancelled on the server too.
        connect_timeout: seconds to start the server and complete the MCP handshake.
        env: extra environment variables of a stdio server (it inherits only a safe few).
        headers: HTTP headers (e.g. ``Authorization``) for a URL.
        allow: offer only these tools (the server's names).
        deny: never offer these tools.
        transport: ``"stdio"``, ``"http"`` or ``"sse"`` to override the guess from ``target``.
        cwd: the working directory of a stdio server.
        errlog: where a stdio server's stderr goes (default: ours).

    Yields:
        The server's tools.

    Raises:
        UsageError: a wrong argument, or ``allow=`` names a tool the server does not have.
        MCPConnectionError: the server cannot be started or reached, or it did not complete
            the handshake within ``connect_timeout``.
    """
    resolved = resolve_target(target, transport=transport, env=env, headers=headers, cwd=cwd)
    async with _open(
        resolved,
        prefix=check_prefix(prefix),
        timeout=_seconds(timeout, "timeout", optional=True),
        connect_timeout=_check_connect_timeout(connect_timeout),
        allow=name_filter(allow, "allow"),
        deny=name_filter(deny, "deny"),
        errlog=errlog,
    ) as box:
        yield box


def _check_connect_timeout(value: float) -> float:
    seconds = _seconds(value, "connect_timeout", optional=False)
    assert seconds is not None
    return seconds


@asynccontextmanager
async def _open(
    target: Target,
    *,
    prefix: str | None,
    timeout: float | None,  # noqa: ASYNC109 (per tool call)
    connect_timeout: float,
    allow: frozenset[str] | None = None,
    deny: frozenset[str] | None = None,
    errlog: TextIO | None = None,
    portal: BlockingPortal | None = None,
) -> AsyncIterator[MCPToolbox]:
    connection = Connection(
        target,
        name=prefix or target.describe(),
        connect_timeout=connect_timeout,
        allow=allow,
        deny=deny,
        errlog=errlog,
    )
    failed: Exception | None = None
    try:
        async with anyio.create_task_group() as owner:
            await owner.start(connection.run)
            if prefix is None and connection.server_name:
                connection.name = connection.server_name
            try:
                yield MCPToolbox(connection, prefix=prefix, timeout=timeout, portal=portal)
            except Exception as exc:
                # Re-raised below, once the owner has closed the connection: raised inside
                # the task group, it would reach the caller wrapped in an ExceptionGroup.
                failed = exc
            finally:
                connection.close()
    except BaseExceptionGroup as group:
        raise _single(group) from None
    if failed is not None:
        raise failed


def _single(group: BaseExceptionGroup[Any]) -> BaseException:
    # The owner failed before it started: one error, which the caller should see as is.
    while isinstance(group, BaseExceptionGroup) and len(group.exceptions) == 1:
        group = group.exceptions[0]
    return group


@asynccontextmanager
async def load_config(
    path: str | PathLike[str],
    *,
    timeout: float | None = 60,  # noqa: ASYNC109 (per tool call)
    connect_timeout: float = 10,
    errlog: TextIO | None = None,
) -> AsyncIterator[list[MCPToolbox]]:
    """Connect to every server of an ``{"mcpServers": {...}}`` file, each prefixed with its key.

    ``${VAR}`` in the file is replaced by the environment variable ``VAR``. A server entry is
    ``{"command": ..., "args": [...], "env": {...}}`` or ``{"url": ..., "headers": {...}}``
    and may set its own ``"timeout"``.

    Yields:
        One toolbox per server, in the file's order: pass the list as ``tools=boxes`` (or
        ``tools=[*boxes, other_tool]``).

    Raises:
        UsageError: the file is missing or malformed, or names an unset variable.
        MCPConnectionError: a server cannot be reached (those already open are closed).
    """
    configs = read_config(path)
    seconds = _seconds(timeout, "timeout", optional=True)
    limit = _check_connect_timeout(connect_timeout)
    async with AsyncExitStack() as stack:
        boxes = [
            await stack.enter_async_context(
                _open(
                    config.target,
                    prefix=config.key,
                    timeout=config.timeout if config.timeout is not None else seconds,
                    connect_timeout=limit,
                    errlog=errlog,
                )
            )
            for config in configs
        ]
        yield boxes


@contextmanager
def connect_sync(
    target: str | Sequence[str],
    *,
    prefix: str | None = None,
    timeout: float | None = 60,
    connect_timeout: float = 10,
    env: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
    allow: Iterable[str] | None = None,
    deny: Iterable[str] | None = None,
    transport: str | None = None,
    cwd: str | PathLike[str] | None = None,
    errlog: TextIO | None = None,
) -> Iterator[MCPToolbox]:
    """Connect like :func:`connect`, for sync code (a ``with`` block).

    The connection lives on an event loop in a thread of its own; its tools work in sync
    chains (``get_model``) and in async chains on any loop.

    Raises:
        UsageError: as :func:`connect`, or called from inside a running event loop.
        MCPConnectionError: as :func:`connect`.
    """
    from ..sync import check_sync_allowed

    check_sync_allowed()
    resolved = resolve_target(target, transport=transport, env=env, headers=headers, cwd=cwd)
    options: dict[str, Any] = {
        "prefix": check_prefix(prefix),
        "timeout": _seconds(timeout, "timeout", optional=True),
        "connect_timeout": _check_connect_timeout(connect_timeout),
        "allow": name_filter(allow, "allow"),
        "deny": name_filter(deny, "deny"),
        "errlog": errlog,
    }
    with anyio.from_thread.start_blocking_portal() as portal:
        manager = _open(resolved, portal=portal, **options)
        with portal.wrap_async_context_manager(manager) as box:
            yield box


@contextmanager
def load_config_sync(
    path: str | PathLike[str],
    *,
    timeout: float | None = 60,
    connect_timeout: float = 10,
    errlog: TextIO | None = None,
) -> Iterator[list[MCPToolbox]]:
    """Load like :func:`load_config`, for sync code (a ``with`` block).

    Raises:
        UsageError: as :func:`load_config`, or called from inside a running event loop.
        MCPConnectionError: as :func:`load_config`.
    """
    from ..sync import check_sync_allowed

    check_sync_allowed()
    configs = read_config(path)
    seconds = _seconds(timeout, "timeout", optional=True)
    limit = _check_connect_timeout(connect_timeout)
    with anyio.from_thread.start_blocking_portal() as portal, ExitStack() as stack:
        boxes = [
            stack.enter_context(
                portal.wrap_async_context_manager(
                    _open(
                        config.target,
                        prefix=config.key,
                        timeout=config.timeout if config.timeout is not None else seconds,
                        connect_timeout=limit,
                        errlog=errlog,
                        portal=portal,
                    )
                )
            )
            for config in configs
        ]
        yield boxes
