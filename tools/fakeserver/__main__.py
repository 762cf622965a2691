"""Run the fake provider server standalone: ``python -m tools.fakeserver --port 8765``."""

from __future__ import annotations

import argparse
import threading

from .server import FakeServer, bench_responder


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m tools.fakeserver",
        description="A loopback fake OpenAI / Anthropic / Gemini server.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each answer")
    parser.add_argument(
        "--bench-tool-turns",
        type=int,
        default=None,
        metavar="K",
        help="answer with a call to add(a=1, b=2) until the conversation holds K tool "
        "results, then with text",
    )
    args = parser.parse_args(argv)
    server = FakeServer(args.host, args.port, latency=args.latency)
    if args.bench_tool_turns is not None:
        server.responder = bench_responder(args.bench_tool_turns)
    with server:
        print(f"fake provider server on {server.url}", flush=True)
        print(f"  OpenAI:    base_url={server.openai_base_url}", flush=True)
        print(f"  Anthropic: base_url={server.anthropic_base_url}", flush=True)
        print(f"  Gemini:    base_url={server.gemini_base_url}", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
