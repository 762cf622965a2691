"""An incremental Server-Sent Events parser, I/O-free.

It follows the WHATWG HTML "event stream interpretation" rules exactly, so provider code can
trust it with any byte boundaries a network produces. :mod:`agentrt.providers.http` drives it.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["SSEEvent", "SSEParser", "loads"]


@dataclass(slots=True)
class SSEEvent:
    """One dispatched Server-Sent Event.

    Attributes:
        event: the ``event:`` name, or ``None`` when the event had none (a ``message``).
        data: the ``data:`` lines joined with newlines.
        id: the last event id seen on the stream, if any.
    """

    event: str | None
    data: str
    id: str | None = None


_LINE_END = re.compile(r"\r\n|\r|\n")
#: The C scanner ``json.loads`` ends in; it reads one value at an index.
_scan: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def loads(text: str) -> Any:
    """Parse an event's JSON data: :func:`json.loads`, with less overhead per call.

    A value that fills the whole text is read by the decoder's scanner directly; anything
    else (surrounding whitespace, extra data, no JSON at all) goes through ``json.loads``,
    so the result and the errors are the same.

    Raises:
        ValueError: ``text`` is not JSON.
    """
    try:
        value, end = _scan(text, 0)
    except StopIteration:
        return json.loads(text)
    if end != len(text):
        return json.loads(text)
    return value


class SSEParser:
    """Incremental Server-Sent Events parser (WHATWG HTML, "event stream interpretation").

    Feed it bytes as they arrive, split anywhere; it returns the events completed by each
    piece. Lines end with CRLF, LF or CR (a CRLF split across two pieces counts once);
    ``data:`` lines are joined with newlines; one leading space after the colon is dropped;
    comment lines (``:...``) are ignored; a blank line dispatches the event, unless it has no
    ``data`` at all; a leading byte-order mark is skipped; invalid UTF-8 becomes U+FFFD.

    At end of stream, an event that was never terminated by a blank line is discarded, as the
    specification requires; :attr:`incomplete` tells the caller that this happened, so a
    transport can report a stream that broke mid-event.

    Most pieces a provider sends are whole events of one ``data:`` line (and perhaps an
    ``event:`` line) that end on a blank line. Those are split as bytes without decoding the
    framing, when nothing of an earlier piece is pending; anything else takes the general
    path, which gives the same events.
    """

    __slots__ = (
        "_clean",
        "_data",
        "_decoder",
        "_event",
        "_last_id",
        "_partial",
        "_pending_cr",
        "_started",
        "bytes_received",
        "events_dispatched",
        "retry",
    )

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._partial: list[str] = []  # text of the current line, not yet terminated
        self._pending_cr = False  # the last piece ended in CR: a leading LF is part of it
        self._started = False
        self._data: list[str] = []
        self._event: str | None = None
        self._last_id: str | None = None
        self._clean = True  # nothing pending: the next piece may take the fast path
        #: Total bytes fed so far.
        self.bytes_received = 0
        #: Events returned so far.
        self.events_dispatched = 0
        #: The last ``retry:`` value (milliseconds) the server sent, if any.
        self.retry: int | None = None

    @property
    def incomplete(self) -> bool:
        """Whether part of an event (or of a non-comment line) has arrived but not finished."""
        if self._data or self._event is not None:
            return True
        return bool(self._partial) and not "".join(self._partial).startswith(":")

    def feed(self, data: bytes) -> list[SSEEvent]:
        """Consume the next bytes of the stream.

        Args:
            data: any number of bytes, split anywhere.

        Returns:
            The events completed by these bytes, in order (often none).
        """
        self.bytes_received += len(data)
        if self._clean and data[-2:] == b"\n\n" and b"\r" not in data:
            fast = self._whole_events(data)
            if fast is not None:
                return fast
        text = self._decoder.decode(data)
        events = self._feed_text(text) if text else []
        self._clean = not (
            self._partial
            or self._pending_cr
            or self._data
            or self._event is not None
            or self._decoder.getstate()[0]
        )
        return events

    def _whole_events(self, data: bytes) -> list[SSEEvent] | None:
        """Parse a piece of whole events (an optional ``event:`` line, one ``data:`` line).

        Returns ``None``, having changed nothing, when the piece is not made of just those.

        Only called when nothing is pending and the piece holds no CR, so the general path
        would see exactly these lines; the values are decoded alone, which gives the same
        text because they are cut at ASCII bytes.
        """
        blocks = data.split(b"\n\n")
        blocks.pop()  # empty: the piece ends with a blank line
        events: list[SSEEvent] = []
        for block in blocks:
            if block[:6] == b"data: ":
                if b"\n" in block:
                    return None
                event = None
                value = block[6:]
            elif block[:7] == b"event: ":
                end = block.find(b"\n")
                if end < 0 or block[end + 1 : end + 7] != b"data: " or b"\n" in block[end + 1 :]:
                    return None
                event = block[7:end].decode("utf-8", "replace") or None
                value = block[end + 7 :]
            else:
                return None
            events.append(SSEEvent(event, value.decode("utf-8", "replace"), self._last_id))
        self._started = True
        self.events_dispatched += len(events)
        return events

    def close(self) -> list[SSEEvent]:
        """Signal the end of the stream.

        Returns:
            Always an empty list: per the specification an event not terminated by a blank
            line is not dispatched. Check :attr:`incomplete` to detect a truncated stream.
        """
        tail = self._decoder.decode(b"", final=True)
        if tail:
            self._feed_text(tail)
        return []

    def _feed_text(self, text: str) -> list[SSEEvent]:
        if not self._started:
            self._started = True
            if text[0] == "\ufeff":
                text = text[1:]
                if not text:
                    return []
        if self._pending_cr:
            self._pending_cr = False
            if text[0] == "\n":
                text = text[1:]
                if not text:
                    return []
        if "\n" not in text and "\r" not in text:
            self._partial.append(text)
            return []
        if self._partial:
            self._partial.append(text)
            text = "".join(self._partial)
            self._partial.clear()
        lines = _LINE_END.split(text)
        rest = lines.pop()
        if rest:
            self._partial.append(rest)
        elif text[-1] == "\r":
            self._pending_cr = True
        events: list[SSEEvent] = []
        for line in lines:
            self._line(line, events)
        self.events_dispatched += len(events)
        return events

    def _line(self, line: str, events: list[SSEEvent]) -> None:
        if not line:
            if self._data:
                events.append(SSEEvent(self._event or None, "\n".join(self._data), self._last_id))
                self._data = []
            self._event = None
            return
        if line[0] == ":":
            return
        name, _, value = line.partition(":")
        if value[:1] == " ":
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:
                self._last_id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self.retry = int(value)
