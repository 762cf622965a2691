"""Tools that tests/test_mcp_serve.py serves with ``agentrt mcp serve --functions``."""

from __future__ import annotations

import threading

from agentrt import async_tool_is


def shout(text: str) -> str:
    """Upper-case the text.

    Args:
        text: what to shout.
    """
    return text.upper()


def where() -> str:
    """Say which thread runs this sync tool."""
    return threading.current_thread().name


async def _which_async() -> str:
    return "async half"


@async_tool_is(_which_async)
def which() -> str:
    """Say which half of a dual tool ran."""
    return "sync half"
