"""In-process micro benchmarks of agentrt's per-turn path, without sockets or a server.

``python -m benchmarks.micro`` measures, in this one process:

1. whole chains against an in-memory httpx transport that answers with pre-rendered fake
   server bytes (so only agentrt + the httpx client layers run), streaming and not;
2. whole chains on ``FunctionModel`` (the core loop and tool execution, no HTTP at all);
3. the pieces of one turn, each timed alone (µs per call), with how often a turn calls them.

On a shared machine these CPU figures are far steadier than the end-to-end ones, so they
are the ones to compare when changing agentrt's hot path. They read a few private agentrt
names; a piece whose name moved is reported as skipped, not as an error.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from typing import Any

import anyio
import httpx

from benchmarks._smoke import SMOKE

from .scenarios import PROMPT, expected_answer


def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


# --- an in-memory OpenAI endpoint -------------------------------------------------------------


def _render(tool_results: int, k: int, *, stream: bool) -> list[bytes]:
    """The fake server's answer after ``tool_results`` tool results, as body pieces."""
    from tools.fakeserver import openai_wire
    from tools.fakeserver.script import Turn
    from tools.fakeserver.server import bench_responder

    messages = [{"role": "tool"}] * tool_results
    turn = bench_responder(k)("openai", {"messages": messages})
    if not isinstance(turn, Turn):
        raise TypeError(f"the bench responder answered {turn!r}, not a Turn")
    if not stream:
        return [json.dumps(openai_wire.render_json(turn, "bench")).encode()]
    return list(openai_wire.render_sse(turn, "bench"))


def _render_long(chunks: int) -> list[bytes]:
    """The streaming scenario's answer: a text in ``chunks`` ``delta.content`` events."""
    from tools.fakeserver import openai_wire
    from tools.fakeserver.script import Turn

    from .server import CHUNK_CHARS, long_text

    turn = Turn(text=long_text(chunks), text_chunk_chars=CHUNK_CHARS)
    return list(openai_wire.render_sse(turn, "bench"))


class _Pieces(httpx.AsyncByteStream):
    def __init__(self, pieces: list[bytes]) -> None:
        self._pieces = pieces

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for piece in self._pieces:
            yield piece


class MemoryTransport(httpx.AsyncBaseTransport):
    """Answers like the fake server's bench responder, from bytes rendered in advance.

    A streamed answer arrives as one body piece per SSE event, as the fake server writes it.
    """

    def __init__(self, k: int, *, text_chunks: int | None = None) -> None:
        self._answers = {
            (n, stream): _render(n, k, stream=stream)
            for n in range(k + 1)
            for stream in (True, False)
        }
        self._long = _render_long(text_chunks) if text_chunks else None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = request.content
        if self._long is not None:
            headers = [(b"content-type", b"text/event-stream")]
            return httpx.Response(200, headers=headers, stream=_Pieces(self._long))
        done = body.count(b'"role":"tool"')
        stream = b'"stream":true' in body
        pieces = self._answers[(done, stream)]
        if stream:
            headers = [(b"content-type", b"text/event-stream")]
            return httpx.Response(200, headers=headers, stream=_Pieces(pieces))
        headers = [(b"content-type", b"application/json")]
        return httpx.Response(200, headers=headers, content=pieces[0])


# --- whole chains ---------------------------------------------------------------------------


async def _chains(run: Callable[[], Awaitable[str]], chains: int, k: int) -> dict[str, float]:
    expected = expected_answer(k)
    text = await run()  # warm-up
    assert expected in text, text
    cpu0, t0 = time.process_time(), time.perf_counter()
    for _ in range(chains):
        await run()
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - t0
    turns = chains * (k + 1)
    return {"cpu_us_per_turn": cpu / turns * 1e6, "wall_us_per_turn": wall / turns * 1e6}


def memory_model(transport: httpx.AsyncBaseTransport, *, own: bool, **options: Any) -> Any:
    """An agentrt model whose HTTP client uses ``transport``.

    ``own=True`` installs the client as if agentrt had built it (the default path users
    get, which may skip httpx's client layers); ``own=False`` passes it as ``http_client=``.
    The first touches a private attribute: it fails loudly if that moves.
    """
    import agentrt

    client = httpx.AsyncClient(transport=transport)
    if not own:
        options["http_client"] = client
    model: Any = agentrt.get_async_model(
        "openai:bench", base_url="http://bench.invalid/v1", api_key="sk-bench", **options
    )
    if own:
        provider: Any = model.provider
        if not hasattr(provider, "_client"):
            raise RuntimeError("HTTPProvider._client moved; update benchmarks/micro.py")
        provider._client = client
    model._bench_client = client
    return model


async def close_memory_model(model: Any) -> None:
    await model.aclose()
    await model._bench_client.aclose()


async def agentrt_in_memory(
    *, stream: bool, chains: int, k: int, handlers: str = "none", own: bool = True
) -> dict[str, float]:
    """agentrt chains over httpx with the in-memory transport."""
    from .agentrt_client import callbacks

    model = memory_model(MemoryTransport(k), own=own, stream=stream, callbacks=callbacks(handlers))
    try:
        return await _chains(lambda: model.chain(PROMPT, tools=[add]).text(), chains, k)
    finally:
        await close_memory_model(model)


async def function_model(*, chains: int, k: int) -> dict[str, float]:
    """agentrt chains on FunctionModel: the loop and tool execution, no HTTP."""
    from agentrt.testing import FunctionModel, ModelTurn, call

    def script(messages: list[Any], _tools: list[Any]) -> Any:
        done = sum(1 for m in messages if m.role == "tool")
        if done < k:
            return ModelTurn(tool_calls=[call("add", a=1, b=2, id=f"call_{done}")])
        return expected_answer(done)

    model = FunctionModel(script)
    return await _chains(lambda: model.chain(PROMPT, tools=[add]).text(), chains, k)


async def httpx_only(*, stream: bool, requests: int) -> dict[str, float]:
    """httpx.AsyncClient.send + reading the body on the in-memory transport: the floor
    agentrt pays for keeping httpx's client API."""
    client = httpx.AsyncClient(transport=MemoryTransport(3))
    body = json.dumps(
        {"model": "bench", "messages": [], "stream": stream}, separators=(",", ":")
    ).encode()
    cpu0 = time.process_time()
    for _ in range(requests):
        request = client.build_request(
            "POST", "http://bench.invalid/v1/chat/completions", content=body
        )
        response = await client.send(request, stream=True)
        async for _chunk in response.aiter_bytes():
            pass
        await response.aclose()
    cpu = time.process_time() - cpu0
    await client.aclose()
    return {"cpu_us_per_turn": cpu / requests * 1e6}


async def stream_in_memory(*, what: str, chunks: int, answers: int) -> dict[str, float]:
    """CPU per streamed chunk of a long answer: agentrt, httpx alone, or parsing alone."""
    from agentrt._sse import SSEParser

    model = memory_model(MemoryTransport(0, text_chunks=chunks), own=True)
    client: httpx.AsyncClient = model._bench_client
    pieces = _render_long(chunks)
    url = "http://bench.invalid/v1/chat/completions"

    async def agentrt_once() -> int:
        got = 0
        async for chunk in model.prompt("Say a lot."):
            got += bool(chunk.content)
        return got

    async def httpx_once() -> int:
        response = await client.send(client.build_request("POST", url, content=b"{}"), stream=True)
        got = 0
        async for _piece in response.aiter_bytes():
            got += 1
        await response.aclose()
        return got - 3  # role, finish, usage and [DONE] events carry no text

    async def parse_once() -> int:
        parser = SSEParser()
        got = 0
        for piece in pieces:
            for event in parser.feed(piece):
                if event.data.startswith("{"):
                    choices = json.loads(event.data)["choices"]
                    if choices and choices[0]["delta"].get("content"):
                        got += 1
        return got

    once = {"agentrt": agentrt_once, "httpx": httpx_once, "parse": parse_once}[what]
    try:
        await once()
        cpu0 = time.process_time()
        for _ in range(answers):
            await once()
        cpu = time.process_time() - cpu0
    finally:
        await model.aclose()
        await client.aclose()
    return {"cpu_us_per_turn": cpu / (answers * chunks) * 1e6}


# --- pieces of a turn -----------------------------------------------------------------------


def _time(fn: Callable[[], Any], *, number: int) -> float:
    """Best of 5 runs of ``number`` calls, µs per call."""
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, time.perf_counter() - t0)
    return best / number * 1e6


async def _atime(fn: Callable[[], Awaitable[Any]], *, number: int) -> float:
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(number):
            await fn()
        best = min(best, time.perf_counter() - t0)
    return best / number * 1e6


Piece = tuple[str, float | None, float, str]  # name, µs per call, calls per turn, note


async def pieces(k: int) -> list[Piece]:
    """Time the parts of one streamed tool turn alone."""
    import tenacity

    import agentrt
    from agentrt import messages as m

    out: list[Piece] = []

    def attempt(name: str, per_turn: float, fn: Callable[[], Any], number: int = 2000) -> None:
        try:
            out.append((name, _time(fn, number=number), per_turn, ""))
        except Exception as exc:  # a private name moved: report, don't fail
            out.append((name, None, per_turn, f"skipped: {type(exc).__name__}: {exc}"))

    model = agentrt.get_async_model(
        "openai:bench", base_url="http://127.0.0.1:9/v1", api_key="sk-bench"
    )
    provider: Any = model.provider
    history: list[m.Message] = [m.Message(role="user", content=PROMPT)]
    for i in range(k):
        call = m.ToolCall(
            id=f"call_{i}", name="add", arguments={"a": 1, "b": 2}, raw_arguments='{"a": 1, "b": 2}'
        )
        history.append(m.Message(role="assistant", tool_calls=[call]))
        history.append(m.Message(role="tool", content="3", tool_call_id=call.id, name="add"))
    chain = model.chain(PROMPT, tools=[add])
    specs = chain._specs
    request = m.TurnRequest(history, None, specs, {})
    from agentrt.providers._wire import encode_body

    body = provider.codec.plain_body(provider.model_name, request, stream=True)
    attempt(
        "chain construction (model.chain(...))",
        1 / (k + 1),
        lambda: model.chain(PROMPT, tools=[add]),
    )
    attempt(
        "TurnRequest + request_body (K=3 history, a fresh chain cache)",
        1,
        lambda: provider.codec.request_body(
            provider.model_name,
            m.TurnRequest(list(history), None, specs, {}),
            stream=True,
            cache={},
        ),
    )
    attempt(
        "json.dumps(body)",
        1,
        lambda: json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode(),
    )
    attempt(
        "HTTPProvider route + encode_body (the request the backend sends)",
        1,
        lambda: (
            provider._route("/chat/completions", None, None, sse=True),
            encode_body(body),
        ),
    )
    client: httpx.AsyncClient = provider.client
    url = httpx.URL(provider.base_url + "/chat/completions")
    headers = httpx.Headers(client.headers)
    headers.update(
        {
            "content-type": "application/json",
            "accept": "text/event-stream",
            "authorization": "Bearer sk-bench",
        }
    )
    raw_headers = headers.raw
    content = json.dumps(body).encode()
    timeout = {"timeout": client.timeout.as_dict()}
    attempt(
        "  client.build_request alone",
        1,
        lambda: client.build_request(
            "POST", provider.base_url + "/chat/completions", content=content, headers=dict(headers)
        ),
    )
    attempt(
        "  httpx.Request with cached URL + headers (alternative)",
        1,
        lambda: httpx.Request(
            "POST", url, headers=raw_headers, content=content, extensions=dict(timeout)
        ),
    )

    sse_pieces = _render(0, k, stream=True)

    def parse_sse() -> None:
        from agentrt._sse import SSEParser

        parser = SSEParser()
        for piece in sse_pieces:
            for event in parser.feed(piece):
                if event.data.startswith("{"):
                    json.loads(event.data)

    attempt(f"SSEParser.feed + json.loads, tool-call turn ({len(sse_pieces)} events)", 1, parse_sse)

    first_turn = m.TurnRequest([m.Message(role="user", content=PROMPT)], None, specs, {})
    for own in (True, False):
        mem_model = memory_model(MemoryTransport(k), own=own)
        mem_provider: Any = mem_model.provider

        async def provider_turn(stream: bool, mem_provider: Any = mem_provider) -> None:
            async for _event in mem_provider.turn(first_turn, stream=stream):
                pass

        for stream in (True, False):
            label = ("stream" if stream else "json") + (
                ", agentrt's own client" if own else ", a user's http_client="
            )
            per_call = await _atime(partial(provider_turn, stream), number=500)
            out.append((f"provider.turn() in memory ({label})", per_call, 1, ""))
        await close_memory_model(mem_model)

    attempt(
        "StreamChunk(...) validated",
        1,
        lambda: m.StreamChunk(content="", finish_reason="tool_calls", turn=0),
    )
    attempt(
        "StreamChunk.model_construct(...)",
        1,
        lambda: m.StreamChunk.model_construct(content="", finish_reason="tool_calls", turn=0),
    )
    attempt(
        "Message(role='assistant', tool_calls=[...]) validated",
        1,
        lambda: m.Message(role="assistant", content="", tool_calls=[call]),
    )
    attempt(
        "Message.model_construct(...)",
        1,
        lambda: m.Message.model_construct(role="assistant", content="", tool_calls=[call]),
    )
    attempt(
        "ToolResult(...) validated",
        k / (k + 1),
        lambda: m.ToolResult(tool_call_id="c", name="add", content="3", duration=0.1),
    )
    import uuid

    attempt(
        "uuid.uuid4().hex (per chain and per response)", 1 + 1 / (k + 1), lambda: uuid.uuid4().hex
    )

    async def noop() -> int:
        return 1

    async def through_tenacity() -> None:
        await tenacity.AsyncRetrying(
            sleep=anyio.sleep,
            stop=tenacity.stop_after_attempt(3),
            retry=tenacity.retry_if_exception_type(OSError)
            | tenacity.retry_if_result(lambda r: False),
            reraise=True,
        )(noop)

    out.append(
        (
            "tenacity AsyncRetrying around one successful call",
            await _atime(through_tenacity, number=2000) - await _atime(noop, number=2000),
            1,
            "",
        )
    )

    try:
        from agentrt.callbacks import Hooks

        from .agentrt_client import callbacks

        chunk = m.StreamChunk(content="x", turn=0)
        events_per_turn = (
            21 / 4
        )  # a K=3 chain: 2 chain, 4x(start, end, final chunk), 3x2 tool, 1 text chunk
        for kind in ("noop-handler", "noop-async-handler"):
            hooks = Hooks(callbacks(kind))

            async def emit(hooks: Any = hooks) -> None:
                await hooks.emit("on_chunk", None, chunk)

            out.append(
                (
                    f"hooks.emit() of one event to a {kind}",
                    await _atime(emit, number=5000),
                    events_per_turn,
                    "",
                )
            )
        empty = Hooks()
        out.append(
            (
                "`if hooks.on_chunk:` with no handler",
                _time(lambda: bool(empty.on_chunk), number=20000),
                events_per_turn,
                "",
            )
        )
    except Exception as exc:
        out.append(("hooks.emit()", None, 0, f"skipped: {type(exc).__name__}: {exc}"))

    async def fail_after() -> None:
        with anyio.fail_after(60):  # noqa: ASYNC100 - timing the scope itself
            pass

    out.append(
        (
            "anyio.fail_after(...) enter/exit",
            await _atime(fail_after, number=5000),
            0,
            "per use; httpcore uses one per socket read/write",
        )
    )

    try:
        from agentrt._backend import run_in_thread
    except ImportError as exc:
        out.append(("agentrt sync-tool hop", None, 0, f"skipped: {type(exc).__name__}: {exc}"))
    else:

        async def agentrt_hop() -> None:
            await run_in_thread(lambda: add(1, 2), limiter=None)

        out.append(
            (
                "agentrt run_in_thread(add) (sync tool hop; anyio's on trio)",
                await _atime(agentrt_hop, number=500),
                k / (k + 1),
                "",
            )
        )

    async def to_thread() -> None:
        await anyio.to_thread.run_sync(add, 1, 2)

    out.append(
        (
            "  anyio.to_thread.run_sync(add) (the alternative)",
            await _atime(to_thread, number=500),
            0,
            "",
        )
    )
    limiter = anyio.CapacityLimiter(100)

    async def to_thread_limited() -> None:
        await anyio.to_thread.run_sync(add, 1, 2, limiter=limiter)

    out.append(
        ("  ... with a CapacityLimiter(100)", await _atime(to_thread_limited, number=500), 0, "")
    )
    await model.aclose()
    return out


# --- entry point ----------------------------------------------------------------------------


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    k, chains = args.k, args.chains
    turns = chains * (k + 1)
    measurements: dict[str, Callable[[], Awaitable[dict[str, float]]]] = {
        "chains, in-memory httpx transport, stream": lambda: agentrt_in_memory(
            stream=True, chains=chains, k=k
        ),
        "chains, in-memory httpx transport, json": lambda: agentrt_in_memory(
            stream=False, chains=chains, k=k
        ),
        "  ... stream, client passed as http_client= (httpx send path)": lambda: agentrt_in_memory(
            stream=True, chains=chains, k=k, own=False
        ),
        "  ... stream, one no-op CallbackHandler (def hooks)": lambda: agentrt_in_memory(
            stream=True, chains=chains, k=k, handlers="noop-handler"
        ),
        "  ... stream, one no-op CallbackHandler (async def hooks)": lambda: agentrt_in_memory(
            stream=True, chains=chains, k=k, handlers="noop-async-handler"
        ),
        "chains on FunctionModel (no HTTP; loop + sync tool)": lambda: function_model(
            chains=chains, k=k
        ),
        "httpx AsyncClient send + read alone (in-memory SSE body)": lambda: httpx_only(
            stream=True, requests=turns
        ),
        "500-chunk answer: agentrt model.prompt(), per chunk": lambda: stream_in_memory(
            what="agentrt", chunks=500, answers=max(4, chains // 10)
        ),
        "500-chunk answer: httpx aiter_bytes alone, per chunk": lambda: stream_in_memory(
            what="httpx", chunks=500, answers=max(4, chains // 10)
        ),
        "500-chunk answer: SSEParser + json.loads alone, per chunk": lambda: stream_in_memory(
            what="parse", chunks=500, answers=max(4, chains // 10)
        ),
    }
    runs: dict[str, list[float]] = {label: [] for label in measurements}
    # Interleaved rounds: drift on a shared machine hits every measurement alike.
    for _ in range(args.repeat):
        for label, measure in measurements.items():
            runs[label].append((await measure())["cpu_us_per_turn"])
    results: dict[str, Any] = {
        label: {"cpu_us_min": min(values), "cpu_us_median": statistics.median(values)}
        for label, values in runs.items()
    }
    results["pieces"] = await pieces(k)
    return results


def render(results: dict[str, Any]) -> str:
    lines = ["| in-process measurement | CPU µs per turn or chunk (min) | (median) |"]
    lines.append("|---|---|---|")
    for label, value in results.items():
        if label == "pieces":
            continue
        digits = 2 if "chunk" in label else 0
        lines.append(
            f"| {label} | {value['cpu_us_min']:.{digits}f} | {value['cpu_us_median']:.{digits}f} |"
        )
    lines += [
        "",
        "| piece of a turn | µs per call | calls per turn | µs per turn |",
        "|---|---|---|---|",
    ]
    for name, per_call, per_turn, note in results["pieces"]:
        if per_call is None:
            lines.append(f"| {name} | {note} | | |")
            continue
        cost = f"{per_call * per_turn:.1f}" if per_turn else "—"
        lines.append(f"| {name} | {per_call:.1f} | {per_turn:.2f} | {cost} {note} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.micro")
    parser.add_argument("--k", type=int, default=3, help="tool turns per chain")
    parser.add_argument("--chains", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", default="", help="write the figures here too")
    parser.add_argument(
        "--no-extras", action="store_true", help="skip the output_type and OpenTelemetry costs"
    )
    parser.add_argument("--backend", default="asyncio", choices=["asyncio", "trio"])
    args = parser.parse_args(argv)
    if SMOKE:  # CI: only check that every piece still runs
        args.chains, args.repeat = 20, 1
    results = anyio.run(main_async, args, backend=args.backend)
    print(render(results))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)
    if not args.no_extras:
        # What typed results and tracing add to a turn, measured by their own modules.
        from benchmarks import otel_bench, output_bench

        print("\n## output_type= per turn (benchmarks.output_bench)\n", flush=True)
        output_bench.main(["--calls", "50" if SMOKE else "2000", "--repeat", "1" if SMOKE else "5"])
        print("\n## OpenTelemetry off / on (benchmarks.otel_bench)\n", flush=True)
        otel_bench.main([])
    return 0


if __name__ == "__main__":
    sys.exit(main())
