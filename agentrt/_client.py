"""The HTTP client a provider uses: how it is built, and how its responses are let go.

Building covers transport, limits, proxies and TLS; letting go, the body iterators and
response objects a finished request leaves behind.

One place decides how agentrt talks HTTP by default, so the choice (measured in
``benchmarks/``; see the README's Performance section) can change without touching the
providers: :class:`~agentrt._transport.LeanTransport` unless a proxy is configured in the
environment, in which case httpx's own transport, the only one that honours it.
"""

from __future__ import annotations

import contextlib
import os
import ssl
from collections.abc import AsyncIterator

import httpx

from ._transport import LeanTransport

__all__ = ["DEFAULT_LIMITS", "USER_AGENT", "finish_iterator", "make_client", "unbind"]

#: Pool limits of the clients agentrt builds. httpx's default (100 connections) makes
#: thousands of concurrent chains queue on the pool, so the ceiling is set high.
DEFAULT_LIMITS = httpx.Limits(
    max_connections=1000, max_keepalive_connections=1000, keepalive_expiry=30.0
)

USER_AGENT = "agentrt/0.1"


def make_client(
    timeout: float | httpx.Timeout | None = 60.0, limits: httpx.Limits | None = None
) -> httpx.AsyncClient:
    """Build the HTTP client a provider instance uses for all its requests.

    Args:
        timeout: seconds for connect/read/write/pool, an ``httpx.Timeout``, or ``None``
            for no timeout.
        limits: connection-pool limits; :data:`DEFAULT_LIMITS` when ``None``.

    The transport is :class:`~agentrt._transport.LeanTransport` (see there for why and
    what it leaves out); ``limits`` sets how many idle connections it keeps and for how
    long. Pass your own client as ``http_client=`` for proxies or HTTP/2.

    When a proxy is set in the environment (``HTTPS_PROXY``, ``ALL_PROXY``, ...), httpx's
    own transport is used instead, since only it honours proxies.
    ``limits.max_connections`` caps the connections in use at once (a request beyond it
    waits up to the pool timeout, then fails with ``APITimeoutError``).

    Returns:
        A new client; the caller owns it and must ``aclose()`` it.
    """
    if not isinstance(timeout, httpx.Timeout):
        timeout = httpx.Timeout(timeout)
    limits = limits or DEFAULT_LIMITS
    if _proxy_from_environment():
        # httpx honours HTTP(S)_PROXY / ALL_PROXY only with its own transports.
        return httpx.AsyncClient(
            timeout=timeout,
            limits=limits,
            verify=_ssl_context(),
            headers={"user-agent": USER_AGENT},
            follow_redirects=False,
        )
    transport = LeanTransport(
        max_idle=limits.max_keepalive_connections or 1000,
        keepalive_expiry=limits.keepalive_expiry or 5.0,
        ssl_context=_ssl_context(),
        max_connections=limits.max_connections,
    )
    return httpx.AsyncClient(
        timeout=timeout,
        transport=transport,
        headers={"user-agent": USER_AGENT},
        follow_redirects=False,
    )


def _proxy_from_environment() -> bool:
    """Whether a proxy is configured in the environment, as httpx reads it."""
    names = ("http_proxy", "https_proxy", "all_proxy")
    return any(os.environ.get(n) or os.environ.get(n.upper()) for n in names)


_SSL_CONTEXT: ssl.SSLContext | None = None


def _ssl_context() -> ssl.SSLContext:
    # Loading the CA bundle costs ~30 ms of CPU: do it once per process, not per model.
    global _SSL_CONTEXT
    if _SSL_CONTEXT is None:
        _SSL_CONTEXT = httpx.create_ssl_context()
    return _SSL_CONTEXT


# --- after a response ---------------------------------------------------------------------


async def finish_iterator(chunks: AsyncIterator[bytes]) -> None:
    """Run httpx's body iterator to its end after the response was closed.

    httpx reads a body through several nested async generators. When the caller stops
    reading early, the inner ones would be left suspended and trio warns when they are
    garbage collected. With the connection already closed, iterating once more ends them
    all at once (with a read error, or after what was already buffered).
    """
    with contextlib.suppress(httpx.HTTPError, httpx.StreamError):
        async for _ in chunks:
            pass


_CLOSED_BODY = httpx.ByteStream(b"")


def unbind(response: httpx.Response) -> None:
    """Let refcounting free a closed response that came through ``httpx.AsyncClient.send``.

    The client wraps the body in a stream that refers back to the response; with that cycle
    every turn left garbage for the cyclic collector. A closed response reads no more.
    """
    if response.is_closed:
        response.stream = _CLOSED_BODY
