"""The floor: a hand-written HTTP/1.1 client on raw asyncio streams.

It speaks exactly what the fake server needs (keep-alive, ``Content-Length`` and chunked
bodies, OpenAI JSON and SSE) and nothing else: no retries, no validation, no callbacks.
Whatever agentrt spends beyond this is agentrt's own cost. Connections are pooled (a LIFO
free list shared by all chains), as a real client's would be.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from .scenarios import PROMPT, Spec

_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "add",
            "description": "Add two integers.",
            "parameters": {
                "type": "object",
                "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                "required": ["a", "b"],
            },
        },
    }
]

#: Tool turns before a chain gives up (the scenarios need at most a few).
MAX_TURNS = 10


def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


class ProtocolError(Exception):
    """The server answered something this minimal client does not understand."""


@dataclass
class TurnOutcome:
    text: str = ""
    calls: dict[int, list[str]] = field(default_factory=dict)  # index -> [id, name, args]
    first_chunk_at: float | None = None
    chunks: int = 0


class _Conn:
    __slots__ = ("reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer


class RawClient:
    """A minimal keep-alive OpenAI Chat Completions client."""

    def __init__(self, base_url: str, *, stream: bool) -> None:
        parts = urlsplit(base_url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.path = parts.path.rstrip("/") + "/chat/completions"
        self.stream = stream
        self._idle: list[_Conn] = []
        self._head = (
            f"POST {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            "Authorization: Bearer sk-bench\r\nContent-Type: application/json\r\n"
            + ("Accept: text/event-stream\r\n" if stream else "")
            + "Content-Length: "
        )

    async def _acquire(self) -> _Conn:
        if self._idle:
            return self._idle.pop()
        reader, writer = await asyncio.open_connection(self.host, self.port)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return _Conn(reader, writer)

    async def turn(self, messages: list[dict[str, Any]], *, tools: bool = True) -> TurnOutcome:
        """Send one request and read the whole answer."""
        body: dict[str, Any] = {"model": "bench", "messages": messages}
        if tools:
            body["tools"] = _TOOLS
        if self.stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        payload = json.dumps(body, separators=(",", ":")).encode()
        conn = await self._acquire()
        try:
            conn.writer.write(f"{self._head}{len(payload)}\r\n\r\n".encode() + payload)
            outcome = await self._read_response(conn.reader)
        except BaseException:
            conn.writer.close()
            raise
        self._idle.append(conn)
        return outcome

    async def _read_response(self, reader: asyncio.StreamReader) -> TurnOutcome:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        if status != 200:
            raise ProtocolError(f"HTTP {status}")
        outcome = TurnOutcome()
        if headers.get("transfer-encoding") == "chunked":
            await self._read_sse(reader, outcome)
            return outcome
        data = await reader.readexactly(int(headers["content-length"]))
        message = json.loads(data)["choices"][0]["message"]
        outcome.text = message.get("content") or ""
        for index, call in enumerate(message.get("tool_calls") or ()):
            function = call["function"]
            outcome.calls[index] = [call["id"], function["name"], function["arguments"]]
        return outcome

    async def _read_sse(self, reader: asyncio.StreamReader, outcome: TurnOutcome) -> None:
        buffer = b""
        parts: list[str] = []
        calls = outcome.calls
        while True:
            size = int((await reader.readline()).split(b";", 1)[0], 16)
            if size == 0:
                await reader.readline()
                break
            buffer += (await reader.readexactly(size + 2))[:-2]
            while True:
                end = buffer.find(b"\n\n")
                if end < 0:
                    break
                event, buffer = buffer[:end], buffer[end + 2 :]
                for line in event.split(b"\n"):
                    if not line.startswith(b"data:"):
                        continue
                    data = line[5:].strip()
                    if data == b"[DONE]":
                        continue
                    chunk = json.loads(data)
                    for choice in chunk.get("choices") or ():
                        delta = choice.get("delta") or {}
                        text = delta.get("content")
                        if text:
                            if outcome.first_chunk_at is None:
                                outcome.first_chunk_at = time.perf_counter()
                            outcome.chunks += 1
                            parts.append(text)
                        for fragment in delta.get("tool_calls") or ():
                            entry = calls.get(fragment["index"])
                            function = fragment.get("function") or {}
                            if entry is None:
                                entry = calls[fragment["index"]] = [
                                    fragment.get("id") or "",
                                    function.get("name") or "",
                                    "",
                                ]
                            entry[2] += function.get("arguments") or ""
        outcome.text = "".join(parts)

    async def run_chain(self) -> str:
        """Run turns until the model answers without tool calls; return the final text."""
        messages: list[dict[str, Any]] = [{"role": "user", "content": PROMPT}]
        for _ in range(MAX_TURNS):
            outcome = await self.turn(messages)
            if not outcome.calls:
                return outcome.text
            calls = [outcome.calls[i] for i in sorted(outcome.calls)]
            messages.append(
                {
                    "role": "assistant",
                    "content": outcome.text or None,
                    "tool_calls": [
                        {"id": i, "type": "function", "function": {"name": n, "arguments": a}}
                        for i, n, a in calls
                    ],
                }
            )
            for call_id, _name, arguments in calls:
                result = add(**json.loads(arguments))
                messages.append(
                    {"role": "tool", "tool_call_id": call_id, "content": json.dumps(result)}
                )
        raise ProtocolError("too many tool turns")

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.writer.close()


async def open_client(spec: Spec) -> RawClient:
    return RawClient(spec.base_url, stream=spec.stream)
