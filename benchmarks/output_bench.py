"""CPU that ``output_type=`` adds to a turn, for a 10-field model.

``python -m benchmarks.output_bench`` times, per call (µs, process CPU, min and median of
``--repeat`` rounds):

1. the cached spec lookup (``output_spec(Model)``) and the provider dialect lookup;
2. building the request piece (``native_body``, and ``native_json``, its encoding cached
   per type, which the OpenAI codec places in the body);
3. local validation of a valid answer (JSON parse, OpenAI-null normalisation, pydantic);
4. the whole per-turn sum of the three, beside a turn's own CPU;
5. end to end: a one-turn ``FunctionModel`` chain, and a one-turn OpenAI chain over httpx's
   in-memory transport (the path ``benchmarks.micro`` measures), with and without it.

A turn's CPU comes from ``python -m benchmarks.micro`` ("chains, in-memory httpx
transport"): pass its JSON with ``--micro-json`` (written by ``benchmarks.micro --json``), or
``--turn-us`` directly; without either the figure is measured here on a ``FunctionModel``
chain, which is the cheapest turn there is (so the share shown is an upper bound).
Cold conversion (the first use of a type) is reported too: it is paid once per type.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, Field


class Address(BaseModel):
    city: str
    street: str


class Order(BaseModel):
    """An order, as a model would extract it from an email."""

    id: str
    customer: str
    email: str
    quantity: int = Field(ge=1)
    unit_price: float
    currency: Literal["EUR", "USD", "GBP"]
    express: bool = False
    notes: str | None = None
    tags: list[str] = []
    address: Address | None = None


ANSWER = json.dumps(
    {
        "id": "A-1042",
        "customer": "Ada Lovelace",
        "email": "ada@example.org",
        "quantity": 3,
        "unit_price": 19.5,
        "currency": "EUR",
        "express": None,
        "notes": "leave at the door",
        "tags": ["gift", "fragile"],
        "address": {"city": "London", "street": "St James's Square"},
    }
)


def _cpu_us(fn: Callable[[], Any], calls: int, repeat: int) -> tuple[float, float]:
    rounds = []
    for _ in range(repeat):
        start = time.process_time()
        for _ in range(calls):
            fn()
        rounds.append((time.process_time() - start) / calls * 1e6)
    return min(rounds), statistics.median(rounds)


def _turn_us_from_function_model(repeat: int) -> float:
    import anyio

    from agentrt.testing import FunctionModel

    model = FunctionModel(lambda messages, tools: "done")

    async def run(n: int) -> None:
        for _ in range(n):
            await model.chain("hi").text()

    rounds = []
    for _ in range(repeat):
        start = time.process_time()
        anyio.run(run, 300)
        rounds.append((time.process_time() - start) / 300 * 1e6)
    return min(rounds)


def _chains_us(repeat: int, n: int = 300) -> tuple[float, float]:
    """CPU µs per one-turn FunctionModel chain: (text, ``output_type=Order``), alternating."""
    import anyio

    from agentrt.testing import FunctionModel, ModelTurn

    # Not the OpenAI dialect here: no null stands for an omitted field.
    plain = json.dumps({k: v for k, v in json.loads(ANSWER).items() if v is not None})
    text_model = FunctionModel(lambda messages, tools: ModelTurn(text=plain))
    typed_model = FunctionModel(lambda messages, tools: ModelTurn(output=plain))

    async def run(typed: bool) -> None:
        for _ in range(n):
            if typed:
                await typed_model.chain("hi", output_type=Order).output()
            else:
                await text_model.chain("hi").text()

    best = [float("inf"), float("inf")]
    for _ in range(repeat):
        for typed in (False, True):
            start = time.process_time()
            anyio.run(run, typed)
            best[typed] = min(best[typed], (time.process_time() - start) / n * 1e6)
    return best[0], best[1]


def _http_chains_us(stream: bool, repeat: int, n: int = 300) -> tuple[float, float]:
    """CPU µs per one-turn OpenAI chain over httpx's in-memory transport (as micro's).

    Returns:
        (text chain, ``output_type=Order`` chain): the minimum of ``repeat`` rounds each,
        the two kinds alternating so that a busy machine slows both alike.
    """
    import anyio
    import httpx

    from tools.fakeserver import openai_wire
    from tools.fakeserver.script import Turn

    from .micro import close_memory_model, memory_model

    turn = Turn(text=ANSWER)
    if stream:
        pieces = list(openai_wire.render_sse(turn, "bench"))
        kind = b"text/event-stream"
    else:
        pieces = [json.dumps(openai_wire.render_json(turn, "bench")).encode()]
        kind = b"application/json"

    class Answer(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            return httpx.Response(200, headers=[(b"content-type", kind)], content=b"".join(pieces))

    async def run() -> tuple[float, float]:
        model = memory_model(Answer(), own=True, stream=stream)
        best = [float("inf"), float("inf")]
        try:
            for _ in range(repeat):
                for typed in (False, True):
                    start = time.process_time()
                    for _ in range(n):
                        if typed:
                            await model.chain("hi", output_type=Order).output()
                        else:
                            await model.chain("hi").text()
                    spent = (time.process_time() - start) / n * 1e6
                    best[typed] = min(best[typed], spent)
        finally:
            await close_memory_model(model)
        return best[0], best[1]

    return anyio.run(run)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.output_bench")
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--micro-json", default="", help="benchmarks.micro --json output")
    parser.add_argument("--turn-us", type=float, default=0.0, help="a turn's CPU in µs")
    args = parser.parse_args(argv)

    from agentrt.output import dialect, native_body, native_json, output_spec, validate_answer
    from agentrt.output._spec import clear_caches

    def cold() -> None:
        clear_caches()
        dialect(output_spec(Order), "openai")

    def encoded() -> None:
        native_json(output_spec(Order), "openai")

    def lookup() -> None:
        dialect(output_spec(Order), "openai")

    def body() -> None:
        native_body(output_spec(Order), "openai")

    spec = output_spec(Order)

    def validate() -> None:
        validate_answer(spec, ANSWER, mode="native", provider="openai")

    def per_turn() -> None:
        # What the OpenAI codec and the chain do per turn: the encoded piece, validation.
        turn_spec = output_spec(Order)
        native_json(turn_spec, "openai")
        validate_answer(turn_spec, ANSWER, mode="native", provider="openai")

    assert validate_answer(spec, ANSWER, mode="native", provider="openai").express is False
    rows = [
        ("cold: first use of the type (spec + OpenAI strict conversion)", cold, 50),
        ("output_spec(Order) + dialect(..., 'openai'), cached", lookup, args.calls),
        ("native_body(spec, 'openai') (cached schema)", body, args.calls),
        ("native_json(spec, 'openai') (the encoded piece, cached)", encoded, args.calls),
        ("validate_answer(...) of a valid 10-field answer", validate, args.calls),
        ("per turn: lookup + body + validation", per_turn, args.calls),
    ]
    results = {name: _cpu_us(fn, calls, args.repeat) for name, fn, calls in rows}

    source = "--turn-us"
    turns: dict[str, float] = {}
    if args.micro_json:
        with open(args.micro_json, encoding="utf-8") as handle:
            micro = json.load(handle)
        for key in (
            "chains, in-memory httpx transport, json",
            "chains, in-memory httpx transport, stream",
        ):
            turns[key] = float(micro[key]["cpu_us_min"])
        source = f"benchmarks.micro ({args.micro_json})"
    elif args.turn_us:
        turns["a turn (--turn-us)"] = args.turn_us
    else:
        turns["a FunctionModel turn (no HTTP: the cheapest turn)"] = _turn_us_from_function_model(
            args.repeat
        )
        source = "measured here"

    print(f"python {sys.version.split()[0]}; {args.calls} calls x {args.repeat} rounds\n")
    print("| output_type=Order (10 fields) | CPU µs per call (min) | (median) |")
    print("|---|---|---|")
    for name, (low, median) in results.items():
        print(f"| {name} | {low:.1f} | {median:.1f} |")
    added = results["per turn: lookup + body + validation"][0]
    plain, typed = _chains_us(args.repeat)
    print("\nend to end, a one-turn FunctionModel chain (no HTTP: the cheapest turn there is):\n")
    print("| chain | CPU µs per chain (min) |")
    print("|---|---|")
    print(f"| text (no output_type) | {plain:.0f} |")
    print(f"| output_type=Order, native, validated | {typed:.0f} ({typed - plain:+.0f}) |")
    print("\nend to end over HTTP (OpenAI codec, httpx in-memory transport, one turn):\n")
    print("| chain | text | output_type=Order | added |")
    print("|---|---|---|---|")
    for stream in (False, True):
        plain, typed = _http_chains_us(stream, args.repeat)
        # This run's own turn, measured beside the pieces (a busy machine slows both).
        turns[f"this run's HTTP {'stream' if stream else 'json'} text chain (one turn)"] = plain
        print(
            f"| {'stream' if stream else 'json'} | {plain:.0f} | {typed:.0f} "
            f"| {typed - plain:+.0f} µs = {(typed - plain) / plain * 100:+.1f}% |"
        )
    print(f"\nturn CPU from {source}, and this run's own HTTP turns:\n")
    print("| turn | CPU µs per turn | output_type adds |")
    print("|---|---|---|")
    for name, value in turns.items():
        print(f"| {name} | {value:.0f} | {added:.1f} µs = {added / value * 100:.1f}% |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
