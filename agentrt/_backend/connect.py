"""Opening a TCP socket to a host "happy eyeballs" style, on any event loop.

Shared by the asyncio protocol connection and the trio socket connection: the loop brings
its resolver and its non-blocking connect.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

__all__ = ["Connect", "Resolve", "connect_socket"]

#: Seconds between the start of two connection attempts to one host's addresses.
_EYEBALLS_DELAY = 0.25
_AddrInfo = tuple[Any, ...]
#: ``getaddrinfo(host, port, type=...)`` of the running loop.
Resolve = Callable[..., Awaitable[list[_AddrInfo]]]
#: Connect a non-blocking socket to an address on the running loop.
Connect = Callable[[socket.socket, Any], Awaitable[None]]


async def connect_socket(host: str, port: int, resolve: Resolve, connect: Connect) -> socket.socket:
    """Connect a TCP socket to ``host:port``, trying its addresses "happy eyeballs" style.

    ``resolve`` is the loop's ``getaddrinfo``, ``connect(sock, address)`` connects a
    non-blocking socket on the loop.

    An attempt starts on every address in turn, :data:`_EYEBALLS_DELAY` after the one
    before (at once when it failed); the first to connect wins and every other socket is
    closed. CPython's own ``happy_eyeballs_delay`` is not used: on cancellation its race
    can lose the winning socket, which then stays open until garbage collection. Here
    every socket is closed by the attempt that made it, whatever ends it.
    """
    infos = _numeric_address(host, port) or await resolve(host, port, type=socket.SOCK_STREAM)
    if not infos:  # pragma: no cover - getaddrinfo raises instead
        raise OSError(f"no address for {host!r}")
    if len(infos) == 1:  # one address (an IP, or one record): nothing to race
        family, kind, proto, _name, address = infos[0]
        sock = socket.socket(family, kind, proto)
        try:
            sock.setblocking(False)
            await connect(sock, address)
        except BaseException:
            sock.close()
            raise
        return sock
    winner: list[socket.socket] = []
    errors: list[OSError] = []

    async def attempt(info: _AddrInfo, failed: anyio.Event, scope: anyio.CancelScope) -> None:
        family, kind, proto, _name, address = info
        sock = socket.socket(family, kind, proto)
        try:
            sock.setblocking(False)
            await connect(sock, address)
        except OSError as exc:
            sock.close()
            errors.append(exc)
            failed.set()
            return
        except BaseException:
            sock.close()
            raise
        if winner:  # another attempt won at the same moment
            sock.close()
            return
        winner.append(sock)
        scope.cancel()

    try:
        async with anyio.create_task_group() as tg:
            for info in _interleave(infos):
                failed = anyio.Event()
                tg.start_soon(attempt, info, failed, tg.cancel_scope)
                with anyio.move_on_after(_EYEBALLS_DELAY):
                    await failed.wait()
    except BaseException:
        for sock in winner:
            sock.close()
        raise
    if not winner:
        if len(errors) == 1:
            raise errors[0]
        raise OSError(f"could not connect to {host}:{port}: " + "; ".join(map(str, errors)))
    return winner[0]


def _numeric_address(host: str, port: int) -> list[_AddrInfo] | None:
    """The address of an IP literal, without the resolver (and its thread hop)."""
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None
    if ip.version == 4:
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (str(ip), port))]
    address = (str(ip), port, 0, 0)
    return [(socket.AF_INET6, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", address)]


def _interleave(infos: list[_AddrInfo]) -> list[_AddrInfo]:
    """Addresses alternating between families, the first family first (RFC 8305)."""
    families: dict[int, list[_AddrInfo]] = {}
    for info in infos:
        families.setdefault(info[0], []).append(info)
    queues = list(families.values())
    longest = max(len(queue) for queue in queues)
    return [queue[i] for i in range(longest) for queue in queues if i < len(queue)]
