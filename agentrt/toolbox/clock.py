"""The ``now`` tool: the current date and time in an IANA time zone."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..errors import ToolError
from ..tools import tool

__all__ = ["now"]


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name.strip())
    except (ZoneInfoNotFoundError, ValueError) as exc:
        # ValueError: keys such as "../etc" or "/abs" that are not zone names at all.
        raise ToolError(
            f"unknown time zone {name!r}: use an IANA name such as 'UTC', "
            "'Europe/Paris' or 'America/New_York'"
        ) from exc


@tool
def now(timezone: str = "UTC") -> dict[str, Any]:
    """Return the current date and time in a time zone.

    Args:
        timezone: an IANA time zone name such as "UTC", "Europe/Paris" or "Asia/Tokyo".
    """
    zone = _zone(timezone)
    moment = datetime.now(zone)
    offset = moment.strftime("%z")  # "+0530"
    return {
        "timezone": zone.key,
        "datetime": moment.isoformat(timespec="seconds"),
        "date": moment.date().isoformat(),
        "time": moment.strftime("%H:%M:%S"),
        "weekday": moment.strftime("%A"),
        "utc_offset": f"{offset[:3]}:{offset[3:5]}",
    }
