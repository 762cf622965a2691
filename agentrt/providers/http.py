"""The one HTTP driver of the remote providers: ``turn()`` written once, over any backend.

A remote provider is a pure codec (:mod:`agentrt.providers.openai`, ``anthropic``,
``gemini``: request path and body, a stream decoder, events from a whole JSON body, the
error body) under :class:`HTTPProvider`, which does everything HTTP: authentication
headers, ``extra_headers``/``extra_body``, retries (:func:`agentrt._retry.send_with_retries`,
the only retry loop), error mapping, SSE parsing, and the rule for a malformed event.

Requests go through a :class:`Backend`: ``send(route, body, *, stream) -> WireResponse``.
Two adapters implement it: :class:`LeanBackend` on agentrt's own transport
(:class:`~agentrt._transport.LeanTransport`, the default) and :class:`HTTPXBackend` on any
``httpx.AsyncClient`` (a user's ``http_client=``, or agentrt's own when a proxy is set).
Above the backends there is one response type, :class:`WireResponse`.

Guarantee: the API key never appears in an exception message, a repr or a log line. It is
held as a :class:`pydantic.SecretStr`, sent only in headers, and scrubbed from any error
text a server echoes back.
"""

from __future__ import annotations

import json
import logging
import os
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from contextlib import aclosing
from functools import partial
from typing import Any, ClassVar, cast

import httpx
from pydantic import SecretStr

from .._client import USER_AGENT, make_client
from .._errormap import ErrorMap, Progress, shorten
from .._http.backends import Backend, HTTPXBackend, LeanBackend, Route, WireResponse
from .._retry import RetryPolicy, send_with_retries
from .._sse import SSEEvent, SSEParser
from .._transport import LeanTransport
from ..errors import APIConnectionError, MissingAPIKeyError, ProviderError, ServerError, UsageError
from ..messages import StreamEvent, TurnRequest
from ._wire import (
    TOOL_ENCODINGS,
    UNREADABLE,
    Codec,
    ToolEncodings,
    encode_body,
    error_for_status,
    malformed,
)
from .anthropic import AnthropicCodec
from .base import Provider
from .gemini import GeminiCodec
from .openai import OpenAICodec

__all__ = [
    "AnthropicProvider",
    "Backend",
    "GeminiProvider",
    "HTTPProvider",
    "HTTPXBackend",
    "LeanBackend",
    "OpenAIProvider",
    "Route",
    "WholeAnswer",
    "WireResponse",
]

logger = logging.getLogger("agentrt.http")

_REDACTED = "[redacted]"
#: Bytes of a non-stream answer to a streamed request read to decode or quote it.
_MAX_WHOLE_ANSWER = 8 * 1024 * 1024


# --- the driver -----------------------------------------------------------------------------


class HTTPProvider(Provider):
    """A remote provider: its codec (a class attribute) under the one HTTP driver.

    Subclasses set ``codec``; ``name``, ``env_key``, ``default_base_url``,
    ``env_base_url`` and ``generation_options`` are read from it.

    Args:
        model_name: the provider's model name, e.g. ``"gpt-4o-mini"``.
        api_key: the key; defaults to the ``env_key`` environment variable.
        base_url: the API root as the official SDK takes it; defaults to the
            ``env_base_url`` environment variable, then ``default_base_url``.
        timeout: request timeout for the client agentrt builds.
        max_retries: how many times a failed request is retried (0 disables retries);
            the shorthand for ``retry=RetryPolicy(max_retries=...)``.
        retry: the whole retry policy (``max_retries`` is then ignored).
        http_client: a client to use as-is; agentrt never closes it.
        limits: connection-pool limits for the client agentrt builds.

    Raises:
        MissingAPIKeyError: no key was given and the environment variable is unset.
        UsageError: a bad ``base_url``, ``retry`` or ``max_retries``.
    """

    codec: ClassVar[Codec]
    env_key: ClassVar[str]
    default_base_url: ClassVar[str]
    env_base_url: ClassVar[str | None] = None
    generation_options: ClassVar[frozenset[str]] = frozenset()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        codec = cls.__dict__.get("codec")
        if codec is not None:
            for attribute in (
                "name",
                "env_key",
                "default_base_url",
                "env_base_url",
                "generation_options",
            ):
                if attribute not in cls.__dict__ and hasattr(codec, attribute):
                    setattr(cls, attribute, getattr(codec, attribute))

    def __init__(
        self,
        model_name: str,
        *,
        api_key: str | SecretStr | None = None,
        base_url: str | None = None,
        timeout: float | httpx.Timeout | None = 60.0,
        max_retries: int = 2,
        retry: RetryPolicy | None = None,
        http_client: httpx.AsyncClient | None = None,
        limits: httpx.Limits | None = None,
    ) -> None:
        super().__init__(model_name)
        if isinstance(api_key, SecretStr):
            api_key = api_key.get_secret_value()
        if not api_key:
            api_key = os.environ.get(self.env_key)
        if not api_key:
            raise MissingAPIKeyError(self.name, self.env_key)
        if retry is None:
            if type(max_retries) is not int or max_retries < 0:
                raise UsageError(f"max_retries must be an int >= 0, got {max_retries!r}")
            retry = RetryPolicy(max_retries=max_retries)
        elif not isinstance(retry, RetryPolicy):
            raise UsageError(f"retry must be an agentrt.RetryPolicy, got {type(retry).__name__}")
        self.retry = retry
        self.api_key = SecretStr(api_key)
        where = "base_url"
        if base_url is None and self.env_base_url:
            base_url = os.environ.get(self.env_base_url) or None
            where = f"the {self.env_base_url} environment variable"
        if base_url is None:
            base_url = self.default_base_url
        self.base_url = _checked_base_url(base_url, where, self.default_base_url)
        self.timeout = timeout
        self._limits = limits
        self._client = http_client
        self._owns_client = http_client is None
        self._backend: LeanBackend | HTTPXBackend | None = None
        self._headers: list[tuple[bytes, bytes]] | None = None
        self._routes: dict[tuple[str, tuple[tuple[str, str], ...], bool], Route] = {}
        #: Encodings of each chain's messages, by the chain's token (gone with the chain).
        self._caches: weakref.WeakKeyDictionary[Any, dict[Any, Any]] = weakref.WeakKeyDictionary()
        #: Encodings of the tool lists, shared by every chain (bounded).
        self._tool_encodings = ToolEncodings()
        self._shared_cache: dict[Any, Any] = {TOOL_ENCODINGS: self._tool_encodings}

    @property
    def max_retries(self) -> int:
        """Retries after the first attempt (``retry.max_retries``)."""
        return self.retry.max_retries

    # --- the turn: written once for every codec ----------------------------------------------

    async def turn(self, request: TurnRequest, *, stream: bool) -> AsyncIterator[StreamEvent]:
        """Run one model call and yield its normalised events.

        Raises:
            ProviderError: the mapped HTTP, transport or in-stream failure; an event or
                body agentrt cannot interpret is a ``ServerError`` quoting it.
        """
        codec = self.codec
        path, params = codec.route(self.model_name, stream=stream)
        body = codec.request_body(
            self.model_name, request, stream=stream, cache=self._cache(request)
        )
        options = request.options
        headers = None
        if "extra_body" in options or "extra_headers" in options:
            body, headers = _extras(body, options)
        if not stream:
            payload = await self.post_json(
                path, body, params=params, headers=headers, on_retry=request.on_retry
            )
            for event in self._whole(payload):
                yield event
            return
        decoder = codec.decoder()
        events = self.post_sse(
            path, body, params=params, headers=headers, on_retry=request.on_retry
        )
        try:
            async with aclosing(events):
                async for sse in events:
                    try:
                        decoded = decoder.feed(sse)
                    except ProviderError as exc:
                        self._scrub_error(exc)
                        raise
                    except UNREADABLE as exc:
                        raise malformed(
                            self.name, "a stream event", self._scrub(sse.data), exc
                        ) from exc
                    for event in decoded:
                        yield event
        except WholeAnswer as whole:  # a gateway ignored the request to stream
            for event in self._whole(whole.payload):
                yield event
            return
        try:
            closing = decoder.close()
        except ProviderError as exc:
            self._scrub_error(exc)
            raise
        for event in closing:
            yield event

    def _whole(self, payload: Any) -> list[StreamEvent]:
        try:
            return self.codec.events_from_body(payload)
        except ProviderError as exc:
            self._scrub_error(exc)
            raise
        except UNREADABLE as exc:
            raise malformed(self.name, "the response", self._scrub(str(payload)), exc) from exc

    def _cache(self, request: TurnRequest) -> dict[Any, Any]:
        token = request.token
        if token is None:
            if len(self._shared_cache) < 4096:
                return self._shared_cache
            return {TOOL_ENCODINGS: self._tool_encodings}
        if isinstance(token, dict):  # a chain passing its dict: the cache itself
            if TOOL_ENCODINGS not in token:
                token[TOOL_ENCODINGS] = self._tool_encodings
            return token
        cache = self._caches.get(token)
        if cache is None:
            cache = self._caches[token] = {TOOL_ENCODINGS: self._tool_encodings}
        return cache

    # --- requests -----------------------------------------------------------------------------

    @property
    def client(self) -> httpx.AsyncClient:
        """The HTTP client, created on first use and reused for every request."""
        if self._client is None:
            self._client = make_client(self.timeout, self._limits)
        return self._client

    @property
    def backend(self) -> LeanBackend | HTTPXBackend:
        """The backend requests go through (decided once, with the client)."""
        backend = self._backend
        if backend is None:
            client = self.client
            transport = client._transport
            if self._owns_client and isinstance(transport, LeanTransport):
                # Our own client adds nothing (no auth, cookies, redirects or hooks):
                # its transport is called directly.
                backend = LeanBackend(transport)
            else:
                backend = HTTPXBackend(client)
            self._backend = backend
        return backend

    async def aclose(self) -> None:
        """Close the HTTP client if agentrt created it (a user's client is left open)."""
        client, self._client = self._client, (None if self._owns_client else self._client)
        self._backend = None
        if self._owns_client and client is not None:
            await client.aclose()

    async def __aenter__(self) -> HTTPProvider:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def post_json(
        self,
        path: str,
        body: dict[str, Any],
        *,
        params: dict[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        on_retry: Callable[[int, BaseException, float], None] | None = None,
    ) -> Any:
        """POST ``body`` as JSON to ``base_url + path`` and return the decoded JSON answer.

        Raises:
            ProviderError: the mapped failure, after retries where they apply.
        """
        route = self._route(path, params, headers, sse=False)
        response = await self._send(route, encode_body(body), False, on_retry)
        data = response.content or b""
        try:
            return json.loads(data)
        except ValueError as exc:
            text = data.decode("utf-8", "replace")
            raise ServerError(
                self._scrub(f"the response was not valid JSON: {shorten(text)}"),
                provider=self.name,
                status=response.status,
                request_id=self._request_id(response),
            ) from exc

    async def post_sse(
        self,
        path: str,
        body: dict[str, Any],
        *,
        params: dict[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        on_retry: Callable[[int, BaseException, float], None] | None = None,
    ) -> AsyncGenerator[SSEEvent, None]:
        """POST ``body`` as JSON and yield the Server-Sent Events of the answer.

        Retried only until a successful response's headers arrive. A stream that breaks
        part-way raises ``APIConnectionError``/``APITimeoutError`` saying how much had
        arrived. A successful answer that is not an event stream raises
        :class:`WholeAnswer` (JSON) or ``ServerError`` (anything else, quoted).

        Raises:
            ProviderError: the mapped failure.
        """
        route = self._route(path, params, headers, sse=True)
        response = await self._send(route, encode_body(body), True, on_retry)
        progress = Progress()
        try:
            content_type = response.header(b"content-type")
            if content_type and not content_type.lower().startswith("text/event-stream"):
                raise await self._not_a_stream(content_type, response)
            with self._map_errors(progress):
                parser = SSEParser()
                async for chunk in response:
                    progress.bytes += len(chunk)
                    for event in parser.feed(chunk):
                        progress.events += 1
                        yield event
                parser.close()
            if parser.incomplete:
                raise APIConnectionError(
                    f"the event stream ended in the middle of an event {progress.describe()}",
                    provider=self.name,
                    status=response.status,
                    request_id=self._request_id(response),
                )
        finally:
            await response.aclose()

    async def _send(
        self,
        route: Route,
        content: bytes,
        stream: bool,
        on_retry: Callable[[int, BaseException, float], None] | None,
    ) -> WireResponse:
        """Send with the retry policy; return a successful response or raise its error."""
        # The happy path pays nothing for retries: the loop is entered only after a first
        # attempt that needs one, and takes that attempt's outcome as its first.
        retry = self.retry
        first: WireResponse | APIConnectionError
        try:
            first = response = await self._attempt(route, content, stream)
        except APIConnectionError as exc:
            if not retry.max_retries:
                raise
            first = exc
        else:
            if 200 <= response.status < 300:
                return response
        if retry.max_retries and (
            isinstance(first, APIConnectionError) or first.status in retry.statuses
        ):
            response = await send_with_retries(
                partial(self._attempt, route, content, stream),
                retry,
                error_of=self._error_of,
                retry_after=self.codec.retry_after,
                on_retry=on_retry,
                what=self.name,
                first=first,
            )
            if 200 <= response.status < 300:
                return cast(WireResponse, response)
        try:
            with self._map_errors():
                data = await response.read()
        finally:
            await response.aclose()
        raise self._error_of(response, data)

    async def _attempt(self, route: Route, content: bytes, stream: bool) -> WireResponse:
        with self._map_errors():
            try:
                response = await self.backend.send(route, content, stream=stream)
            except httpx.HTTPError as exc:
                logger.debug("%s: POST %s failed: %s", self.name, route.url, type(exc).__name__)
                raise
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("%s: POST %s -> HTTP %d", self.name, route.url, response.status)
        return response

    def _route(
        self,
        path: str,
        params: dict[str, str] | None,
        extra: Mapping[str, str] | None,
        *,
        sse: bool,
    ) -> Route:
        key = (path, tuple(sorted(params.items())) if params else (), sse)
        route = self._routes.get(key) if extra is None else None
        if route is not None:
            return route
        headers = self._headers
        if headers is None:
            merged = {
                "user-agent": USER_AGENT,
                "content-type": "application/json",
                **self.codec.auth_headers(self.api_key.get_secret_value()),
            }
            headers = self._headers = [
                (k.encode("ascii"), v.encode("latin-1")) for k, v in merged.items()
            ]
        if sse:
            headers = [*headers, (b"accept", b"text/event-stream")]
        if extra:
            names = {k.lower().encode("ascii") for k in extra}
            headers = [h for h in headers if h[0] not in names]
            headers += [
                (k.lower().encode("ascii"), str(v).encode("latin-1")) for k, v in extra.items()
            ]
        url = httpx.URL(self.base_url + path, params=params)
        route = Route(url, headers, self.client.timeout.as_dict())
        if extra is None:
            self._routes[key] = route
        return route

    async def _not_a_stream(self, content_type: str, response: WireResponse) -> Exception:
        """The error for a successful answer to a streamed request that is not a stream."""
        data = bytearray()
        with self._map_errors():
            async for chunk in response:
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
                f"{response.status} with {content_type}: {text!r}; is base_url "
                f"({self.base_url}) the provider's API?"
            ),
            provider=self.name,
            status=response.status,
            request_id=self._request_id(response),
        )

    # --- errors ---------------------------------------------------------------------------

    def _map_errors(self, progress: Progress | None = None) -> ErrorMap:
        """Translate transport failures raised inside the block to agentrt errors."""
        return ErrorMap(self.name, self.base_url, self._scrub, progress)

    def _request_id(self, response: WireResponse) -> str | None:
        return self.codec.request_id(response.headers)

    def _error_of(self, response: WireResponse, data: bytes) -> ProviderError:
        """The exception for a failed response whose body is ``data``."""
        text = data.decode("utf-8", "replace")
        try:
            payload: Any = json.loads(text)
        except ValueError:
            payload = text
        status = response.status
        return error_for_status(
            status,
            self._scrub(self.codec.error_message(status, payload)),
            provider=self.name,
            request_id=self._request_id(response),
            body=self._scrub(text[:2000]),
        )

    def error_from_status(
        self, status: int, message: str, *, request_id: str | None = None, body: str | None = None
    ) -> ProviderError:
        """Build the exception for an HTTP status, the key scrubbed (see ``error_for_status``)."""
        return error_for_status(
            status,
            self._scrub(message),
            provider=self.name,
            request_id=request_id,
            body=self._scrub(body) if body is not None else None,
        )

    def _scrub_error(self, error: ProviderError) -> None:
        """Remove the key from ``error``'s message, body and text, in place."""
        key = self.api_key.get_secret_value()
        if not key:
            return
        if key in error.message:
            error.message = error.message.replace(key, _REDACTED)
        if error.body and key in error.body:
            error.body = error.body.replace(key, _REDACTED)
        error.args = tuple(
            arg.replace(key, _REDACTED) if isinstance(arg, str) else arg for arg in error.args
        )

    def _scrub(self, text: str) -> str:
        key = self.api_key.get_secret_value()
        return text.replace(key, _REDACTED) if key and key in text else text


class WholeAnswer(Exception):  # a signal to the driver, not an error
    """A streamed request was answered with the whole answer as JSON (``payload``)."""

    def __init__(self, payload: Any) -> None:
        super().__init__("the server sent the whole answer instead of an event stream")
        self.payload = payload


def _extras(body: dict[str, Any], options: Mapping[str, Any]) -> tuple[dict[str, Any], Any]:
    """``extra_body`` merged into the body last; ``extra_headers`` for the request."""
    extra_body = options.get("extra_body")
    if extra_body:
        body = {**body, **extra_body}
    extra_headers = options.get("extra_headers")
    return body, (dict(extra_headers) if extra_headers else None)


def _checked_base_url(url: Any, where: str, default: str) -> str:
    """``url`` without its trailing slash, refused unless it is an http(s) URL with a host.

    Raises:
        UsageError: naming ``where`` the URL came from, and an example of a good one.
    """
    example = f"e.g. {default!r}, or 'http://localhost:8000/v1' for a local server"
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


# --- the three remote providers: a codec each ----------------------------------------------


class OpenAIProvider(HTTPProvider):
    """The ``openai:<model>`` provider: Chat Completions, and any compatible server."""

    codec: ClassVar[Codec] = OpenAICodec()


class AnthropicProvider(HTTPProvider):
    """The ``anthropic:<model>`` provider: Claude models through the Messages API."""

    codec: ClassVar[Codec] = AnthropicCodec()


class GeminiProvider(HTTPProvider):
    """The ``gemini:<model>`` provider: the Gemini API (Google AI Studio keys)."""

    codec: ClassVar[Codec] = GeminiCodec()
