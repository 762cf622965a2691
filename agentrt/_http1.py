"""A sans-I/O HTTP/1.1 response parser: the head, then the body (sized, chunked, or to EOF).

No sockets and no event loop here: the transport appends what arrives to a ``bytearray``
and asks :func:`parse_head` and :class:`BodyDecoder` for what it holds, consuming from
its front. Every malformed response raises :class:`ProtocolError` (which the transport
maps to ``httpx.RemoteProtocolError``, and the providers to ``APIConnectionError``):
never a ``ValueError`` from deep inside. The rules are h11's (the tests use h11 as the
oracle): a status line ``HTTP/1.x NNN reason``, token header names, a ``Content-Length``
of digits (repeated values must agree), ``Transfer-Encoding: chunked`` or none, chunk
sizes of 1 to 20 hex digits with optional extensions, trailers after the last chunk.
"""

from __future__ import annotations

import re
from typing import NamedTuple

__all__ = ["MAX_HEAD", "BodyDecoder", "Head", "ProtocolError", "parse_head"]

#: Bytes a response head may take, interim (1xx) heads included.
MAX_HEAD = 64 * 1024
_MAX_CHUNK_LINE = 4096
_TOKEN = re.compile(rb"[-!#$%&'*+.^_`|~0-9a-zA-Z]+")
#: Header lines, each CRLF-terminated: a token name, a colon, a value without CR/LF/NUL.
_FIELDS = re.compile(rb"(?:[-!#$%&'*+.^_`|~0-9a-zA-Z]+:[^\r\n\x00]*\r\n)*")
_HEX = re.compile(rb"[0-9A-Fa-f]{1,20}")
_SIZED, _CHUNKED, _TO_EOF = 0, 1, 2


class ProtocolError(Exception):
    """The server's response is not valid HTTP/1.1."""


class Head(NamedTuple):
    """A parsed response head."""

    status: int
    reason: bytes
    #: ``(name, value)`` pairs as sent, whitespace around the value stripped.
    headers: list[tuple[bytes, bytes]]
    #: Whether the connection may carry another request after this response.
    keep_alive: bool
    #: How the body ends: ``_SIZED`` (``length`` bytes), ``_CHUNKED`` or ``_TO_EOF``.
    framing: int
    length: int


def parse_head(buffer: bytearray, *, method: bytes = b"POST") -> Head | None:
    """Take one final response head from the front of ``buffer``; ``None`` if incomplete.

    Interim ``1xx`` heads (but ``101``) before it are consumed and skipped.

    Raises:
        ProtocolError: the head is malformed or longer than :data:`MAX_HEAD`.
    """
    while True:
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(buffer) > MAX_HEAD:
                raise ProtocolError(f"the response head is longer than {MAX_HEAD} bytes")
            return None
        if end > MAX_HEAD:
            raise ProtocolError(f"the response head is longer than {MAX_HEAD} bytes")
        block = bytes(buffer[:end])
        del buffer[: end + 4]
        head = _head(block, method)
        if head is not None:
            return head


def _head(block: bytes, method: bytes) -> Head | None:
    first, _, fields = block.partition(b"\r\n")
    version, _, rest = first.partition(b" ")
    code, _, reason = rest.partition(b" ")
    if version not in (b"HTTP/1.1", b"HTTP/1.0") or len(code) != 3 or not code.isdigit():
        raise ProtocolError(f"bad status line {first[:100]!r}")
    status = int(code)
    if 100 <= status < 200 and status != 101:
        return None  # an interim response: the caller reads on
    keep_alive = version == b"HTTP/1.1"
    headers: list[tuple[bytes, bytes]] = []
    length: int | None = None
    chunked = False
    if fields:
        fields += b"\r\n"
        # One regular-expression pass checks every header line (token name, a colon, a
        # value without CR, LF or NUL); only a head that fails it is checked line by line,
        # to name the bad line.
        if _FIELDS.fullmatch(fields) is None:
            _bad_line(fields)
        for line in fields.split(b"\r\n")[:-1]:
            name, _, value = line.partition(b":")
            value = value.strip(b" \t")
            headers.append((name, value))
            lower = name.lower()
            if lower == b"content-length":
                length = _content_length(value, length)
            elif lower == b"transfer-encoding":
                if value.lower() != b"chunked" or chunked:
                    raise ProtocolError(f"unsupported Transfer-Encoding {value[:100]!r}")
                chunked = True
            elif lower == b"connection":
                token = value.lower()
                if token == b"close":
                    keep_alive = False
                elif token == b"keep-alive":
                    keep_alive = True
    if method == b"HEAD" or status in (204, 304) or status < 200:
        return Head(status, reason, headers, keep_alive, _SIZED, 0)
    if chunked:
        return Head(status, reason, headers, keep_alive, _CHUNKED, 0)
    if length is not None:
        return Head(status, reason, headers, keep_alive, _SIZED, length)
    return Head(status, reason, headers, False, _TO_EOF, 0)


def _bad_line(fields: bytes) -> None:
    """Raise for the first malformed header line of ``fields`` (CRLF-terminated lines)."""
    for line in fields.split(b"\r\n")[:-1]:
        name, colon, value = line.partition(b":")
        if not colon or _TOKEN.fullmatch(name) is None:
            raise ProtocolError(f"bad header line {line[:100]!r}")
        if b"\r" in value or b"\n" in value or b"\x00" in value:
            raise ProtocolError(f"bad header value in {line[:100]!r}")
    raise ProtocolError("bad header lines")  # pragma: no cover - the pattern said so


def _content_length(value: bytes, before: int | None) -> int:
    if value.isdigit() and len(value) <= 18 and before is None:  # the usual header
        return int(value)
    lengths = {part.strip(b" \t") for part in value.split(b",")}
    if len(lengths) != 1:
        raise ProtocolError(f"conflicting Content-Length values {value[:100]!r}")
    (text,) = lengths
    if not text.isdigit() or len(text) > 18:
        raise ProtocolError(f"bad Content-Length {value[:100]!r}")
    length = int(text)
    if before is not None and before != length:
        raise ProtocolError("conflicting Content-Length headers")
    return length


class BodyDecoder:
    """Decodes one response body from a buffer filled by the caller.

    Call :meth:`take` whenever more bytes have arrived: it consumes what it can from the
    front of the buffer and returns the body data among it (possibly ``b""``); ``done``
    turns true at the end of the body. Call :meth:`end_of_stream` when the connection
    closed. Data of a chunked body is handed over as soon as it arrives, partial chunks
    included.
    """

    __slots__ = ("_crlf", "_mode", "_remaining", "done")

    def __init__(self, head: Head) -> None:
        self._mode = head.framing
        self._remaining = head.length  # sized: bytes left; chunked: of the current chunk
        self._crlf = False  # chunked: the CRLF after the current chunk's data is due
        self.done = self._mode == _SIZED and not self._remaining

    def take(self, buffer: bytearray) -> bytes:
        """Consume body bytes from the front of ``buffer`` and return their data.

        Raises:
            ProtocolError: a malformed chunk size, chunk end or trailer.
        """
        if self.done:
            return b""
        mode = self._mode
        if mode == _SIZED:
            take = min(self._remaining, len(buffer))
            data = bytes(buffer[:take])
            del buffer[:take]
            self._remaining -= take
            self.done = not self._remaining
            return data
        if mode == _TO_EOF:
            data = bytes(buffer)
            buffer.clear()
            return data
        return self._chunks(buffer)

    def _chunks(self, buffer: bytearray) -> bytes:
        parts: list[bytes] = []
        pos, size = 0, len(buffer)
        try:
            while True:
                remaining = self._remaining
                if remaining:
                    take = min(remaining, size - pos)
                    if take <= 0:
                        break
                    parts.append(bytes(buffer[pos : pos + take]))
                    pos += take
                    self._remaining = remaining = remaining - take
                    if remaining:
                        break
                    self._crlf = True
                if self._crlf:
                    if size - pos < 2:
                        break
                    if buffer[pos : pos + 2] != b"\r\n":
                        raise ProtocolError("a chunk of the response body does not end in CRLF")
                    pos += 2
                    self._crlf = False
                eol = buffer.find(b"\r\n", pos)
                if eol < 0:
                    if size - pos > _MAX_CHUNK_LINE:
                        raise ProtocolError("a chunk size line of the response body is too long")
                    break
                chunk_size = _chunk_size(bytes(buffer[pos:eol]))
                if chunk_size == 0:
                    end = _trailer_end(buffer, eol + 2)
                    if end < 0:
                        break  # the trailer is not complete yet
                    pos = end
                    self.done = True
                    break
                pos = eol + 2
                self._remaining = chunk_size
        finally:
            if pos:
                del buffer[:pos]
        return b"".join(parts)

    def end_of_stream(self) -> None:
        """The connection closed: fine for a body read to EOF, else a protocol error.

        Raises:
            ProtocolError: the body was not complete.
        """
        if not self.done and self._mode != _TO_EOF:
            raise ProtocolError("the connection broke off before the end of the response body")
        self.done = True


def _chunk_size(line: bytes) -> int:
    # A plain hex size (the usual line) is read at once; anything else, with extensions
    # or malformed, goes through the full check. (int() alone would take "0x1a" and "+1".)
    if 0 < len(line) <= 20 and line.isalnum() and b"x" not in line and b"X" not in line:
        try:
            return int(line, 16)
        except ValueError:
            pass
    size = line.split(b";", 1)[0].rstrip(b" \t")
    if _HEX.fullmatch(size) is None:
        raise ProtocolError(f"malformed chunk size {line[:40]!r} in the response body")
    return int(size, 16)


def _trailer_end(buffer: bytearray, start: int) -> int:
    """Where the trailer starting at ``start`` ends (past its blank line), or -1."""
    pos = start
    while True:
        eol = buffer.find(b"\r\n", pos)
        if eol < 0:
            if len(buffer) - start > MAX_HEAD:
                raise ProtocolError("the trailer of the response body is too long")
            return -1
        if eol == pos:
            return eol + 2
        line = bytes(buffer[pos:eol])
        name, colon, _value = line.partition(b":")
        if not colon or _TOKEN.fullmatch(name) is None:
            raise ProtocolError(f"bad trailer line {line[:100]!r}")
        pos = eol + 2
