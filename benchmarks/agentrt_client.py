"""agentrt as users run it: one shared model, ``model.chain(prompt, tools=[add]).text()``.

``spec.variant`` picks the HTTP transport (for the transport comparison) or a callback
handler (for the callback-cost scenario). Nothing here reaches into agentrt's internals:
transports go in through the public ``http_client=`` option.
"""

from __future__ import annotations

from typing import Any

from .scenarios import PROMPT, Spec, Unavailable

#: Client timeout for the clients built here: long enough that a pool queue at N=1000
#: shows up as wall time, not as failed chains.
TIMEOUT = 120.0


def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def _alias_httpx2() -> None:
    # Must run before anything imports httpx: agentrt then runs on httpx2 unchanged.
    try:
        import httpx2
    except ImportError as exc:
        raise Unavailable("httpx2 is not installed") from exc
    httpx2.alias_httpx()


def http_client(variant: str) -> Any:
    """Build the ``http_client=`` for a transport variant (``None``: agentrt's default).

    Variants: ``agentrt-default`` (what ``get_async_model`` builds), ``httpx-pool-1000``
    (httpx's own httpcore pool with agentrt's former 1,000-connection limits),
    ``httpx-default-limits`` (httpx's 100/20), ``httpx2-pool`` (the httpx2 fork's pool, with
    ``import httpx`` aliased to httpx2), ``aiohttp`` (httpx-aiohttp's transport);
    a ``-trio`` suffix only names the backend.
    """
    base = variant.removesuffix("-trio")
    if base.startswith("httpx2"):
        _alias_httpx2()
    import httpx

    big = httpx.Limits(max_connections=1000, max_keepalive_connections=1000, keepalive_expiry=30)
    if base in ("", "agentrt-default", "trio", "none") or base.startswith("noop"):
        return None
    if base in ("httpx-pool-1000", "httpx2-pool"):
        return httpx.AsyncClient(timeout=TIMEOUT, limits=big)
    if base == "httpx-default-limits":
        return httpx.AsyncClient(timeout=TIMEOUT)
    if base == "aiohttp":
        try:
            from httpx_aiohttp import AiohttpTransport
        except ImportError as exc:
            raise Unavailable(f"httpx-aiohttp is not installed ({exc})") from exc
        return httpx.AsyncClient(timeout=TIMEOUT, transport=AiohttpTransport(limits=big))
    raise ValueError(f"unknown agentrt variant {variant!r}")


def callbacks(variant: str) -> list[Any]:
    """The handlers of a callback variant: none, or one no-op handler overriding every hook."""
    import agentrt

    if variant == "noop-handler":

        class Noop(agentrt.CallbackHandler):
            def on_chain_start(self, chain: Any) -> None: ...
            def on_turn_start(self, response: Any) -> None: ...
            def on_chunk(self, response: Any, chunk: Any) -> None: ...
            def on_turn_end(self, response: Any) -> None: ...
            def on_tool_start(self, response: Any, call: Any) -> None: ...
            def on_tool_end(self, response: Any, call: Any, result: Any) -> None: ...
            def on_tool_error(self, response: Any, call: Any, result: Any) -> None: ...
            def on_chain_end(self, chain: Any) -> None: ...
            def on_error(self, owner: Any, error: BaseException) -> None: ...

        return [Noop()]
    if variant == "noop-async-handler":

        class AsyncNoop(agentrt.CallbackHandler):
            async def on_chain_start(self, chain: Any) -> None: ...
            async def on_turn_start(self, response: Any) -> None: ...
            async def on_chunk(self, response: Any, chunk: Any) -> None: ...
            async def on_turn_end(self, response: Any) -> None: ...
            async def on_tool_start(self, response: Any, call: Any) -> None: ...
            async def on_tool_end(self, response: Any, call: Any, result: Any) -> None: ...
            async def on_tool_error(self, response: Any, call: Any, result: Any) -> None: ...
            async def on_chain_end(self, chain: Any) -> None: ...
            async def on_error(self, owner: Any, error: BaseException) -> None: ...

        return [AsyncNoop()]
    return []


class AgentrtClient:
    """One shared ``AsyncModel`` for every chain of the run."""

    def __init__(self, spec: Spec) -> None:
        client = http_client(spec.variant)
        if spec.params.get("memory"):
            import httpx

            from .micro import MemoryTransport

            client = httpx.AsyncClient(transport=MemoryTransport(spec.k))
        import agentrt

        self.model = agentrt.get_async_model(
            "openai:bench",
            base_url=spec.base_url,
            api_key="sk-bench",
            stream=spec.stream,
            callbacks=callbacks(spec.variant),
            **({"http_client": client} if client is not None else {"timeout": TIMEOUT}),
        )
        self._client = client

    async def run_chain(self) -> str:
        return await self.model.chain(PROMPT, tools=[add]).text()

    async def aclose(self) -> None:
        await self.model.aclose()
        if self._client is not None:
            await self._client.aclose()


async def open_client(spec: Spec) -> AgentrtClient:
    return AgentrtClient(spec)
