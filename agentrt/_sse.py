"""An incremental Server-Sent Events parser, I/O-free.

It follows the WHATWG HTML "event stream interpretation" rules exactly, so provider code can
trust it with any byte boundaries a network produces. :mod:`agentrt._http` drives it.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass

__all__ = ["SSEEvent", "SSEParser"]


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
    """

    __slots__ = (
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
        text = self._decoder.decode(data)
        if not text:
            return []
        return self._feed_text(text)

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
