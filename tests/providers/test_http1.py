"""The sans-I/O HTTP/1.1 response parser, fuzzed with hypothesis against h11 as the oracle.

Valid responses (any status, headers, framing and body), cut into arbitrary pieces, must
parse to the same head and body as h11 parses them; malformed ones must raise
``ProtocolError`` and nothing else (the transport maps it; see
``tests/reliability/test_faults.py`` for the connection being freed).
"""

from __future__ import annotations

from typing import Any

import h11
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from agentrt._http1 import BodyDecoder, ProtocolError, parse_head

TOKEN_CHARS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
RESERVED = {"content-length", "transfer-encoding", "connection"}

names = st.text(TOKEN_CHARS, min_size=1, max_size=12).filter(lambda n: n.lower() not in RESERVED)
values = st.text(
    st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=0, max_size=20
).flatmap(
    lambda v: st.sampled_from([v, f"{v} {v}"]) if v else st.just(v)
)  # inner spaces, none around
reasons = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=20).map(str.strip)


@st.composite
def responses(draw: Any) -> tuple[bytes, int, list[tuple[bytes, bytes]], bytes]:
    """``(wire bytes, status, headers, body)`` of a valid response to a POST."""
    status = draw(st.sampled_from([200, 201, 204, 301, 304, 400, 404, 429, 500, 503]))
    reason = draw(reasons)
    headers = [
        (n.encode(), v.encode()) for n, v in draw(st.lists(st.tuples(names, values), max_size=5))
    ]
    body = draw(st.binary(max_size=300)) if status not in (204, 304) else b""
    framing = draw(st.sampled_from(["length", "chunked", "close"]))
    if status in (204, 304):
        framing = "none"
    head = [f"HTTP/1.1 {status} {reason}".rstrip().encode()]
    head += [n + b": " + v for n, v in headers]
    wire_body = b""
    if framing == "length":
        head.append(b"Content-Length: " + str(len(body)).encode())
        wire_body = body
    elif framing == "chunked":
        head.append(b"Transfer-Encoding: chunked")
        cuts = sorted(draw(st.lists(st.integers(0, len(body)), max_size=4)))
        pieces = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]
        for piece in pieces:
            if not piece:
                continue
            size = format(len(piece), draw(st.sampled_from(["x", "X", "04x"])))
            ext = draw(st.sampled_from(["", ";name=value", ";x"]))
            wire_body += f"{size}{ext}\r\n".encode() + piece + b"\r\n"
        trailer = draw(st.sampled_from([b"", b"Checksum: abc\r\n"]))
        wire_body += b"0\r\n" + trailer + b"\r\n"
    elif framing == "close":
        head.append(b"Connection: close")
        wire_body = body
    wire = b"\r\n".join(head) + b"\r\n\r\n" + wire_body
    return wire, status, headers, body


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(c, len(data)) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True) if b > a]


def with_agentrt(pieces: list[bytes]) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    buffer = bytearray()
    head = decoder = None
    body = b""
    for piece in pieces:
        buffer += piece
        if head is None:
            head = parse_head(buffer)
            if head is not None:
                decoder = BodyDecoder(head)
        if decoder is not None:
            body += decoder.take(buffer)
    if head is None or decoder is None:
        raise ProtocolError("incomplete head")
    if not decoder.done:
        decoder.end_of_stream()
    return head.status, [(n.lower(), v) for n, v in head.headers], body


def with_h11(pieces: list[bytes]) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    conn = h11.Connection(h11.CLIENT)
    conn.send(
        h11.Request(method="POST", target="/", headers=[("Host", "x"), ("Content-Length", "0")])
    )
    conn.send(h11.EndOfMessage())
    status, headers, body = 0, [], b""
    for piece in [*pieces, b""]:
        conn.receive_data(piece)
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA or event is h11.PAUSED:
                break
            if isinstance(event, h11.Response):
                status = event.status_code
                headers = [(n, v) for n, v in event.headers]
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                break
        if isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
            break
    framing = {b"content-length", b"transfer-encoding", b"connection"}
    return status, [(n, v) for n, v in headers if n not in framing], body


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(responses(), st.lists(st.integers(0, 2000), max_size=12))
def test_valid_responses_parse_as_h11_parses_them(response: Any, cuts: list[int]) -> None:
    wire, status, headers, body = response
    pieces = split(wire, cuts)
    ours = with_agentrt(pieces)
    framing = {b"content-length", b"transfer-encoding", b"connection"}
    ours = (ours[0], [(n, v) for n, v in ours[1] if n not in framing], ours[2])
    assert ours == with_h11(pieces)
    assert ours == (status, [(n.lower(), v) for n, v in headers], body)


# No CR or LF: a line break inside the value is not a malformed length but another head
# (h11 ends a header line at a bare LF; agentrt refuses it, tested on its own below).
_NO_LINE_BREAK = st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n")
BAD_LENGTHS = st.text(_NO_LINE_BREAK, max_size=8).filter(lambda t: not t.strip(" \t").isdigit())


def _valid_size(text: str) -> bool:
    # Whitespace after the size is tolerated (RFC 9112's BWS before a chunk extension), by
    # h11 and by agentrt alike: "2 " is a valid size.
    size = text.rstrip(" \t")
    return 0 < len(size) <= 20 and all(c in "0123456789abcdef" for c in size)


BAD_SIZES = st.text("0123456789abcdefxyz-+ g", min_size=0, max_size=24).filter(
    lambda t: not _valid_size(t)
)


def assert_malformed(pieces: list[bytes]) -> None:
    with pytest.raises(ProtocolError):
        with_agentrt(pieces)
    with pytest.raises((h11.ProtocolError, ValueError)):  # the oracle refuses it too
        with_h11(pieces)


@settings(max_examples=200, deadline=None)
@given(BAD_LENGTHS, st.lists(st.integers(0, 200), max_size=6))
def test_a_malformed_content_length_is_a_protocol_error(value: str, cuts: list[int]) -> None:
    wire = b"HTTP/1.1 200 OK\r\nContent-Length: " + value.encode("utf-8") + b"\r\n\r\n{}"
    assert_malformed(split(wire, cuts))


@example(size="2 x", cuts=[])
@example(size=" 2", cuts=[])
@settings(max_examples=200, deadline=None)
@given(BAD_SIZES, st.lists(st.integers(0, 200), max_size=6))
def test_a_malformed_chunk_size_is_a_protocol_error(size: str, cuts: list[int]) -> None:
    wire = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        + size.encode()
        + b"\r\nxx\r\n0\r\n\r\n"
    )
    assert_malformed(split(wire, cuts))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.lists(st.integers(0, 400), max_size=8))
def test_arbitrary_bytes_raise_nothing_but_protocol_errors(data: bytes, cuts: list[int]) -> None:
    wire = b"HTTP/1.1 200 OK\r\n" + data
    try:
        with_agentrt(split(wire, cuts))
    except ProtocolError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=1, max_size=60).filter(lambda b: b"\r\n" not in b))
def test_a_malformed_status_line_is_a_protocol_error(line: bytes) -> None:
    if line.startswith((b"HTTP/1.1 ", b"HTTP/1.0 ")) and line[9:12].isdigit():
        return  # a valid status line, whatever the reason phrase
    try:
        with_agentrt([line + b"\r\nContent-Length: 0\r\n\r\n"])
    except ProtocolError:
        return
    raise AssertionError(f"accepted the status line {line!r}")


@pytest.mark.parametrize("value", [b"0\n", b"2\nX-Other: 1", b"0\r", b"ok\x00"])
def test_a_bare_line_break_or_nul_in_a_header_value_is_refused(value: bytes) -> None:
    # Stricter than h11, which takes a bare LF as the end of a header line.
    wire = b"HTTP/1.1 200 OK\r\nContent-Length: " + value + b"\r\n\r\n{}"
    with pytest.raises(ProtocolError, match="bad header"):
        with_agentrt([wire])


def test_a_head_that_never_ends_is_refused() -> None:
    buffer = bytearray(b"HTTP/1.1 200 OK\r\n" + b"X-Long: " + b"a" * 70_000)
    with pytest.raises(ProtocolError, match="longer than"):
        parse_head(buffer)
