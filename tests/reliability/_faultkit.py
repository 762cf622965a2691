"""Shared pieces of the reliability tests: the three providers, leak checks, wire checks.

Leak checks look at three things after a scenario:

* the httpx connection pool (httpcore): no request in flight, every connection idle or
  closed;
* the operating system: once the model is closed, no socket of this process is still
  connected to the server's port (Linux ``/proc``; skipped elsewhere);
* tasks and threads: the loop's task count returns to where it started, and the thread
  count does not grow across repeated runs of the same scenario (anyio and trio keep idle
  worker threads for reuse, so the baseline is taken after a warm-up run).
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import socket
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import anyio
import httpx

import agentrt
from agentrt import AsyncModel
from agentrt._transport import LeanTransport
from tools.fakeserver import anthropic_wire, gemini_wire, openai_wire
from tools.fakeserver.script import Turn
from tools.fakeserver.server import FakeServer

KEY = "sk-reliability-test-5e81c0"


@dataclass(frozen=True)
class Target:
    """One provider as the fake server plays it."""

    name: str
    model_id: str
    wire: ModuleType

    @property
    def model_name(self) -> str:
        return self.model_id.partition(":")[2]

    def base_url(self, server: FakeServer) -> str:
        url: str = getattr(server, f"{self.name}_base_url")
        return url

    def model(self, server: FakeServer | None = None, **options: Any) -> AsyncModel:
        """A model for this provider with fast retries, pointed at ``server``."""
        options.setdefault("api_key", KEY)
        if server is not None:
            options.setdefault("base_url", self.base_url(server))
        model = agentrt.get_async_model(self.model_id, **options)
        provider: Any = model.provider
        provider.retry = dataclasses.replace(provider.retry, initial_delay=0.001)
        provider.retry = dataclasses.replace(provider.retry, max_delay=0.005)
        return model

    def sse(self, turn: Turn) -> list[bytes]:
        """The SSE events the fake server sends for ``turn``."""
        events: list[bytes] = self.wire.render_sse(turn, self.model_name)
        return events

    def __str__(self) -> str:
        return self.name


TARGETS = [
    Target("openai", "openai:gpt-test", openai_wire),
    Target("anthropic", "anthropic:claude-test", anthropic_wire),
    Target("gemini", "gemini:gemini-test", gemini_wire),
]


# --- waiting ------------------------------------------------------------------------------


async def wait_until(condition: Callable[[], bool], what: str, limit: float = 5.0) -> None:
    """Poll ``condition`` (a bounded wait); fail saying ``what`` did not happen."""
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {limit} s waiting for: {what}")
        await anyio.sleep(0.005)


# --- connections --------------------------------------------------------------------------


def closed_port() -> int:
    """A local port nothing listens on (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def client_sockets(port: int) -> int | None:
    """How many of this process's sockets are connected to 127.0.0.1:``port``.

    ``None`` where ``/proc`` is not available.
    """
    if not sys.platform.startswith("linux"):
        return None
    inodes: set[str] = set()
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        try:
            with open(table) as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            remote_port = int(fields[2].rsplit(":", 1)[1], 16)
            if remote_port == port:
                inodes.add(fields[9])
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            link = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:[") and link[8:-1] in inodes:
            count += 1
    return count


def pool_connections(client: httpx.AsyncClient) -> tuple[list[Any], list[Any]] | None:
    """``(connections, requests)`` of an httpcore pool, or ``None`` for another transport."""
    transport = getattr(client, "_transport", None)
    if isinstance(transport, LeanTransport):
        return [], [None] * transport.connections_in_use
    pool = getattr(transport, "_pool", None)
    if pool is None or not hasattr(pool, "connections"):
        return None
    return list(pool.connections), list(getattr(pool, "_requests", []))


def assert_pool_idle(model: AsyncModel) -> None:
    """No request in flight and every pooled connection idle or closed."""
    provider: Any = model.provider
    client = provider._client
    if client is None:
        return
    state = pool_connections(client)
    if state is None:
        return
    connections, requests = state
    assert requests == [], f"requests still in flight: {requests}"
    busy = [c for c in connections if not (c.is_idle() or c.is_closed())]
    assert busy == [], f"connections still busy: {busy}"


# --- threads ------------------------------------------------------------------------------

#: Where an idle pooled thread waits: (file name ending, function). anyio's and trio's
#: worker threads, asyncio's default executor, and the I/O wait of trio's guest mode
#: (anyio's pytest runner drives trio as a guest, blocking for I/O in a cached thread).
_IDLE_WAITS = {
    ("trio/_core/_thread_cache.py", "_work"),
    ("trio/_core/_io_epoll.py", "get_events"),
    ("anyio/_backends/_asyncio.py", "run"),
    ("concurrent/futures/thread.py", "_worker"),
    ("agentrt/_backend/pool.py", "_work"),
}
_WAIT_MACHINERY = ("/threading.py", "/queue.py")


def busy_threads() -> set[int]:
    """Idents of the threads doing work, i.e. not waiting idle in a thread pool."""
    frames = sys._current_frames()
    busy = set()
    for thread in threading.enumerate():
        frame = frames.get(thread.ident) if thread.ident is not None else None
        while frame is not None and frame.f_code.co_filename.endswith(_WAIT_MACHINERY):
            frame = frame.f_back
        where = (frame.f_code.co_filename, frame.f_code.co_name) if frame else ("", "")
        idle = any(where[0].endswith(end) and where[1] == name for end, name in _IDLE_WAITS)
        if not idle and thread.ident is not None:
            busy.add(thread.ident)
    return busy


def thread_names(idents: set[int]) -> list[str]:
    return sorted(t.name for t in threading.enumerate() if t.ident in idents)


# --- the checked runner -------------------------------------------------------------------


async def run_checked(
    server: FakeServer | None,
    model: AsyncModel,
    scenario: Callable[[AsyncModel], Awaitable[None]],
    *,
    runs: int = 2,
    port: int | None = None,
) -> None:
    """Run ``scenario`` ``runs`` times on one model and check that nothing leaked.

    After every run: no request in flight, every pooled connection idle or closed, the
    loop's task count back to where it started, no thread still busy that was not busy
    before, and (from the second run on) no more threads than after the first, but for
    the one thread trio's guest mode may take from its cache. After the model is closed:
    no socket left connected to the server.
    """
    port = port if port is not None else (server.port if server is not None else None)
    tasks = len(anyio.get_running_tasks())
    busy = busy_threads()
    threads: int | None = None
    slack = 1 if "trio" in sys.modules and _in_trio() else 0
    async with model:
        for _run in range(runs):
            if server is not None:
                server.reset()
            await scenario(model)
            assert_pool_idle(model)
            await wait_until(
                lambda: len(anyio.get_running_tasks()) <= tasks, f"tasks back to {tasks}"
            )
            try:
                await wait_until(lambda: busy_threads() <= busy, "busy threads")
            except AssertionError:
                extra = thread_names(busy_threads() - busy)
                raise AssertionError(f"threads still busy after the run: {extra}") from None
            if threads is None:
                threads = threading.active_count()
            else:
                limit = threads + slack
                names = sorted(t.name for t in threading.enumerate())
                assert threading.active_count() <= limit, f"threads grew from {threads}: {names}"
    if port is not None and client_sockets(port) is not None:
        await wait_until(lambda: client_sockets(port) == 0, f"no socket connected to {port}")


def _in_trio() -> bool:
    import trio

    try:
        trio.lowlevel.current_task()
    except RuntimeError:
        return False
    return True


# --- what the provider was sent -----------------------------------------------------------


@dataclass
class Exchange:
    """One assistant turn's tool calls and the results that answer them."""

    calls: list[str]  # ids (OpenAI, Anthropic) or names (Gemini calls without ids)
    results: list[tuple[str, str, bool]]  # (id or name, content, is_error)

    def result(self, key: str) -> tuple[str, bool]:
        for found, content, is_error in self.results:
            if found == key:
                return content, is_error
        raise AssertionError(f"no result for {key!r} in {self.results}")


def exchanges(provider: str, body: dict[str, Any]) -> list[Exchange]:
    """Check that a request body is well-formed for ``provider``; return its tool exchanges.

    Well-formed means what the real APIs enforce: every tool call is answered by exactly
    one result, right after the turn that made it, and no result answers nothing.
    """
    return {"openai": _openai, "anthropic": _anthropic, "gemini": _gemini}[provider](body)


def _openai(body: dict[str, Any]) -> list[Exchange]:
    messages = body["messages"]
    found: list[Exchange] = []
    i = 0
    while i < len(messages):
        message = messages[i]
        assert message["role"] in ("system", "user", "assistant", "tool"), message
        assert message["role"] != "tool", f"tool message {i} answers no tool call: {message}"
        i += 1
        calls = message.get("tool_calls") if message["role"] == "assistant" else None
        if not calls:
            continue
        ids = [c["id"] for c in calls]
        for call in calls:
            assert call["type"] == "function" and isinstance(call["function"]["arguments"], str)
        results = []
        while i < len(messages) and messages[i]["role"] == "tool":
            content = messages[i]["content"]
            assert isinstance(content, str)
            results.append((messages[i]["tool_call_id"], content, content.startswith("Error")))
            i += 1
        assert [r[0] for r in results] == ids, f"calls {ids} answered by {results}"
        found.append(Exchange(ids, results))
    return found


def _anthropic(body: dict[str, Any]) -> list[Exchange]:
    messages = body["messages"]
    assert messages and messages[0]["role"] == "user", messages[:1]
    roles = [m["role"] for m in messages]
    assert all(a != b for a, b in itertools.pairwise(roles)), f"roles do not alternate: {roles}"
    found: list[Exchange] = []
    pending: list[str] = []
    for message in messages:
        content = message["content"]
        blocks = content if isinstance(content, list) else [{"type": "text", "text": content}]
        if message["role"] == "assistant":
            assert not pending, f"tool_use {pending} not answered"
            uses = [b for b in blocks if b["type"] == "tool_use"]
            for use in uses:
                assert isinstance(use["input"], dict), use
            pending = [u["id"] for u in uses]
            continue
        results = [b for b in blocks if b["type"] == "tool_result"]
        # The results must open the user message that follows the tool_use turn.
        assert blocks[: len(results)] == results, f"tool_result blocks not first: {blocks}"
        assert [r["tool_use_id"] for r in results] == pending, f"{pending} answered by {results}"
        if pending:
            found.append(
                Exchange(
                    pending,
                    [
                        (r["tool_use_id"], _text(r["content"]), bool(r.get("is_error")))
                        for r in results
                    ],
                )
            )
        pending = []
    assert not pending, f"tool_use {pending} not answered"
    return found


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(b.get("text", "") for b in content)


def _gemini(body: dict[str, Any]) -> list[Exchange]:
    contents = body["contents"]
    assert contents and contents[0]["role"] == "user", contents[:1]
    roles = [c["role"] for c in contents]
    assert set(roles) <= {"user", "model"}, roles
    assert all(a != b for a, b in itertools.pairwise(roles)), f"roles do not alternate: {roles}"
    found: list[Exchange] = []
    pending: list[dict[str, Any]] = []
    for content in contents:
        parts = content["parts"]
        assert parts, f"empty parts: {content}"
        if content["role"] == "model":
            assert not pending, f"function calls {pending} not answered"
            # ``args`` is replayed verbatim (Gemini rejects edited history), so a malformed
            # value the server sent is sent back as it was; only the pairing is checked.
            pending = [p["functionCall"] for p in parts if "functionCall" in p]
            continue
        responses = [p["functionResponse"] for p in parts if "functionResponse" in p]
        assert [r["name"] for r in responses] == [c["name"] for c in pending], (
            f"{pending} answered by {responses}"
        )
        results = []
        for call, response in zip(pending, responses, strict=True):
            assert response.get("id") == call.get("id"), (call, response)
            payload = response["response"]
            content = payload["error"] if "error" in payload else payload["result"]
            results.append((call.get("id") or call["name"], str(content), "error" in payload))
        if pending:
            found.append(Exchange([c.get("id") or c["name"] for c in pending], results))
        pending = []
    assert not pending, f"function calls {pending} not answered"
    return found


def last_body(server: FakeServer) -> dict[str, Any]:
    """The JSON body of the last request the server received."""
    body: dict[str, Any] = server.requests[-1].json
    return body
