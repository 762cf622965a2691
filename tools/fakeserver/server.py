"""A loopback HTTP server that plays a model provider, for tests and benchmarks.

It is written on raw asyncio streams with a minimal HTTP/1.1 implementation so that the
bytes on the wire are fully under control: how a body is split into writes, where a
connection drops, which framing a stream uses. It runs its own event loop in a daemon
thread, so it serves tests on any async backend (asyncio or trio) and sync code alike.

Each request takes the next scripted item (:class:`~tools.fakeserver.script.Turn` or
:class:`~tools.fakeserver.script.Fault`) from one FIFO queue shared by all endpoints; the
endpoint's wire module (``openai_wire``, ``anthropic_wire``, ``gemini_wire``) renders it.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import importlib
import json
import re
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType, TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from .script import Fault, Turn

__all__ = ["FakeServer", "RecordedRequest", "bench_responder"]

Responder = Callable[[str, dict[str, Any]], Turn | Fault]

_GEMINI_ROUTE = re.compile(r"^/v1beta/models/(?P<model>[^/:]+):(?P<method>\w+)$")


@dataclass
class RecordedRequest:
    """One request the server received."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: bytes
    json: Any
    #: ``time.monotonic()`` when the request had been read.
    time: float = field(default=0.0)


class _Dropped(Exception):
    """The scripted fault closed the connection."""


class FakeServer:
    """A fake OpenAI / Anthropic / Gemini server on 127.0.0.1.

    Routes: ``POST /v1/chat/completions`` (OpenAI), ``POST /v1/messages`` (Anthropic),
    ``POST /v1beta/models/{model}:generateContent`` and ``:streamGenerateContent``
    (Gemini). Use it as a context manager, or call :meth:`start` and :meth:`stop`.

    Attributes:
        latency: seconds to wait before answering every request (benchmarks).
        responder: when set and the queue is empty, ``responder(format_name, body)``
            gives the turn or the fault; otherwise an empty queue answers
            ``Turn(text="ok")``. It runs on the server thread, one request at a time.
        chunked: frame SSE bodies with ``Transfer-Encoding: chunked`` (the default); when
            ``False`` the body is delimited by closing the connection.
        requests: every request received, in order.
        record_requests: keep ``requests`` (the default); soak runs turn it off so the
            server's memory stays flat.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, latency: float = 0.0) -> None:
        self.host = host
        self.port = port
        self.latency = latency
        self.responder: Responder | None = None
        self.chunked = True
        self.requests: list[RecordedRequest] = []
        self.record_requests = True
        self._queue: deque[Turn | Fault] = deque()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self._wires: dict[str, ModuleType] = {}
        self._count = 0
        self._waiting: set[asyncio.StreamWriter] = set()  # idle between two requests

    # --- public API ------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The server's root URL, e.g. ``http://127.0.0.1:54321``."""
        if not self.port:
            raise RuntimeError("the fake server is not started")
        return f"http://{self.host}:{self.port}"

    @property
    def openai_base_url(self) -> str:
        """The base URL to give an OpenAI client (``.../v1``)."""
        return self.url + "/v1"

    @property
    def anthropic_base_url(self) -> str:
        """The base URL to give an Anthropic client."""
        return self.url

    @property
    def gemini_base_url(self) -> str:
        """The base URL to give a Gemini client."""
        return self.url

    def push(self, *items: Turn | Fault) -> None:
        """Queue what the next requests get, in order."""
        with self._lock:
            self._queue.extend(items)

    def pending(self) -> int:
        """Return how many scripted items are still queued."""
        with self._lock:
            return len(self._queue)

    def reset(self) -> None:
        """Forget queued items, recorded requests and per-test settings."""
        with self._lock:
            self._queue.clear()
            self.requests.clear()
            self._count = 0
        self.responder = None
        self.latency = 0.0
        self.chunked = True
        self.record_requests = True

    def start(self) -> None:
        """Start serving in a background thread; returns once the port is bound."""
        if self._thread is not None:
            raise RuntimeError("the fake server is already started")
        self._ready.clear()
        self._thread = threading.Thread(target=self._run, name="fakeserver", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the fake server did not start within 10 s")
        if self._startup_error is not None:
            self._thread.join()
            self._thread = None
            raise RuntimeError("the fake server failed to start") from self._startup_error

    def stop(self) -> None:
        """Stop serving, close every connection and join the thread."""
        thread, loop, stop_event = self._thread, self._loop, self._stop_event
        if thread is None:
            return
        if loop is not None and stop_event is not None:
            with contextlib.suppress(RuntimeError):  # loop already closed
                loop.call_soon_threadsafe(stop_event.set)
        thread.join(10)
        self._thread = None

    def drop_idle_connections(self) -> int:
        """Close every keep-alive connection waiting for its next request; return how many.

        As a server does when its keep-alive timeout expires.
        """
        loop = self._loop
        if loop is None:
            return 0

        async def drop() -> int:
            writers = list(self._waiting)
            for writer in writers:
                writer.close()
            for writer in writers:  # the sockets are closed: the FIN is on its way
                with contextlib.suppress(Exception):
                    await writer.wait_closed()
            return len(writers)

        return asyncio.run_coroutine_threadsafe(drop(), loop).result(5)

    def __enter__(self) -> FakeServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- the server thread -----------------------------------------------------------------

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:  # reported to start()
            self._startup_error = exc
            self._ready.set()
        finally:
            with contextlib.suppress(Exception):
                loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
            self._loop = None

    async def _serve(self) -> None:
        self._stop_event = asyncio.Event()
        tasks: set[asyncio.Task[None]] = set()

        async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            tasks.add(task)
            try:
                await self._connection(reader, writer)
            except asyncio.CancelledError:
                pass  # shutting down; asyncio would log a cancelled connection task
            finally:
                tasks.discard(task)

        server = await asyncio.start_server(on_connect, self.host, self.port, backlog=4096)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            await self._stop_event.wait()
        finally:
            server.close()
            for task in list(tasks):
                task.cancel()
            if tasks:
                await asyncio.wait(tasks, timeout=5)
            await server.wait_closed()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            # Each write goes out as its own segment, so split_bytes really splits.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while await self._exchange(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, _Dropped, ValueError):
            pass
        finally:
            if not writer.is_closing():
                writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Read one request and answer it; return whether the connection stays open."""
        self._waiting.add(writer)
        try:
            line = await reader.readline()
        finally:
            self._waiting.discard(writer)
        if not line.strip():
            return False
        method, target, _version = line.decode("latin-1").split()
        headers: dict[str, str] = {}
        while True:
            raw = await reader.readline()
            if raw in (b"\r\n", b"\n", b""):
                break
            name, _, value = raw.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = await _read_chunked(reader)
        else:
            body = await reader.readexactly(int(headers.get("content-length") or 0))
        split = urlsplit(target)
        query = dict(parse_qsl(split.query))
        try:
            parsed: Any = json.loads(body) if body else None
        except ValueError:
            parsed = None
        if self.record_requests:
            self.requests.append(
                RecordedRequest(method, split.path, query, headers, body, parsed, time.monotonic())
            )
        keep_alive = headers.get("connection", "").lower() != "close"
        return await self._answer(writer, method, split.path, query, parsed) and keep_alive

    async def _answer(
        self,
        writer: asyncio.StreamWriter,
        method: str,
        path: str,
        query: dict[str, str],
        body: Any,
    ) -> bool:
        self._count += 1
        request_id = f"req_fake_{self._count}"
        route = self._route(method, path, body)
        if isinstance(route, str):
            payload = json.dumps({"error": {"message": route}}).encode()
            await self._write_json(writer, 404, payload, {"x-request-id": request_id}, None)
            return True
        wire_name, model = route
        try:
            wire = self._wire(wire_name)
        except ImportError as exc:
            payload = json.dumps({"error": {"message": f"wire module missing: {exc}"}}).encode()
            await self._write_json(writer, 501, payload, {"x-request-id": request_id}, None)
            return True
        request_json: dict[str, Any] = body if isinstance(body, dict) else {}
        item = self._next_item(wire.NAME, request_json)
        fault = item if isinstance(item, Fault) else None
        turn = item if isinstance(item, Turn) else (fault.turn if fault else None) or Turn("ok")
        if self.latency:
            await asyncio.sleep(self.latency)
        if fault and fault.close_without_answer:
            writer.transport.abort()
            raise _Dropped
        if fault and fault.raw_response is not None:
            writer.write(fault.raw_response)
            await writer.drain()
            return False
        if fault and fault.delay:
            await asyncio.sleep(fault.delay)
        headers = dict(fault.headers) if fault else {}
        if not {"x-request-id", "request-id"} & {name.lower() for name in headers}:
            headers["x-request-id"] = request_id
        if fault and fault.status is not None:
            if fault.raw_body is not None:
                payload = fault.raw_body
                headers.setdefault("content-type", "text/html; charset=utf-8")
            else:
                error = wire.render_error(fault.status, fault.message)
                payload = json.dumps(error).encode()
            await self._write_json(writer, fault.status, payload, headers, fault)
            return True
        if not wire.is_stream(path, query, request_json):
            payload = json.dumps(wire.render_json(turn, model), ensure_ascii=False).encode()
            await self._write_json(writer, 200, payload, headers, fault)
            return True
        if fault and fault.raw_sse is not None:
            pieces = [fault.raw_sse] if fault.raw_sse else []  # an empty chunk would end the body
            return await self._write_sse(writer, pieces, headers, fault)
        events = list(wire.render_sse(turn, model))
        if fault and fault.error_event:
            events = [*events[:1], wire.render_error_event(fault.message)]
        return await self._write_sse(writer, events, headers, fault)

    def _route(self, method: str, path: str, body: Any) -> tuple[str, str] | str:
        if method != "POST":
            return f"no route for {method} {path}"
        model = str(body.get("model", "")) if isinstance(body, dict) else ""
        if path == "/v1/chat/completions":
            return "openai", model
        if path == "/v1/messages":
            return "anthropic", model
        match = _GEMINI_ROUTE.match(path)
        if match and match["method"] in ("generateContent", "streamGenerateContent"):
            return "gemini", match["model"]
        return f"no route for {method} {path}"

    def _wire(self, name: str) -> ModuleType:
        wire = self._wires.get(name)
        if wire is None:
            # Imported on first use, so a missing wire module only breaks its own route.
            wire = importlib.import_module(f"{__package__}.{name}_wire")
            self._wires[name] = wire
        return wire

    def _next_item(self, wire_name: str, body: dict[str, Any]) -> Turn | Fault:
        with self._lock:
            if self._queue:
                return self._queue.popleft()
        if self.responder is not None:
            return self.responder(wire_name, body)
        return Turn(text="ok")

    # --- writing -----------------------------------------------------------------------------

    async def _write_json(
        self,
        writer: asyncio.StreamWriter,
        status: int,
        payload: bytes,
        headers: dict[str, str],
        fault: Fault | None,
    ) -> None:
        head = {"content-type": "application/json", **headers, "content-length": str(len(payload))}
        writer.write(_head(status, head))
        await self._write_body(writer, [payload], fault, chunked=False)

    async def _write_sse(
        self,
        writer: asyncio.StreamWriter,
        events: list[bytes],
        headers: dict[str, str],
        fault: Fault | None,
    ) -> bool:
        chunked = self.chunked
        head = {"content-type": "text/event-stream", "cache-control": "no-cache", **headers}
        if chunked:
            head["transfer-encoding"] = "chunked"
        else:
            head["connection"] = "close"
        writer.write(_head(200, head))
        await self._write_body(writer, events, fault, chunked=chunked)
        if chunked:
            writer.write(b"0\r\n\r\n")
            await writer.drain()
        return chunked

    async def _write_body(
        self,
        writer: asyncio.StreamWriter,
        pieces: list[bytes],
        fault: Fault | None,
        *,
        chunked: bool,
    ) -> None:
        if fault and fault.split_bytes:
            data = b"".join(pieces)
            step = max(1, fault.split_bytes)
            pieces = [data[i : i + step] for i in range(0, len(data), step)]
        limit = fault.drop_after_bytes if fault else None
        sent = 0
        for piece in pieces:
            cut = piece
            if limit is not None and sent + len(piece) > limit:
                cut = piece[: limit - sent]
            if chunked:
                writer.write(f"{len(piece):x}\r\n".encode() + cut)
                if cut is piece:
                    writer.write(b"\r\n")
            else:
                writer.write(cut)
            sent += len(cut)
            await writer.drain()
            if cut is not piece:
                transport = writer.transport
                transport.abort()
                raise _Dropped


def _head(status: int, headers: dict[str, str]) -> bytes:
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        phrase = "Unknown"
    lines = [f"HTTP/1.1 {status} {phrase}", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    while True:
        size = int((await reader.readline()).split(b";")[0].strip() or b"0", 16)
        if size == 0:
            while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                pass
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readline()


def _count_tool_results(value: Any) -> int:
    """Count tool results in a request body of any of the three formats."""
    if isinstance(value, dict):
        own = int(
            value.get("role") == "tool"
            or value.get("type") == "tool_result"
            or "functionResponse" in value
        )
        return own + sum(_count_tool_results(v) for v in value.values())
    if isinstance(value, list):
        return sum(_count_tool_results(v) for v in value)
    return 0


def bench_responder(tool_turns: int) -> Responder:
    """Return a stateless responder for benchmarks.

    It asks for the tool ``add`` with ``{"a": 1, "b": 2}`` while the conversation holds
    fewer than ``tool_turns`` tool results, then answers with text.
    """
    from .script import ScriptedToolCall

    def respond(wire_name: str, body: dict[str, Any]) -> Turn:
        done = _count_tool_results(body.get("messages") or body.get("contents") or [])
        if done < tool_turns:
            call = ScriptedToolCall(name="add", arguments='{"a": 1, "b": 2}', id=f"call_{done}")
            return Turn(tool_calls=[call])
        return Turn(text=f"done after {done} tool calls")

    return respond
