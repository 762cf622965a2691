"""The incremental SSE parser: every framing case, and bytes split anywhere."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentrt._sse import SSEEvent, SSEParser


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
