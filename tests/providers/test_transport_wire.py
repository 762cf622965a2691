"""agentrt's transport against a raw TCP server that writes exactly the bytes a test scripts.

Runs on asyncio (the protocol-driven connection) and trio (the raw-socket connection; TLS
on anyio streams): the framing, keep-alive, flow-control and failure cases must behave the
same on both.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel
import httpx
import pytest
import trustme
from anyio.streams.tls import TLSListener

from agentrt._backend import HIGH_WATER
from agentrt._transport import LeanTransport

pytestmark = pytest.mark.anyio

Handler = Callable[["Peer"], Awaitable[None]]


class Peer:
    """The server's side of one accepted connection."""

    def __init__(self, stream: anyio.abc.ByteStream, index: int) -> None:
        self.stream = stream
        self.index = index  # 0 for the first connection the server accepted
        self.buffer = b""
        self.closed = anyio.Event()  # set once the server closed this connection

    async def request(self) -> bytes:
        """Read one request; return its body."""
        while b"\r\n\r\n" not in self.buffer:
            self.buffer += await self.stream.receive()
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(self.buffer) < length:
            self.buffer += await self.stream.receive()
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return body

    async def send(self, *parts: bytes) -> None:
        for part in parts:
            await self.stream.send(part)


def ok(body: bytes, *extra: bytes) -> bytes:
    head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n" % len(body)
    return head + b"".join(h + b"\r\n" for h in extra) + b"\r\n" + body


@asynccontextmanager
async def raw_server(
    handler: Handler, tls: ssl.SSLContext | None = None, *, small_window: bool = False
) -> AsyncIterator[tuple[str, list[Peer]]]:
    """Serve ``handler`` on 127.0.0.1; yield the base URL and the accepted connections.

    ``small_window``: the accepted sockets get a 64 KiB receive buffer (no autotuning), so
    a large request cannot all sit in the kernel while the server does not read.
    """
    peers: list[Peer] = []
    if small_window:  # set before listening: an accepted socket inherits it at once
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        tcp: anyio.abc.SocketListener = await anyio.abc.SocketListener.from_socket(sock)
    else:
        tcp = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = tcp.extra(anyio.abc.SocketAttribute.local_port)
    listener: anyio.abc.Listener[Any] = tcp
    if tls is not None:
        listener = TLSListener(tcp, tls, standard_compatible=False)

    async def serve(stream: Any) -> None:
        peer = Peer(stream, len(peers))
        peers.append(peer)
        async with stream:
            try:
                await handler(peer)
            except (anyio.EndOfStream, anyio.BrokenResourceError, ConnectionError):
                pass
        peer.closed.set()

    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, serve)
        try:
            yield f"{'https' if tls else 'http'}://127.0.0.1:{port}", peers
        finally:
            tg.cancel_scope.cancel()


async def test_idle_connection_closed_by_the_server_is_replaced() -> None:
    async def handler(peer: Peer) -> None:
        await peer.request()
        await peer.send(ok(b"first"))  # keep-alive by default, then closed anyway

    transport = LeanTransport()
    async with raw_server(handler) as (url, peers), httpx.AsyncClient(transport=transport) as c:
        assert (await c.get(url)).content == b"first"
        with anyio.fail_after(5):
            await peers[0].closed.wait()
        # Whether the client saw the close yet or finds out on sending: a new connection.
        assert (await c.get(url)).content == b"first"
        assert len(peers) == 2  # the second request went out on a new connection
        assert transport.connections_in_use == 0


async def test_interim_response_chunked_body_extensions_and_trailers() -> None:
    async def handler(peer: Peer) -> None:
        await peer.request()
        await peer.send(
            b"HTTP/1.1 100 Continue\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"5;ext=1\r\nhel",
            b"lo\r\n",
            b"6\r\n wor",
            b"ld\r\n0\r\nX-Trailer: yes\r\n",
            b"\r\n",
        )
        await peer.request()
        await peer.send(ok(b"again"))

    transport = LeanTransport()
    async with raw_server(handler) as (url, peers), httpx.AsyncClient(transport=transport) as c:
        response = await c.get(url)
        assert response.status_code == 200
        assert response.content == b"hello world"
        assert (await c.get(url)).content == b"again"
        assert len(peers) == 1  # the chunked body was read to its end: reused


async def test_large_bodies_both_ways_go_through_flow_control() -> None:
    size = 4 * HIGH_WATER + 123
    upload = bytes(range(256)) * (size // 256)

    sent = anyio.Event()

    async def handler(peer: Peer) -> None:
        body = await peer.request()
        answer = (body[::-1] + b"!") * 2
        await peer.send(ok(answer))
        sent.set()
        await peer.request()  # keep the connection open until the client closes it

    transport = LeanTransport()
    async with raw_server(handler) as (url, _), httpx.AsyncClient(transport=transport) as c:
        async with c.stream("POST", url, content=upload) as response:
            received = bytearray()
            async for piece in response.aiter_raw():
                if not received:
                    # A slow reader: let the server send all it can and the loop run many
                    # times (the client must stop reading its socket at its high-water
                    # mark, not buffer everything), then read on.
                    with anyio.move_on_after(1):
                        await sent.wait()
                    for _ in range(20):
                        await anyio.lowlevel.checkpoint()
                received += piece
        assert bytes(received) == (upload[::-1] + b"!") * 2
        assert transport.idle_connections == 1


#: More than the client's send buffer (autotuned up to 4 MiB on Linux) and the server's
#: 64 KiB window hold: the send must wait for the reader.
BIG = 16 * 1024 * 1024


async def test_a_request_larger_than_the_socket_buffers_waits_for_a_slow_reader() -> None:
    upload = bytes(range(256)) * (BIG // 256)
    reading = anyio.Event()

    async def handler(peer: Peer) -> None:
        with anyio.move_on_after(0.3):  # let the client fill every buffer, then read
            await reading.wait()
        body = await peer.request()
        await peer.send(ok(b"%d %d" % (len(body), body == upload)))
        await peer.request()

    transport = LeanTransport()
    server = raw_server(handler, small_window=True)
    async with server as (url, _), httpx.AsyncClient(transport=transport) as c:
        response = await c.post(url, content=upload, timeout=httpx.Timeout(10.0))
        assert response.text == f"{BIG} 1"  # every byte, in order
        assert transport.idle_connections == 1


async def test_a_server_that_never_reads_the_request_is_a_write_timeout() -> None:
    upload = b"x" * BIG
    # A listening socket nobody accepts from: the kernel completes the connection and
    # takes what fits in its 64 KiB window, and nothing ever reads it (an anyio server
    # stream on asyncio would read everything into memory on its own).
    with socket.socket() as deaf:
        deaf.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        deaf.bind(("127.0.0.1", 0))
        deaf.listen()
        url = f"http://127.0.0.1:{deaf.getsockname()[1]}/"
        transport = LeanTransport()
        async with httpx.AsyncClient(transport=transport) as c:
            with anyio.fail_after(10):
                with pytest.raises(httpx.WriteTimeout, match="sending the request"):
                    await c.post(url, content=upload, timeout=httpx.Timeout(10.0, write=0.2))
            assert transport.idle_connections == 0  # the half-sent connection was dropped


async def test_read_timeout_mid_body_is_an_httpx_read_timeout_and_drops_the_connection() -> None:
    never = anyio.Event()

    async def handler(peer: Peer) -> None:
        await peer.request()
        await peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf")
        await never.wait()

    transport = LeanTransport()
    timeout = httpx.Timeout(5.0, read=0.1)
    async with raw_server(handler) as (url, _):
        async with httpx.AsyncClient(transport=transport, timeout=timeout) as client:
            with pytest.raises(httpx.ReadTimeout):
                await client.get(url)
            assert transport.connections_in_use == 0
            assert transport.idle_connections == 0
        never.set()


async def test_connection_broken_mid_body_is_a_protocol_error() -> None:
    async def handler(peer: Peer) -> None:
        await peer.request()
        await peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this")

    transport = LeanTransport()
    async with raw_server(handler) as (url, _), httpx.AsyncClient(transport=transport) as c:
        with pytest.raises(httpx.RemoteProtocolError, match="connection broke"):
            await c.get(url)
        assert transport.connections_in_use == 0
        assert transport.idle_connections == 0


async def test_close_delimited_body_and_no_response_at_all() -> None:
    async def handler(peer: Peer) -> None:
        await peer.request()
        if peer.index == 0:
            await peer.send(b"HTTP/1.0 200 OK\r\n\r\nuntil ", b"the end")
        # the second connection closes without answering

    transport = LeanTransport()
    async with raw_server(handler) as (url, peers), httpx.AsyncClient(transport=transport) as c:
        assert (await c.get(url)).content == b"until the end"
        with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
            await c.get(url)
        assert len(peers) == 2
        assert transport.connections_in_use == 0


async def test_https_through_tls_keeps_the_connection_alive() -> None:
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)

    async def handler(peer: Peer) -> None:
        for n in range(3):
            body = await peer.request()
            await peer.send(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                b"%x\r\n%s\r\n0\r\n\r\n" % (len(body) + 1, body + b"%d" % n),
            )

    transport = LeanTransport(ssl_context=client_context)
    async with raw_server(handler, tls=server_context) as (url, peers):
        async with httpx.AsyncClient(transport=transport) as client:
            answers = [(await client.post(url, content=b"ping")).content for _ in range(3)]
            assert answers == [b"ping0", b"ping1", b"ping2"]
            assert len(peers) == 1  # one TLS connection carried all three
        assert transport.idle_connections == 0  # closed with the client


async def test_https_with_an_untrusted_certificate_is_a_connect_error() -> None:
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    trustme.CA().issue_cert("127.0.0.1").configure_cert(server_context)

    async def handler(peer: Peer) -> None:
        await peer.request()

    async with raw_server(handler, tls=server_context) as (url, _):
        async with httpx.AsyncClient(transport=LeanTransport()) as client:
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await client.get(url)
