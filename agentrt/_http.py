"""HTTP machinery shared by the remote providers: client, SSE, retries, error mapping.

Every remote provider (OpenAI, Anthropic, Gemini) talks HTTP the same way, so the parts that
are easy to get subtly wrong live here, once:

* :func:`~agentrt._client.make_client` builds the one ``httpx.AsyncClient`` a provider
  instance reuses for every turn and chain; :mod:`agentrt._retry` holds the retry policy.
* :class:`SSEParser` (from :mod:`agentrt._sse`, re-exported here) is an incremental,
  I/O-free Server-Sent Events parser following the WHATWG specification; bytes may be
  split anywhere, even inside a UTF-8 character.
* :class:`HTTPProvider` sends requests with tenacity retries (retryable statuses, connect
  errors and timeouts; exponential backoff with jitter; ``Retry-After`` honoured and
  capped), and never retries once a streamed event has reached the caller.
* :meth:`HTTPProvider._map_errors` (:mod:`agentrt._errormap`) is the one place where
  transport and HTTP failures become agentrt exceptions, as httpx's
  ``map_httpcore_exceptions`` does for httpcore.

Guarantee: the API key never appears in an exception message, a repr or a log line. It is
held as a :class:`pydantic.SecretStr`, sent only in headers, and scrubbed from any error text
a server echoes back.
"""

from __future__ import annotations

import json
import logging
import os
import random
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any, ClassVar

import anyio
import httpx
from pydantic import SecretStr
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt
from tenacity.retry import retry_if_result

from ._client import DEFAULT_LIMITS, USER_AGENT, finish_iterator, make_client, unbind
from ._direct import Route, to_response
from ._errormap import ErrorMap, Progress, shorten, status_phrase
from ._retry import RETRY_STATUSES, last_outcome, retry_after_from_headers
from ._sse import SSEEvent, SSEParser
from ._transport import LeanTransport, RawResponse
from .errors import (
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    MissingAPIKeyError,
    ProviderError,
    RateLimitError,
    ServerError,
    UsageError,
)
from .providers._wire import JSONCache, encode_body
from .providers.base import Provider

__all__ = [
    "DEFAULT_LIMITS",
    "RETRY_STATUSES",
    "HTTPProvider",
    "SSEEvent",
    "SSEParser",
    "WholeAnswer",
    "make_client",
]

logger = logging.getLogger("agentrt.http")


_USER_AGENT = USER_AGENT
_REDACTED = "[redacted]"


# --- the provider base -------------------------------------------------------------------


class HTTPProvider(Provider):
    """Base class of providers that speak JSON and SSE over HTTP.

    Subclasses set ``name``, ``env_key``, ``default_base_url`` and optionally
    ``env_base_url``, override :meth:`auth_headers` (and :meth:`error_message`,
    :meth:`retry_after` where their API differs), and implement ``turn`` with
    :meth:`post_json` and :meth:`post_sse`.

    Class attributes (override per class or per instance):
        retry_statuses: statuses that are retried.
        max_retry_after: cap, in seconds, on a server-requested ``Retry-After``.
        retry_initial_delay: first backoff delay in seconds; it doubles per attempt.
        retry_max_delay: cap on the backoff delay in seconds.
    """

    env_key: ClassVar[str]
    default_base_url: ClassVar[str]
    env_base_url: ClassVar[str | None] = None

    retry_statuses: ClassVar[frozenset[int]] = RETRY_STATUSES
    max_retry_after: float = 60.0
    retry_initial_delay: float = 0.5
    retry_max_delay: float = 8.0

    def __init__(
        self,
        model_name: str,
        *,
        api_key: str | SecretStr | None = None,
        base_url: str | None = None,
        timeout: float | httpx.Timeout | None = 60.0,
        max_retries: int = 2,
        http_client: httpx.AsyncClient | None = None,
        limits: httpx.Limits | None = None,
    ) -> None:
        """Configure the provider; no network activity happens here.

        Args:
            model_name: the provider's model name, e.g. ``"gpt-4o-mini"``.
            api_key: the key; defaults to the ``env_key`` environment variable.
            base_url: the API root as the official SDK takes it; defaults to the
                ``env_base_url`` environment variable, then ``default_base_url``.
            timeout: request timeout for the client agentrt builds.
            max_retries: how many times a failed request is retried (0 disables retries).
            http_client: a client to use as-is; agentrt never closes it.
            limits: connection-pool limits for the client agentrt builds.

        Raises:
            MissingAPIKeyError: no key was given and the environment variable is unset.
            ValueError: ``max_retries`` is negative.
        """
        super().__init__(model_name)
        if isinstance(api_key, SecretStr):
            api_key = api_key.get_secret_value()
        if not api_key:
            api_key = os.environ.get(self.env_key)
        if not api_key:
            raise MissingAPIKeyError(self.name, self.env_key)
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        self.api_key = SecretStr(api_key)
        where = "base_url"
        if base_url is None and self.env_base_url:
            base_url = os.environ.get(self.env_base_url) or None
            where = f"the {self.env_base_url} environment variable"
        if base_url is None:
            base_url = self.default_base_url
        self.base_url = _checked_base_url(base_url, where, self)
        self.timeout = timeout
        self.max_retries = max_retries
        self._limits = limits
        self._client = http_client
        self._owns_client = http_client is None
        self._headers: dict[str, str] | None = None
        # Per-endpoint work done once for agentrt's own client (see agentrt._direct).
        self._routes: dict[tuple[str, tuple[tuple[str, str], ...], bool], Route] = {}
        #: JSON of request parts already sent (see :mod:`agentrt.providers._wire`).
        self._json_cache = JSONCache()

    # --- hooks for subclasses ------------------------------------------------------------

    def auth_headers(self) -> dict[str, str]:
        """Return the headers that authenticate a request (default: a bearer token)."""
        return {"authorization": f"Bearer {self.api_key.get_secret_value()}"}

    def error_message(self, status: int, payload: Any) -> str:
        """Extract a readable message from an error response.

        Understands ``{"error": {"message": ...}}``, ``{"error": "..."}``,
        ``{"message": ...}``, a list holding one of those, and plain text (whitespace
        collapsed, truncated).

        Args:
            status: the HTTP status.
            payload: the parsed JSON body, or the body text when it is not JSON.
        """
        if isinstance(payload, list) and payload:
            payload = payload[0]
        if isinstance(payload, dict):
            error = payload.get("error", payload)
            if isinstance(error, str) and error:
                return shorten(error)
            if isinstance(error, dict):
                message = error.get("message")
                if isinstance(message, str) and message:
                    return shorten(message)
            payload = json.dumps(payload, ensure_ascii=False)
        if isinstance(payload, str) and payload.strip():
            return shorten(payload)
        return status_phrase(status)

    def retry_after(self, response: httpx.Response) -> float | None:
        """Return how long the server asked us to wait before retrying, in seconds.

        Reads ``retry-after-ms`` and then ``Retry-After`` (seconds or an HTTP date); the
        result is capped at ``max_retry_after``. ``None`` means "use the backoff".
        """
        return retry_after_from_headers(response.headers, self.max_retry_after)

    def request_id(self, response: httpx.Response) -> str | None:
        """Return the provider's id of this request, from ``x-request-id`` or ``request-id``."""
        headers = response.headers
        request_id: str | None = headers.get("x-request-id") or headers.get("request-id")
        return request_id

    def error_from_status(
        self, status: int, message: str, *, request_id: str | None = None, body: str | None = None
    ) -> ProviderError:
        """Build the exception for an HTTP status (or a mid-stream error event).

        401/403 become :class:`AuthenticationError`, 429 :class:`RateLimitError`, 408
        :class:`APITimeoutError`, 5xx and 529 :class:`ServerError`, other 4xx
        :class:`BadRequestError`. The API key is scrubbed from ``message`` and ``body``.
        """
        cls: type[ProviderError]
        if status in (401, 403):
            cls = AuthenticationError
        elif status == 429:
            cls = RateLimitError
        elif status == 408:
            cls = APITimeoutError
        elif status >= 500:
            cls = ServerError
        elif status >= 400:
            cls = BadRequestError
        else:
            cls = ProviderError
        return cls(
            self._scrub(message),
            provider=self.name,
            status=status,
            request_id=request_id,
            body=self._scrub(body) if body is not None else None,
        )

    # --- requests --------------------------------------------------------------------------

    @property
    def client(self) -> httpx.AsyncClient:
        """The HTTP client, created on first use and reused for every request."""
        if self._client is None:
            self._client = make_client(self.timeout, self._limits)
        return self._client

    async def aclose(self) -> None:
        """Close the HTTP client if agentrt created it (a user's client is left open)."""
        client, self._client = self._client, (None if self._owns_client else self._client)
        if self._owns_client and client is not None:
            await client.aclose()

    async def __aenter__(self) -> HTTPProvider:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def post_json(
        self, path: str, body: dict[str, Any], *, params: dict[str, str] | None = None
    ) -> dict[str, Any]:
        """POST ``body`` as JSON to ``base_url + path`` and return the decoded JSON answer.

        Raises:
            ProviderError: the mapped failure, after retries where they apply.
        """
        content = encode_body(body)
        route = self._route(path, params, sse=False)
        with self._map_errors():
            if route is not None:
                response = await self._send_direct(route, content, stream=False)
            else:
                response = await self._send(self._build_request(path, content, params, sse=False))
            if isinstance(response, RawResponse):
                data = response.body.content
            else:
                unbind(response)
                response.raise_for_status()
                data = response.content
        try:
            payload = json.loads(data)
        except ValueError as exc:
            text = data.decode("utf-8", "replace")
            raise ServerError(
                f"the response was not valid JSON: {shorten(text)}",
                provider=self.name,
                status=_status_of(response),
                request_id=self._request_id_of(response),
            ) from exc
        if not isinstance(payload, dict):
            raise ServerError(
                f"expected a JSON object, got {type(payload).__name__}",
                provider=self.name,
                status=_status_of(response),
                request_id=self._request_id_of(response),
            )
        return payload

    async def post_sse(
        self, path: str, body: dict[str, Any], *, params: dict[str, str] | None = None
    ) -> AsyncGenerator[SSEEvent, None]:
        """POST ``body`` as JSON and yield the Server-Sent Events of the answer.

        The request is retried only until a successful response's headers arrive; once
        the stream has started nothing is retried. A stream that breaks part-way (reset,
        timeout, or end of body inside an event) raises :class:`APIConnectionError` or
        :class:`APITimeoutError` saying how much had arrived. Close the generator (e.g.
        with ``contextlib.aclosing``) if you stop early.

        Raises:
            ProviderError: the mapped failure.
        """
        content = encode_body(body)
        route = self._route(path, params, sse=True)
        progress = Progress()
        with self._map_errors(progress):
            if route is not None:
                response = await self._send_direct(route, content, stream=True)
            else:
                request = self._build_request(path, content, params, sse=True)
                response = await self._send(request, stream=True)
            chunks: AsyncIterator[bytes] | None = None
            try:
                if isinstance(response, RawResponse):
                    content_type = _header(response.headers, b"content-type")
                    chunks = response.body.__aiter__()
                else:
                    response.raise_for_status()
                    content_type = response.headers.get("content-type", "")
                    chunks = response.aiter_bytes()
                if content_type and not content_type.lower().startswith("text/event-stream"):
                    raise await self._not_a_stream(content_type, chunks, response)
                parser = SSEParser()
                async for chunk in chunks:
                    progress.bytes += len(chunk)
                    for event in parser.feed(chunk):
                        progress.events += 1
                        yield event
                parser.close()
                if parser.incomplete:
                    raise APIConnectionError(
                        f"the event stream ended in the middle of an event {progress.describe()}",
                        provider=self.name,
                        status=_status_of(response),
                        request_id=self._request_id_of(response),
                    )
            finally:
                if isinstance(response, RawResponse):
                    try:
                        if chunks is not None:
                            await chunks.aclose()  # type: ignore[attr-defined]
                    finally:
                        await response.body.aclose()
                else:
                    try:
                        await response.aclose()
                        unbind(response)
                    finally:
                        if chunks is not None:
                            await finish_iterator(chunks)

    async def _not_a_stream(
        self,
        content_type: str,
        chunks: AsyncIterator[bytes],
        response: httpx.Response | RawResponse,
    ) -> Exception:
        """The error for a successful answer to a streamed request that is not a stream.

        A gateway that ignores ``stream: true`` sends the whole answer as JSON: that is
        :class:`WholeAnswer` (the provider decodes it as a non-streamed answer). Anything
        else (an HTML page from a proxy or a wrong port) is a ``ServerError`` naming the
        content type and quoting the start of the body.
        """
        data = bytearray()
        async for chunk in chunks:
            data += chunk
            if len(data) > _MAX_WHOLE_ANSWER:
                break
        if "json" in content_type.lower() and len(data) <= _MAX_WHOLE_ANSWER:
            try:
                return WholeAnswer(json.loads(data))
            except ValueError:
                pass
        text = shorten(bytes(data[:1000]).decode("utf-8", "replace"), 200)
        return ServerError(
            self._scrub(
                f"expected an event stream (text/event-stream) but the server answered "
                f"{_status_of(response)} with {content_type}: {text!r}; is base_url "
                f"({self.base_url}) the provider's API?"
            ),
            provider=self.name,
            status=_status_of(response),
            request_id=self._request_id_of(response),
        )

    # --- internals -------------------------------------------------------------------------

    def _build_request(
        self, path: str, content: bytes, params: dict[str, str] | None, *, sse: bool
    ) -> httpx.Request:
        """The request for a user's client: it applies its own headers, cookies, settings."""
        headers = self._base_headers()
        if sse:
            headers = {**headers, "accept": "text/event-stream"}
        return self.client.build_request(
            "POST", self.base_url + path, content=content, headers=headers, params=params
        )

    def _base_headers(self) -> dict[str, str]:
        headers = self._headers
        if headers is None:
            headers = self._headers = {"content-type": "application/json", **self.auth_headers()}
        return headers

    def _route(self, path: str, params: dict[str, str] | None, *, sse: bool) -> Route | None:
        """The cached :class:`Route` of an endpoint on agentrt's own client, else ``None``."""
        key = (path, tuple(sorted(params.items())) if params else (), sse)
        route = self._routes.get(key)
        if route is not None:
            return route
        client = self.client
        if not self._direct(client):
            return None
        merged = {"user-agent": _USER_AGENT, **self._base_headers()}
        if sse:
            merged["accept"] = "text/event-stream"
        raw = [(k.encode("ascii"), v.encode("latin-1")) for k, v in merged.items()]
        url = httpx.URL(self.base_url + path, params=params)
        route = self._routes[key] = Route(url, raw, client.timeout.as_dict())
        return route

    async def _send_direct(
        self, route: Route, content: bytes, *, stream: bool
    ) -> RawResponse | httpx.Response:
        """Send on agentrt's own transport; a success comes back raw, anything else as httpx's.

        Same retry policy as :meth:`_send`: a failed first attempt (including a body that
        broke while read, when not streaming) becomes the first outcome of the general
        path, which builds the httpx request only then. Not streaming, the body of a raw
        success has been read into ``body.content``.
        """
        transport = self.client._transport
        assert isinstance(transport, LeanTransport)
        first: httpx.Response | APIConnectionError
        try:
            with self._map_errors():
                try:
                    raw = await transport.send_raw(
                        route.origin, route.head(len(content)), content, route.timeouts
                    )
                    if not stream:
                        await raw.body.read()
                except httpx.HTTPError as exc:
                    logger.debug("%s: POST %s failed: %s", self.name, route.url, type(exc).__name__)
                    raise
        except APIConnectionError as exc:
            if not self.max_retries:
                raise
            first = exc
        else:
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug("%s: POST %s -> HTTP %d", self.name, route.url, raw.status)
            if 200 <= raw.status < 300:
                return raw
            first = to_response(raw, None, await raw.body.read() if stream else raw.body.content)
            if not self.max_retries or first.status_code not in self.retry_statuses:
                first.request = route.request(content)
                return first
        return await self._retry(route.request(content), stream, first)

    def _request_id_of(self, response: httpx.Response | RawResponse) -> str | None:
        if isinstance(response, RawResponse):
            response = to_response(response, None, b"")
        return self.request_id(response)

    async def _send(self, request: httpx.Request, *, stream: bool = False) -> httpx.Response:
        """Send with retries; return a successful response or the last failed one (read)."""
        # The happy path pays nothing for retries: tenacity is entered only after a first
        # attempt that needs one, and then replays that attempt's outcome as its first.
        first: httpx.Response | APIConnectionError
        try:
            first = await self._attempt(request, stream)
        except APIConnectionError as exc:
            if not self.max_retries:
                raise
            first = exc
        else:
            if not self.max_retries or first.status_code not in self.retry_statuses:
                return first
        return await self._retry(request, stream, first)

    async def _attempt(self, request: httpx.Request, stream: bool) -> httpx.Response:
        """One attempt through httpx (a user's client, or a retry on agentrt's own)."""
        client = self.client
        transport = client._transport if self._direct(client) else None
        with self._map_errors():
            try:
                if transport is None:
                    response = await client.send(request, stream=stream)
                else:
                    # Our own client adds nothing (no auth, cookies, redirects or hooks),
                    # so its transport is called directly.
                    response = await transport.handle_async_request(request)
                    response.request = request
                    if not stream:
                        try:
                            await response.aread()
                        finally:
                            await response.aclose()
            except httpx.HTTPError as exc:
                logger.debug(
                    "%s: %s %s failed: %s",
                    self.name,
                    request.method,
                    request.url,
                    type(exc).__name__,
                )
                raise
            if not response.is_success and stream:
                try:
                    await response.aread()
                finally:
                    await response.aclose()
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug(
                    "%s: %s %s -> HTTP %d",
                    self.name,
                    request.method,
                    request.url,
                    response.status_code,
                )
            return response

    async def _retry(
        self, request: httpx.Request, stream: bool, first: httpx.Response | APIConnectionError
    ) -> httpx.Response:
        """Retry after a first outcome that asks for it, as tenacity's first attempt."""
        replayed = False

        async def attempt_after() -> httpx.Response:
            nonlocal replayed
            if not replayed:
                replayed = True
                if isinstance(first, APIConnectionError):
                    raise first
                return first
            return await self._attempt(request, stream)

        retrying = AsyncRetrying(
            sleep=anyio.sleep,
            stop=stop_after_attempt(self.max_retries + 1),
            wait=self._wait,
            retry=(
                retry_if_exception_type(APIConnectionError) | retry_if_result(self._should_retry)
            ),
            before_sleep=self._log_retry,
            retry_error_callback=last_outcome,
            reraise=True,
        )
        response: httpx.Response = await retrying(attempt_after)
        return response

    def _direct(self, client: httpx.AsyncClient) -> bool:
        # Requests skip httpx's client layers only on a client agentrt built with its own
        # transport: a user's client, or one routed through proxies, gets the full send().
        return self._owns_client and isinstance(client._transport, LeanTransport)

    def _should_retry(self, response: httpx.Response) -> bool:
        return response.status_code in self.retry_statuses

    def _wait(self, state: RetryCallState) -> float:
        outcome = state.outcome
        if outcome is not None and not outcome.failed:
            delay: float | None = self.retry_after(outcome.result())
            if delay is not None:
                return delay
        base = min(
            self.retry_initial_delay * 2.0 ** (state.attempt_number - 1), self.retry_max_delay
        )
        return base * (1 - 0.25 * random.random())  # jitter, not crypto

    def _log_retry(self, state: RetryCallState) -> None:
        outcome = state.outcome
        if outcome is None:
            return
        if outcome.failed:
            what = type(outcome.exception()).__name__
        else:
            what = f"HTTP {outcome.result().status_code}"
        delay = state.next_action.sleep if state.next_action else 0.0
        logger.info(
            "%s: %s; retry %d of %d in %.2f s",
            self.name,
            what,
            state.attempt_number,
            self.max_retries,
            delay,
        )

    def _map_errors(self, progress: Progress | None = None) -> ErrorMap:
        """Translate transport and HTTP failures raised inside the block to agentrt errors.

        ``progress`` is given while a stream is being read, so that a broken stream says
        how much of it had arrived.
        """
        return ErrorMap(self, progress)

    def _error_from_response(self, response: httpx.Response) -> ProviderError:
        text = response.text
        try:
            payload: Any = json.loads(text)
        except ValueError:
            payload = text
        status = response.status_code
        return self.error_from_status(
            status,
            self.error_message(status, payload),
            request_id=self.request_id(response),
            body=text[:2000],
        )

    def _scrub(self, text: str) -> str:
        key = self.api_key.get_secret_value()
        return text.replace(key, _REDACTED) if key and key in text else text


def _checked_base_url(url: Any, where: str, provider: HTTPProvider) -> str:
    """``url`` without its trailing slash, refused unless it is an http(s) URL with a host.

    Raises:
        UsageError: naming ``where`` the URL came from, and an example of a good one.
    """
    example = (
        f"e.g. {provider.default_base_url!r}, or 'http://localhost:8000/v1' for a local server"
    )
    if not isinstance(url, str):
        raise UsageError(f"base_url must be a string ({example}), got {type(url).__name__}")
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise UsageError(f"{where} is not a valid URL: {url!r} ({exc}); {example}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise UsageError(
            f"{where} must start with http:// or https:// and name a host, got {url!r}; {example}"
        )
    return url.rstrip("/")


class WholeAnswer(Exception):  # a signal to the provider, not an error
    """A streamed request was answered with the whole answer as JSON (``payload``)."""

    def __init__(self, payload: Any) -> None:
        super().__init__("the server sent the whole answer instead of an event stream")
        self.payload = payload


#: Bytes of a non-stream answer to a streamed request read to decode or quote it.
_MAX_WHOLE_ANSWER = 8 * 1024 * 1024


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> str:
    for key, value in headers:
        if key.lower() == name:
            return value.decode("latin-1")
    return ""


def _status_of(response: httpx.Response | RawResponse) -> int:
    return response.status if isinstance(response, RawResponse) else response.status_code
