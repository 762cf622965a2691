"""The API key never leaks: not in exceptions, reprs, log records or the SQLite log.

One test per provider runs the whole fault matrix (every error type agentrt can raise or
hand to the model) with a recognisable key, while the servers echo that key back in every
error text they can: error messages, HTML error pages, mid-stream error events and
malformed events. Everything produced is then searched for the key: the str, repr and
formatted traceback of every exception and of its ``__cause__``/``__context__`` chain,
the reprs of the model, provider, chains and responses, every log record of every logger
at DEBUG (message, args, exception text), and the bytes of the SQLite log.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from _faultkit import TARGETS, Target, closed_port

import agentrt
from agentrt import AsyncModel, CancelChain
from agentrt.errors import (
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ChainLimitError,
    ProviderError,
    RateLimitError,
    ServerError,
)
from agentrt.logs import SQLiteLogger
from tools.fakeserver.script import Fault, ScriptedToolCall, Turn
from tools.fakeserver.server import FakeServer

pytestmark = pytest.mark.anyio

SECRET = "sk-SECRET-canary-7f3a9"
ECHO = f"Incorrect API key provided: {SECRET}. You can find your key in your dashboard."


def cases(target: Target) -> Iterator[tuple[str, list[Any], type[BaseException] | None, bool]]:
    """(name, what the server answers, the exception expected, stream) for every fault."""
    first_event = target.sse(Turn(text="hello"))[0]
    for stream in (True, False):
        yield "401", [Fault(status=401, message=ECHO)], AuthenticationError, stream
        yield "403", [Fault(status=403, message=ECHO)], AuthenticationError, stream
        yield "400", [Fault(status=400, message=ECHO)], BadRequestError, stream
        yield "429", [Fault(status=429, message=ECHO)] * 3, RateLimitError, stream
        yield "500", [Fault(status=500, message=ECHO)] * 3, ServerError, stream
        yield "529", [Fault(status=529, message=ECHO)] * 3, ServerError, stream
        html = f"<html><body>Bad gateway for key {SECRET}</body></html>".encode()
        yield "502-html", [Fault(status=502, raw_body=html)] * 3, ServerError, stream
        yield "tool-errors", TOOL_ERRORS, None, stream
        yield (
            "max-turns",
            [Turn(tool_calls=[ScriptedToolCall("echo", '{"text": "x"}')])] * 3,
            (ChainLimitError),
            stream,
        )
    turn = Turn(text="hello " * 50)
    yield "error-event", [Fault(turn=turn, error_event=True, message=ECHO)], ProviderError, True
    yield "dropped", [Fault(turn=turn, drop_after_bytes=300)], APIConnectionError, True
    for body in (
        first_event + f"data: {{not json, key {SECRET}\n\n".encode(),
        first_event + f'data: ["{SECRET}"]\n\n'.encode(),
        first_event + f'data: {{"error": "{SECRET}"}}\n\n'.encode(),
        first_event + f'data: {{"error": {{"message": "{ECHO}"}}}}\n\n'.encode(),
    ):
        yield "malformed-sse", [Fault(raw_sse=body)], ProviderError, True


#: A turn of bad tool calls of every kind, then an answer: error results, no exception.
TOOL_ERRORS = [
    Turn(
        tool_calls=[
            ScriptedToolCall("echo", '{"text": ', "c_json"),
            ScriptedToolCall("missing", "{}", "c_unknown"),
            ScriptedToolCall("echo", '{"text": 5}', "c_invalid"),
            ScriptedToolCall("boom", "{}", "c_raises"),
            ScriptedToolCall("slow", "{}", "c_timeout"),
            ScriptedToolCall("big", "{}", "c_big"),
        ]
    ),
    Turn(tool_calls=[ScriptedToolCall("stop", "{}", "c_stop")]),
]


@agentrt.tool
def echo(text: str) -> str:
    """Echo the text."""
    return text


@agentrt.tool
def boom() -> str:
    """Fail."""
    raise RuntimeError("the tool broke")


@agentrt.tool(timeout=0.05)
async def slow() -> str:
    """Take too long."""
    await anyio.sleep_forever()
    raise AssertionError("unreachable")


@agentrt.tool
def big() -> str:
    """Return a lot."""
    return "y" * 300_000


@agentrt.tool
def stop() -> str:
    """End the chain."""
    raise CancelChain("enough")


TOOLS = [echo, boom, slow, big, stop]


def exception_texts(exc: BaseException, seen: set[int] | None = None) -> Iterator[str]:
    """str, repr and attributes of an exception and of everything chained to it."""
    seen = set() if seen is None else seen
    if id(exc) in seen:
        return
    seen.add(id(exc))
    yield str(exc)
    yield repr(exc)
    yield "".join(traceback.format_exception(exc))
    if isinstance(exc, agentrt.AgentrtError):
        yield repr(vars(exc))  # status, message, request id, body, responses...
    for linked in (exc.__cause__, exc.__context__, *getattr(exc, "exceptions", ())):
        if linked is not None:
            yield from exception_texts(linked, seen)


def record_texts(record: logging.LogRecord) -> Iterator[str]:
    yield record.getMessage()
    yield repr(record.args)
    yield repr(record.msg)
    if record.exc_info:
        yield logging.Formatter().formatException(record.exc_info)
    if record.exc_text:
        yield record.exc_text


async def run_matrix(
    model: AsyncModel, server: FakeServer, target: Target, produced: list[str]
) -> list[agentrt.AsyncChain]:
    chains = []
    for name, items, expected, stream in cases(target):
        server.reset()
        server.push(*items, Turn(text="recovered"))
        options: dict[str, Any] = {"max_turns": 2} if name == "max-turns" else {}
        chain = model.chain("hi", tools=TOOLS, stream=stream, **options)
        chains.append(chain)
        if expected is None:
            await chain.text()
            assert chain.status == "cancelled"  # ended by the stop tool's CancelChain
            errors = [type(r.error).__name__ for r in chain.tool_results]
            assert errors == [
                "ToolArgumentsError",
                "UnknownToolError",
                "ToolArgumentsError",
                "RuntimeError",
                "ToolTimeoutError",
                "NoneType",  # the big one: capped, not an error
                "CancelChain",
            ]
        else:
            with pytest.raises(expected) as info:
                await chain.text()
            produced.extend(exception_texts(info.value))
    return chains


@pytest.mark.parametrize("target", TARGETS, ids=str)
async def test_the_key_never_leaks(
    fake_server: FakeServer, target: Target, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("agentrt", "agentrt.http", "httpx", "httpcore", "hpack", "anyio"):
        caplog.set_level(logging.DEBUG, logger=name)
    db = tmp_path / "logs.db"
    sqlite_log = SQLiteLogger(db)
    produced: list[str] = []
    things: list[Any] = []

    model = target.model(fake_server, api_key=SECRET, callbacks=[sqlite_log])
    async with model:
        chains = await run_matrix(model, fake_server, target, produced)
        assert len(fake_server.requests) >= 1
        assert fake_server.requests[0].headers  # the key did travel, in a header
        sent_headers = " ".join(fake_server.requests[0].headers.values())
        assert SECRET in sent_headers
        assert SECRET not in fake_server.requests[0].path + str(fake_server.requests[0].query)

        # Cancelled while waiting for the answer.
        fake_server.reset()
        fake_server.push(Fault(delay=5.0))
        chain = model.chain("hi")
        with anyio.move_on_after(0.05):
            await chain.text()
        assert chain.status == "cancelled"
        chains.append(chain)
        things.extend([model, model.provider, model.provider.api_key])

    # No answer in time.
    impatient = target.model(
        fake_server, api_key=SECRET, timeout=0.05, max_retries=0, callbacks=[sqlite_log]
    )
    async with impatient:
        for stream in (True, False):
            fake_server.reset()
            fake_server.push(Fault(delay=0.3))
            chain = impatient.chain("hi", stream=stream)
            with pytest.raises(APITimeoutError) as timed_out:
                await chain.text()
            produced.extend(exception_texts(timed_out.value))
            chains.append(chain)
        things.extend([impatient, impatient.provider])

    # No server at all.
    port = closed_port()
    base_url = f"http://127.0.0.1:{port}" + ("/v1" if target.name == "openai" else "")
    refused = target.model(api_key=SECRET, base_url=base_url, callbacks=[sqlite_log])
    async with refused:
        chain = refused.chain("hi")
        with pytest.raises(APIConnectionError) as info:
            await chain.text()
        produced.extend(exception_texts(info.value))
        chains.append(chain)
        things.extend([refused, refused.provider])

    for chain in chains:
        things.extend([chain, *chain.responses, *chain.tool_results])
        for error in [chain.error, *(r.error for r in chain.responses)]:
            if error is not None:
                produced.extend(exception_texts(error))
        for result in chain.tool_results:
            produced.append(result.content)
            if result.error is not None:
                produced.extend(exception_texts(result.error))
        produced.append(repr(chain.messages))
    produced.extend(repr(thing) for thing in things)
    produced.extend(str(thing) for thing in things)

    await sqlite_log.aclose()
    for record in caplog.records:
        produced.extend(record_texts(record))
    assert any("retry" in r.getMessage() for r in caplog.records)  # logging was captured
    # the transport's request log lines (agentrt's own transport logs under agentrt.http)
    assert any(r.name == "agentrt.http" and "POST" in r.getMessage() for r in caplog.records)

    leaks = sorted({text[:300] for text in produced if SECRET in text})
    assert leaks == []
    # The server's echoes were redacted rather than dropped: the message stays useful.
    assert any("Incorrect API key provided: [redacted]" in text for text in produced)

    files = [p async for p in anyio.Path(tmp_path).iterdir() if p.name.startswith("logs.db")]
    assert files
    for path in files:
        assert SECRET.encode() not in await path.read_bytes(), path.name
    async with SQLiteLogger(db) as reader:
        logged = await reader.recent_chains(limit=100)
    assert len(logged) == len(chains)
    assert sum(1 for c in logged if c["status"] == "failed") >= 10
