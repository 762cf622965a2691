"""``HTTPTools``: an ``http_get`` tool limited to allowed hosts, a size and a time.

``http_get`` is a dual tool (:func:`~agentrt.tools.async_tool_is`): async chains use an
``httpx.AsyncClient``, sync chains an ``httpx.Client``; both follow the same rules:

- only ``http``/``https`` URLs whose host is on the allowlist are fetched, and every
  redirect target is checked again (redirects are followed by hand, at most
  ``max_redirects``); an empty allowlist refuses everything;
- the body is read as a stream and cut after ``max_bytes`` (the result says so), so a huge
  response never sits in memory;
- the whole call, redirects included, is limited to ``timeout`` seconds (the sync form
  checks the deadline between reads, so it may overrun by at most one read timeout).

Allowlist entries: ``example.com`` (that host, any port), ``example.com:8080`` (that port
only), ``*.example.com`` (any subdomain), ``[::1]`` for IPv6, and ``*`` for any host.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterable
from typing import Any

import anyio
import httpx

from ..errors import ToolError
from ..tools import Toolbox, async_tool_is

__all__ = ["HTTP_ALLOW_ENV", "HTTPTools", "HostNotAllowedError", "allowed_hosts_from_env"]

#: Environment variable read by the command line: comma-separated allowlist entries.
HTTP_ALLOW_ENV = "AGENTRT_HTTP_ALLOW"
_DEFAULT_PORTS = {"http": 80, "https": 443}
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_USER_AGENT = "agentrt-http_get/0.1"


class HostNotAllowedError(ToolError, PermissionError):
    """The URL's host is not on the allowlist."""


def allowed_hosts_from_env() -> list[str]:
    """Return the allowlist entries in ``AGENTRT_HTTP_ALLOW`` (comma-separated)."""
    return [h.strip() for h in os.environ.get(HTTP_ALLOW_ENV, "").split(",") if h.strip()]


def _parse_entry(entry: str) -> tuple[str, int | None]:
    entry = entry.strip().lower().rstrip(".")
    if entry.startswith("["):  # [::1] or [::1]:8080
        host, _, rest = entry[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    else:
        host, sep, port = entry.rpartition(":")
        if not sep or not port.isdigit():
            host, port = entry, ""
    if not host:
        raise ValueError(f"invalid allowed host {entry!r}")
    return host, int(port) if port else None


class HTTPTools(Toolbox):
    """The ``http_get`` tool, limited to ``allowed_hosts``.

    Args:
        allowed_hosts: hosts that may be fetched (see the module docstring for the
            forms); empty refuses every URL.
        max_bytes: the most body bytes returned; the rest is not read.
        timeout: seconds for the whole call, redirects included.
        max_redirects: how many redirects are followed.

    Raises:
        ValueError: an allowlist entry cannot be parsed.
    """

    def __init__(
        self,
        allowed_hosts: Iterable[str] = (),
        *,
        max_bytes: int = 1_000_000,
        timeout: float = 10.0,
        max_redirects: int = 5,
    ) -> None:
        self._allowed = [_parse_entry(h) for h in allowed_hosts if h.strip()]
        self._max_bytes = max_bytes
        self._timeout = timeout
        self._max_redirects = max_redirects

    @property
    def allowed_hosts(self) -> list[str]:
        """The allowlist, normalised."""
        entries = []
        for host, port in self._allowed:
            shown = f"[{host}]" if ":" in host else host
            entries.append(shown if port is None else f"{shown}:{port}")
        return entries

    # --- the rules, shared by both implementations ---------------------------------------

    def _check(self, url: str | httpx.URL) -> httpx.URL:
        """Parse ``url`` and refuse it unless its scheme and host are allowed."""
        try:
            parsed = httpx.URL(url)
        except (httpx.InvalidURL, TypeError) as exc:
            raise ToolError(f"{str(url)!r} is not a valid URL: {exc}") from exc
        if parsed.scheme not in _DEFAULT_PORTS:
            raise ToolError(f"only http:// and https:// URLs can be fetched, not {str(url)!r}")
        host = parsed.host.lower().rstrip(".")
        if not host:
            raise ToolError(f"the URL {str(url)!r} has no host")
        if not self._allowed:
            raise HostNotAllowedError(
                f"http_get may not fetch {host!r}: no host is allowed (the allowlist is "
                f"empty; set {HTTP_ALLOW_ENV} or pass HTTPTools(allowed_hosts=[...]))"
            )
        port = parsed.port or _DEFAULT_PORTS[parsed.scheme]
        for allowed, allowed_port in self._allowed:
            if allowed_port is not None and allowed_port != port:
                continue
            if allowed in ("*", host) or (allowed.startswith("*.") and host.endswith(allowed[1:])):
                return parsed
        raise HostNotAllowedError(
            f"http_get may not fetch {host!r} (port {port}): the allowed hosts are "
            f"{', '.join(self.allowed_hosts)}"
        )

    def _next(self, response: httpx.Response) -> httpx.URL | None:
        """Return the checked redirect target of ``response``, or ``None`` if it is final."""
        location = response.headers.get("location")
        if response.status_code not in _REDIRECTS or not location:
            return None
        return self._check(response.url.join(location))

    def _result(self, response: httpx.Response, body: bytes, truncated: bool) -> dict[str, Any]:
        try:
            text = body.decode(response.encoding or "utf-8", errors="replace")
        except LookupError:  # an unknown charset name
            text = body.decode("utf-8", errors="replace")
        return {
            "url": str(response.url),
            "status": response.status_code,
            "content_type": response.headers.get("content-type"),
            "truncated": truncated,
            "text": text,
        }

    def _too_many_redirects(self, url: str) -> ToolError:
        return ToolError(f"{url!r} redirected more than {self._max_redirects} times")

    def _timed_out(self, url: str) -> ToolError:
        return ToolError(f"fetching {url!r} did not finish within {self._timeout} s")

    # --- the tool ------------------------------------------------------------------------

    async def _read_async(self, response: httpx.Response) -> tuple[bytes, bool]:
        body, truncated = bytearray(), False
        chunks = response.aiter_bytes()
        async for chunk in chunks:
            body += chunk
            if len(body) > self._max_bytes:
                truncated = True
                break
        if truncated:
            # httpx reads through nested async generators; stopping early leaves the inner
            # ones suspended (trio warns when they are collected). With the connection
            # closed, iterating once more ends them all at once.
            await response.aclose()
            with contextlib.suppress(httpx.HTTPError, httpx.StreamError):
                async for _ in chunks:
                    pass
        return bytes(body[: self._max_bytes]), truncated

    def _read_sync(self, response: httpx.Response, deadline: float, url: str) -> tuple[bytes, bool]:
        body, truncated = bytearray(), False
        for chunk in response.iter_bytes():
            body += chunk
            if len(body) > self._max_bytes:
                truncated = True
                break
            if time.monotonic() > deadline:
                raise self._timed_out(url)
        return bytes(body[: self._max_bytes]), truncated

    async def _http_get_async(self, url: str) -> dict[str, Any]:
        target = self._check(url)
        try:
            with anyio.fail_after(self._timeout):
                async with httpx.AsyncClient(
                    timeout=self._timeout, headers={"user-agent": _USER_AGENT}
                ) as client:
                    for _ in range(self._max_redirects + 1):
                        async with client.stream("GET", target) as response:
                            following = self._next(response)
                            if following is None:
                                body, truncated = await self._read_async(response)
                                return self._result(response, body, truncated)
                        target = following
        except (TimeoutError, httpx.TimeoutException) as exc:
            raise self._timed_out(url) from exc
        except httpx.HTTPError as exc:
            raise ToolError(f"could not fetch {url!r}: {type(exc).__name__}: {exc}") from exc
        raise self._too_many_redirects(url)

    @async_tool_is(_http_get_async)
    def http_get(self, url: str) -> dict[str, Any]:
        """Fetch a URL with HTTP GET and return its status, content type and text.

        Only some hosts are allowed; long bodies are truncated.

        Args:
            url: the http:// or https:// URL to fetch.
        """
        target = self._check(url)
        deadline = time.monotonic() + self._timeout
        try:
            with httpx.Client(timeout=self._timeout, headers={"user-agent": _USER_AGENT}) as client:
                for _ in range(self._max_redirects + 1):
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise self._timed_out(url)
                    with client.stream("GET", target, timeout=remaining) as response:
                        following = self._next(response)
                        if following is None:
                            body, truncated = self._read_sync(response, deadline, url)
                            return self._result(response, body, truncated)
                    target = following
        except httpx.TimeoutException as exc:
            raise self._timed_out(url) from exc
        except httpx.HTTPError as exc:
            raise ToolError(f"could not fetch {url!r}: {type(exc).__name__}: {exc}") from exc
        raise self._too_many_redirects(url)
