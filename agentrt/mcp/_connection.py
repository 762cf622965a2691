"""One MCP connection, owned by one task.

Why: an MCP session is a stack of task groups and cancel scopes (transport, dispatcher,
subprocess pipes). Entered in one task and left in another, it fails with "attempted to
exit cancel scope in a different task"; cancelled half-way, it leaks the stdio child. So
one *owner* task opens the ``mcp.Client``, keeps it and closes it again. While it is up, a
tool call is one request of the SDK's client made in the caller's own task (the client takes
requests from any task, each under a cancel scope of its own); a call made while the owner
reconnects is queued for it and made in a task of the owner's.

Guarantees:
- the connection is opened and closed in the owner task, which runs in a task group
  agentrt opened in :func:`agentrt.mcp.connect` (asyncio and trio alike);
- a caller that is cancelled (a cancelled chain, a tool timeout) only ends its own request:
  the SDK sends ``notifications/cancelled`` to the server, and the connection stays usable;
- before the connection closes (a close, a lost connection), the owner cancels the calls
  still running in their callers' tasks and waits for them: each ends with an error saying
  so while the connection is still there, none is left waiting;
- the tool list is fetched once per connection and again only when the server announces a
  change (``subscriptions/listen`` on 2026-07-28 servers, ``notifications/tools/list_changed``
  on legacy ones); :attr:`Connection.version` counts the changes;
- a connection lost during a call fails that call with a message saying so; the owner
  reconnects once before the next call (bounded by ``connect_timeout``, logged). If that
  reconnect fails, every later call fails at once.
"""

from __future__ import annotations

import contextvars
import functools
import logging
import math
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TextIO

import anyio
import anyio.lowlevel
from anyio.abc import TaskStatus

from ..errors import AgentrtError, MCPConnectionError, MCPToolError, ToolTimeoutError, UsageError
from ._targets import Target

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup

if TYPE_CHECKING:
    import mcp_types
    from mcp import Client, MCPError

__all__ = ["Connection"]

logger = logging.getLogger("agentrt.mcp")

_PAGE_CAP = 100  # a tools/list paginator that never ends cannot hang a connection


@dataclass(eq=False)
class _Request:
    """One tool call handed to the owner."""

    name: str
    arguments: dict[str, Any]
    timeout: float | None
    #: Set once the call ended; made only for a call queued for the owner (a call made in
    #: its caller's task has nobody to wake).
    done: anyio.Event | None = None
    result: mcp_types.CallToolResult | None = None
    error: BaseException | None = None
    scope: anyio.CancelScope | None = None
    abandoned: bool = False
    #: The caller's context (made when the request is): the owner runs the call under it,
    #: so what the caller's tracing made current (the ``execute_tool`` span) is what the
    #: SDK propagates to the server in ``params._meta``.
    context: contextvars.Context = field(default_factory=contextvars.copy_context)

    def abandon(self) -> None:
        # The caller went away: stop the call (the SDK tells the server) unless it is done.
        self.abandoned = True
        if self.scope is not None:
            self.scope.cancel()

    def fail(self, error: BaseException) -> None:
        done = self.done
        if done is not None and not done.is_set():
            self.error = error
            done.set()


class _Lost(Exception):
    """The connection went away while serving (internal)."""


class Connection:
    """An MCP client connection served by its owner task (:meth:`run`).

    Attributes:
        target: what it connects to.
        name: the server's name in messages and logs.
        listing: the server's tools (after ``allow``/``deny``), from its latest listing.
        version: incremented whenever ``listing`` changes.
        protocol_version: the negotiated MCP protocol version.
        server_name: the name the server gave, if any.
    """

    def __init__(
        self,
        target: Target,
        *,
        name: str,
        connect_timeout: float,
        allow: frozenset[str] | None = None,
        deny: frozenset[str] | None = None,
        errlog: TextIO | None = None,
    ) -> None:
        self.target = target
        self.name = name
        self.connect_timeout = connect_timeout
        self.allow = allow
        self.deny = deny
        self.errlog = errlog
        self.listing: list[mcp_types.Tool] = []
        self.version = 0
        self.protocol_version = ""
        self.server_name: str | None = None
        self.reconnects = 0
        self._send, self._receive = anyio.create_memory_object_stream[_Request](math.inf)
        # While a connection is up, a call is made in its caller's task (the SDK's client
        # takes requests from any task); the owner cancels those in flight, and waits for
        # them, before it closes the connection. Between connections calls queue for it.
        self._live: tuple[Client, anyio.CancelScope, list[str]] | None = None
        self._inflight: set[_Request] = set()
        self._drained: anyio.Event | None = None
        self._closed = False
        self._dead: str | None = None
        self._token: object = None
        self._changed: anyio.Event | None = None

    # --- the caller's side ---------------------------------------------------------------

    async def call(
        self,
        name: str,
        arguments: dict[str, Any],
        timeout: float | None,  # noqa: ASYNC109 (sent to the SDK, which cancels on the server)
    ) -> mcp_types.CallToolResult:
        """Call tool ``name`` (its wire name) and return its result.

        While the connection is up the call is made in this task; while the owner
        reconnects it is queued for the owner.

        Raises:
            MCPToolError: a JSON-RPC error, or the connection was lost during the call.
            ToolTimeoutError: the server did not answer within ``timeout`` seconds.
            MCPConnectionError: the connection is closed or could not be re-established.
            UsageError: called from another event loop than the one that opened it.
        """
        if anyio.lowlevel.current_token() != self._token:
            raise UsageError(
                f"the MCP connection to {self.name!r} was opened by agentrt.mcp.connect() in "
                "another event loop; open it in the loop that runs the chain, or use "
                "agentrt.mcp.connect_sync() with get_model()"
            )
        if self._closed:
            raise MCPConnectionError(
                f"the MCP connection to {self.name!r} is closed", server=self.name
            )
        if self._dead is not None:
            raise MCPConnectionError(self._dead, server=self.name)
        request = _Request(name, arguments, timeout)
        live = self._live
        if live is not None:
            client, serving, lost = live
            inflight = self._inflight
            inflight.add(request)
            try:
                await self._make_call(client, request, serving, lost, True)
            finally:
                inflight.discard(request)
                if not inflight and self._drained is not None:
                    self._drained.set()
        else:
            done = request.done = anyio.Event()
            self._send.send_nowait(request)
            try:
                await done.wait()
            finally:
                if not done.is_set():
                    request.abandon()
        if request.error is not None:
            raise request.error
        assert request.result is not None
        return request.result

    def close(self) -> None:
        """Tell the owner to close the connection (it does so in its own task)."""
        self._closed = True
        self._send.close()

    # --- the owner's side ----------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Own the connection: open it, serve calls, reconnect once when lost, close it.

        Raises:
            MCPConnectionError: the first connection failed or timed out (before started).
        """
        self._token = anyio.lowlevel.current_token()
        try:
            lost = await self._serve(task_status, None)
            while lost is not None:
                logger.warning(
                    "MCP server %r: %s; reconnecting before the next call", self.name, lost
                )
                try:
                    first = await self._receive.receive()
                except anyio.EndOfStream:
                    return
                try:
                    lost = await self._serve(anyio.TASK_STATUS_IGNORED, first)
                except MCPConnectionError as exc:
                    self._dead = (
                        f"the MCP server {self.name!r} went away and reconnecting failed: {exc}"
                    )
                    logger.error("MCP server %r: %s", self.name, self._dead)
                    first.fail(MCPConnectionError(self._dead, server=self.name))
                    async for request in self._receive:
                        request.fail(MCPConnectionError(self._dead, server=self.name))
                    return
                self.reconnects += 1
        finally:
            self._closed = True
            self._send.close()
            closed = MCPConnectionError(
                f"the MCP connection to {self.name!r} was closed before the call finished",
                server=self.name,
            )
            while self._receive.statistics().current_buffer_used:
                self._receive.receive_nowait().fail(closed)
            self._receive.close()

    async def _serve(self, task_status: TaskStatus[None], first: _Request | None) -> str | None:
        """Open one connection and serve calls on it.

        Returns:
            ``None`` once closed, else why the connection was lost.
        """
        _import_sdk()  # the first import takes a while: not part of connect_timeout
        connected = False
        lost: list[str] = []
        deadline = anyio.CancelScope(deadline=anyio.current_time() + self.connect_timeout)
        try:
            with deadline:
                async with self._client() as client, anyio.create_task_group() as tg:
                    await tg.start(self._watch, client)
                    await self._list(client)
                    connected = True
                    deadline.deadline = math.inf
                    serving = tg.cancel_scope
                    await tg.start(self._guard, client, serving, lost)
                    task_status.started()
                    if first is not None:
                        first.context.run(tg.start_soon, self._call, client, first, serving, lost)
                    async for request in self._receive:  # calls queued between connections
                        # The new task copies the context current when it starts: the caller's.
                        request.context.run(
                            tg.start_soon, self._call, client, request, serving, lost
                        )
                    tg.cancel_scope.cancel()
        except Exception as exc:
            known = _known(exc)
            if known is not None:
                raise known from None
            if connected:  # run() logs it and reconnects
                return f"the connection failed ({_describe(exc)})"
            raise MCPConnectionError(
                f"cannot connect to the MCP server {self._label()}: {_describe(exc)}",
                server=self.name,
            ) from exc
        if not connected:
            raise MCPConnectionError(
                f"the MCP server {self._label()} did not complete the "
                f"MCP handshake within connect_timeout={self.connect_timeout} s",
                server=self.name,
            )
        return lost[0] if lost else None

    async def _guard(
        self,
        client: Client,
        serving: anyio.CancelScope,
        lost: list[str],
        *,
        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Open the connection to direct calls while it serves; end them before it closes.

        Cancelled with the serving task group (a close, a lost connection): the calls still
        running in their callers' tasks are cancelled and waited for, so that each ends
        with its error while the connection is still there.
        """
        self._live = (client, serving, lost)
        try:
            task_status.started()
            await anyio.sleep_forever()
        finally:
            self._live = None
            with anyio.CancelScope(shield=True):
                while self._inflight:
                    self._drained = anyio.Event()
                    for request in self._inflight:
                        if request.scope is not None:
                            request.scope.cancel()
                    await self._drained.wait()
                self._drained = None

    @asynccontextmanager
    async def _client(self) -> AsyncIterator[Client]:
        from mcp import Client
        from mcp_types import Implementation

        from .. import __version__

        async with (
            self._transport() as transport,
            Client(
                transport,
                client_info=Implementation(name="agentrt", version=__version__),
                message_handler=self._on_message,
            ) as client,
        ):
            self.protocol_version = client.protocol_version
            info = client.server_info
            self.server_name = info.name if info is not None else None
            yield client

    @asynccontextmanager
    async def _transport(self) -> AsyncIterator[Any]:
        target = self.target
        if target.transport == "stdio":
            from mcp.client.stdio import StdioServerParameters, stdio_client

            params = StdioServerParameters(
                command=target.command[0],
                args=list(target.command[1:]),
                env=dict(target.env) or None,
                cwd=target.cwd,
            )
            yield stdio_client(params, errlog=_errlog(self.errlog))
            return
        if target.transport == "sse":
            from mcp.client.sse import sse_client

            yield sse_client(target.url, headers=dict(target.headers))
            return
        import httpx2
        from mcp.client.streamable_http import streamable_http_client

        # The SDK's own timeouts for MCP over HTTP: a response stream may stay open long.
        timeout = httpx2.Timeout(30.0, read=300.0)
        async with httpx2.AsyncClient(headers=dict(target.headers), timeout=timeout) as http:
            yield streamable_http_client(target.url, http_client=http)

    async def _list(self, client: Client) -> None:
        tools: list[mcp_types.Tool] = []
        cursor: str | None = None
        for _ in range(_PAGE_CAP):
            page = await client.list_tools(cursor=cursor, cache_mode="refresh")
            tools.extend(page.tools)
            cursor = page.next_cursor
            if cursor is None:
                break
        kept = [t for t in tools if self._wanted(t.name)]
        if self.allow is not None and self.version == 0:
            missing = sorted(self.allow - {t.name for t in tools})
            if missing:
                raise UsageError(
                    f"allow= names tools the MCP server {self.name!r} does not have: "
                    f"{', '.join(missing)}; it has: {', '.join(sorted(t.name for t in tools))}"
                )
        if [t.model_dump() for t in kept] != [t.model_dump() for t in self.listing]:
            self.listing = kept
            self.version += 1

    def _label(self) -> str:
        described = self.target.describe()
        return repr(self.name) if described == self.name else f"{self.name!r} ({described})"

    def _wanted(self, name: str) -> bool:
        if self.allow is not None and name not in self.allow:
            return False
        return not (self.deny is not None and name in self.deny)

    async def _call(
        self, client: Client, request: _Request, serving: anyio.CancelScope, lost: list[str]
    ) -> None:
        """Make a queued call in a task of the owner's."""
        await self._make_call(client, request, serving, lost, False)

    async def _make_call(
        self,
        client: Client,
        request: _Request,
        serving: anyio.CancelScope,
        lost: list[str],
        direct: bool,
    ) -> None:
        """Make the call and set its result or error (``direct``: in the caller's task)."""
        MCPError, CONNECTION_CLOSED, REQUEST_TIMEOUT = _sdk_errors()
        try:
            if request.abandoned:
                return
            with anyio.CancelScope() as request.scope:
                try:
                    request.result = await client.call_tool(
                        request.name, request.arguments, read_timeout_seconds=request.timeout
                    )
                except MCPError as exc:
                    if exc.code == REQUEST_TIMEOUT:
                        request.error = ToolTimeoutError(
                            f"the MCP server {self.name!r} did not answer {request.name!r} "
                            f"within its timeout of {request.timeout} s; agentrt asked the "
                            "server to cancel the call"
                        )
                    elif exc.code == CONNECTION_CLOSED:
                        request.error = self._lost_error(request, lost, serving)
                    else:
                        request.error = MCPToolError(
                            f"the MCP server {self.name!r} answered {request.name!r} with "
                            f"JSON-RPC error {exc.code}: {exc.message}",
                            server=self.name,
                            code=exc.code,
                        )
                except anyio.get_cancelled_exc_class():
                    raise
                except Exception as exc:
                    request.error = MCPToolError(
                        f"the call to {request.name!r} on the MCP server {self.name!r} failed: "
                        f"{_describe(exc)}",
                        server=self.name,
                    )
        finally:
            unfinished = request.result is None and request.error is None
            scope = request.scope
            if direct and unfinished and not (scope is not None and scope.cancel_called):
                request.abandoned = True  # its own caller was cancelled, not the connection
            if unfinished and not request.abandoned and not self._closed:
                # Cancelled by the owner, not by its caller, without close(): the
                # connection went down under the call.
                request.error = self._lost_error(request, lost, serving)
            elif unfinished:  # closed, or abandoned by its caller (then nobody reads it)
                request.error = MCPConnectionError(
                    f"the MCP connection to {self.name!r} was closed before the call finished",
                    server=self.name,
                )
            if request.done is not None:
                request.done.set()

    def _lost_error(
        self, request: _Request, lost: list[str], serving: anyio.CancelScope
    ) -> MCPToolError:
        if not lost:
            lost.append(f"the connection closed during a call to {request.name!r}")
            self._live = None  # the next call queues for the reconnection at once
            serving.cancel()  # stop serving on a dead connection; run() reconnects
        what = (
            "exited or closed the connection"
            if self.target.transport == "stdio"
            else ("closed the connection")
        )
        return MCPToolError(
            f"the MCP server {self.name!r} {what} during the call to {request.name!r} "
            "(it may have crashed); agentrt reconnects before the next call",
            server=self.name,
        )

    # --- list changes --------------------------------------------------------------------

    async def _watch(
        self, client: Client, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Refetch the tool list whenever the server announces a change.

        Reports started once changes can no longer be missed (the subscription is
        acknowledged, or the notification handler armed), so that the first listing, made
        after that, cannot miss one either.
        """
        from mcp_types.version import MODERN_PROTOCOL_VERSIONS

        capability = client.server_capabilities.tools
        if capability is None or not capability.list_changed:
            task_status.started()
            return
        if client.protocol_version not in MODERN_PROTOCOL_VERSIONS:
            self._changed = anyio.Event()
            task_status.started()
            while True:
                await self._changed.wait()
                self._changed = anyio.Event()  # a change announced from now on: one more round
                try:
                    await self._list(client)
                except anyio.get_cancelled_exc_class():
                    raise
                except Exception as exc:
                    logger.warning(
                        "MCP server %r: refetching the tool list failed: %r", self.name, exc
                    )
        started = False
        try:
            async with client.listen(tools_list_changed=True) as subscription:
                task_status.started()
                started = True
                async for _event in subscription:
                    await self._list(client)
        except anyio.get_cancelled_exc_class():
            raise
        except Exception as exc:  # the server refused or dropped the stream
            logger.info("MCP server %r: no list-change events: %r", self.name, exc)
        if not started:
            task_status.started()

    async def _on_message(self, message: Any) -> None:
        # Legacy servers announce a change with a notification on the session.
        from mcp_types import ToolListChangedNotification

        if isinstance(message, ToolListChangedNotification) and self._changed is not None:
            self._changed.set()
        await anyio.lowlevel.checkpoint()


@functools.cache
def _sdk_errors() -> tuple[type[MCPError], int, int]:
    """The SDK's error class and the codes a call's errors are told apart by (imported once)."""
    from mcp import MCPError as Error
    from mcp_types import CONNECTION_CLOSED, REQUEST_TIMEOUT

    return Error, CONNECTION_CLOSED, REQUEST_TIMEOUT


def _import_sdk() -> None:
    import mcp
    import mcp.client.sse
    import mcp.client.stdio
    import mcp.client.streamable_http  # noqa: F401


def _errlog(errlog: TextIO | None) -> TextIO:
    # The child's stderr goes to ours, when ours is a real file (it is not under some
    # capturing test runners or in a GUI); else to /dev/null rather than failing to spawn.
    stream = errlog if errlog is not None else sys.stderr
    try:
        stream.fileno()
    except (AttributeError, OSError, ValueError):
        import subprocess

        return subprocess.DEVNULL  # type: ignore[return-value]
    return stream


def _known(exc: BaseException) -> AgentrtError | None:
    """An agentrt error raised on purpose inside the SDK's task groups, unwrapped."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc if isinstance(exc, (MCPConnectionError, UsageError)) else None


def _describe(exc: BaseException) -> str:
    """Say what an exception (or the first real one in a group) was."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
