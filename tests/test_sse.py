"""The incremental SSE parser: every framing case, and bytes split anywhere."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentrt._sse import SSEEvent, SSEParser, loads


def parse(data: bytes) -> list[SSEEvent]:
    parser = SSEParser()
    events = parser.feed(data)
    events += parser.close()
    return events


@pytest.mark.parametrize(
    ("stream", "expected"),
    [
        pytest.param(b"data: a\n\n", [(None, "a")], id="lf"),
        pytest.param(b"data: a\r\n\r\n", [(None, "a")], id="crlf"),
        pytest.param(b"data: a\r\r", [(None, "a")], id="cr"),
        pytest.param(
            b"data: a\r\n\ndata: b\r\rdata: c\n\r\n",
            [(None, "a"), (None, "b"), (None, "c")],
            id="mixed",
        ),
        pytest.param(b"data: a\ndata: b\ndata:\n\n", [(None, "a\nb\n")], id="multi-line"),
        pytest.param(b"data:x\n\n", [(None, "x")], id="no-space"),
        pytest.param(b"data:  x \n\n", [(None, " x ")], id="one-space-stripped"),
        pytest.param(b"data\n\n", [(None, "")], id="field-without-colon"),
        pytest.param(b": ping\n:\ndata: a\n: mid\n\n", [(None, "a")], id="comments"),
        pytest.param(
            b"event: delta\ndata: a\n\ndata: b\n\n",
            [("delta", "a"), (None, "b")],
            id="event-resets",
        ),
        pytest.param(b"event: ping\n\ndata: b\n\n", [(None, "b")], id="event-without-data"),
        pytest.param(b"\n\n\n", [], id="blank-lines"),
        pytest.param(b"id: 7\nretry: 100\nfoo: bar\ndata: a\n\n", [(None, "a")], id="other-fields"),
        pytest.param(b"\xef\xbb\xbfdata: a\n\n", [(None, "a")], id="bom"),
        pytest.param(b"event:\ndata: a\n\n", [(None, "a")], id="empty-event-name"),
        pytest.param(b"data: a:b: c\n\n", [(None, "a:b: c")], id="colons-in-value"),
    ],
)
def test_sse_framing(stream: bytes, expected: list[tuple[str | None, str]]) -> None:
    assert [(e.event, e.data) for e in parse(stream)] == expected


def test_sse_id_and_retry() -> None:
    parser = SSEParser()
    events = parser.feed(b"id: 1\ndata: a\n\ndata: b\n\nid: x\0y\nretry: 2500\ndata: c\n\n")
    assert [e.id for e in events] == ["1", "1", "1"]
    assert parser.retry == 2500


SAMPLE = (
    '\ufeffevent: message_start\r\ndata: {"t": "h\u00e9\u65e5\u672c\U0001f600"}\r\n\r\n'
    ": keep-alive\n"
    "data: line one \u00e9\ndata:line two\U0001f600\r\r"
    "event: done\ndata: [DONE]\n\n"
).encode()
SAMPLE_EVENTS = [
    SSEEvent("message_start", '{"t": "h\u00e9\u65e5\u672c\U0001f600"}'),
    SSEEvent(None, "line one \u00e9\nline two\U0001f600"),
    SSEEvent("done", "[DONE]"),
]


def test_sse_sample_whole() -> None:
    assert parse(SAMPLE) == SAMPLE_EVENTS


@pytest.mark.parametrize("cut", range(1, len(SAMPLE)))
def test_sse_split_in_two_anywhere(cut: int) -> None:
    parser = SSEParser()
    events = parser.feed(SAMPLE[:cut]) + parser.feed(SAMPLE[cut:]) + parser.close()
    assert events == SAMPLE_EVENTS
    assert not parser.incomplete


def test_sse_byte_at_a_time() -> None:
    parser = SSEParser()
    events = [e for i in range(len(SAMPLE)) for e in parser.feed(SAMPLE[i : i + 1])]
    assert events == SAMPLE_EVENTS
    assert parser.bytes_received == len(SAMPLE)
    assert parser.events_dispatched == 3


@given(st.lists(st.integers(min_value=0, max_value=len(SAMPLE)), max_size=12))
def test_sse_split_at_random_points(cuts: list[int]) -> None:
    points = [0, *sorted(cuts), len(SAMPLE)]
    parser = SSEParser()
    events = [e for a, b in itertools.pairwise(points) for e in parser.feed(SAMPLE[a:b])]
    assert events + parser.close() == SAMPLE_EVENTS


def test_sse_crlf_split_between_cr_and_lf_counts_once() -> None:
    parser = SSEParser()
    # If the LF after a split CR counted as a second line end, "data: a" would dispatch early.
    assert parser.feed(b"data: a\r") == []
    assert parser.feed(b"\ndata: b\r") == []
    assert parser.feed(b"\n\r\n") == [SSEEvent(None, "a\nb")]


def test_sse_unterminated_event_is_not_dispatched() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: a\n\ndata: b\n") == [SSEEvent(None, "a")]
    assert parser.close() == []
    assert parser.incomplete


@pytest.mark.parametrize("tail", [b"data: partial", b"event: x\n", b"data: b\n"])
def test_sse_incomplete_tail_detected(tail: bytes) -> None:
    parser = SSEParser()
    parser.feed(b"data: a\n\n" + tail)
    parser.close()
    assert parser.incomplete


@pytest.mark.parametrize("tail", [b"", b": trailing comment", b"\n\n"])
def test_sse_clean_end_is_not_incomplete(tail: bytes) -> None:
    parser = SSEParser()
    parser.feed(b"data: a\n\n" + tail)
    parser.close()
    assert not parser.incomplete


def test_sse_invalid_utf8_is_replaced() -> None:
    assert parse(b"data: \xff\xfe ok\n\n") == [SSEEvent(None, "\ufffd\ufffd ok")]


def test_sse_long_line_in_many_pieces() -> None:
    parser = SSEParser()
    payload = "x" * 10_000
    data = f"data: {payload}\n\n".encode()
    events = [e for i in range(0, len(data), 7) for e in parser.feed(data[i : i + 7])]
    assert events == [SSEEvent(None, payload)]


class _GeneralPathOnly(SSEParser):
    """The parser without its fast path for pieces of whole events: the reference."""

    __slots__ = ()

    def _whole_events(self, data: bytes) -> list[SSEEvent] | None:
        return None


_VALUES = st.lists(
    st.sampled_from([b"", b"x", b" ", b":", b"{}", "\u00e9\u65e5".encode(), b"\xe6\x97", b"\xff"]),
    max_size=4,
).map(b"".join)
_DATA = _VALUES.map(lambda v: b"data: " + v)
_LINES = st.one_of(
    _DATA,  # three times: the well-formed lines the fast path takes are the common ones
    _DATA,
    _DATA,
    _VALUES.map(lambda v: b"event: " + v),
    _VALUES.map(lambda v: b"data:" + v),
    st.sampled_from([b": ping", b"id: 1", b"retry: 5", b"\xef\xbb\xbfdata: a", b""]),
)
_EVENTS = st.tuples(
    st.lists(_LINES, min_size=1, max_size=3),
    st.sampled_from([b"\n", b"\n", b"\n", b"\r\n", b"\r"]),
).map(lambda e: b"".join(line + e[1] for line in e[0]) + e[1])


@settings(max_examples=300)
@given(st.lists(_EVENTS, max_size=8), st.data())
def test_sse_fast_path_gives_what_the_general_path_gives(
    events: list[bytes], data: st.DataObject
) -> None:
    """Pieces cut at line ends (often whole events: the fast path's case) and anywhere."""
    stream = b"".join(events)
    line_ends = [i + 1 for i, byte in enumerate(stream) if byte == ord("\n")]
    cuts = data.draw(st.lists(st.sampled_from(line_ends)) if line_ends else st.just([]))
    cuts += data.draw(st.lists(st.integers(min_value=0, max_value=len(stream)), max_size=3))
    points = sorted({0, len(stream), *cuts})
    fast, general = SSEParser(), _GeneralPathOnly()
    for a, b in itertools.pairwise(points):
        assert fast.feed(stream[a:b]) == general.feed(stream[a:b])
    assert fast.close() == general.close()
    assert (fast.incomplete, fast.retry, fast.events_dispatched) == (
        general.incomplete,
        general.retry,
        general.events_dispatched,
    )


@pytest.mark.parametrize(
    "pieces",
    [
        [b"data: a\n\n", b"data: b\n\n"],
        [b"event: e\ndata: a\n\ndata: b\n\n", b"event: \ndata: c\n\n"],
        [b"data: a\n", b"data: b\n\n"],
        [b"event: e\n", b"data: b\n\n"],
        [b"data: a\n\nx", b"data: b\n\n"],
        [b"data: a\n\n\xe6", b"data: b\n\n"],
        [b"data: a\r", b"data: b\n\n"],
        [b"data: \xe6\x97", b"\xa5\n\n", b"data: c\n\n"],
        [b"data: a\n\n", b"\xef\xbb\xbfdata: b\n\n"],
    ],
)
def test_sse_whole_event_pieces(pieces: list[bytes]) -> None:
    fast, general = SSEParser(), _GeneralPathOnly()
    assert [fast.feed(p) for p in pieces] == [general.feed(p) for p in pieces]


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=8,
).map(json.dumps)


@given(
    st.one_of(
        _JSON,
        st.tuples(
            st.sampled_from(["", " ", "\n", "\ufeff"]),
            _JSON,
            st.sampled_from(["", " ", "x", "}", " 1"]),
        ).map("".join),
        st.text(max_size=12),
    )
)
def test_loads_is_json_loads(text: str) -> None:
    assert _outcome(loads, text) == _outcome(json.loads, text)


def _outcome(parse: Any, text: str) -> str:
    try:
        return repr(parse(text))
    except ValueError as exc:
        return f"{type(exc).__name__}: {exc}"
