"""Progress displays: a tqdm bar on stderr (``progress=True``) or the user's callable."""

from __future__ import annotations

import importlib.util
import logging
import sys
from collections.abc import Callable
from typing import Any

from ..errors import UsageError
from ._result import BatchProgress, BatchSummary

__all__ = ["Progress", "check_progress"]

logger = logging.getLogger("agentrt")

ProgressOption = bool | Callable[[BatchProgress], Any] | None


def check_progress(progress: Any) -> None:
    """Validate ``progress=`` at the call.

    Raises:
        UsageError: not ``None``, a bool or a callable; or ``True`` without tqdm installed.
    """
    if progress is None or progress is False:
        return
    if progress is True:
        if importlib.util.find_spec("tqdm") is None:
            raise UsageError(
                "progress=True draws a progress bar with tqdm, which is not installed: "
                "pip install 'agentrt[progress]', or pass progress=callable to get the numbers"
            )
        return
    if not callable(progress):
        raise UsageError(
            f"progress= takes True (a bar on stderr), a callable receiving BatchProgress, "
            f"or None; got {progress!r}"
        )


class Progress:
    """Reports the summary's numbers after every record."""

    def __init__(self, option: ProgressOption, summary: BatchSummary) -> None:
        self._summary = summary
        self._callback: Callable[[BatchProgress], Any] | None = None
        self._bar: Any = None
        if option is True:
            from tqdm import tqdm  # type: ignore[import-untyped]

            self._bar = tqdm(
                total=summary.total, file=sys.stderr, unit="chain", dynamic_ncols=True, leave=True
            )
        elif callable(option):
            self._callback = option

    def update(self) -> None:
        """Show the numbers now (called after every record)."""
        if self._bar is not None:
            numbers = self._summary.progress()
            self._bar.n = numbers.done
            self._bar.set_postfix(
                failed=numbers.failed + numbers.cancelled,
                tokens=numbers.total_tokens,
                refresh=False,
            )
            self._bar.update(0)
        elif self._callback is not None:
            try:
                self._callback(self._summary.progress())
            except Exception:
                logger.exception("agentrt batch progress callback raised; continuing")

    def close(self) -> None:
        """Draw the final numbers and release the bar."""
        if self._bar is not None:
            self._bar.total = self._summary.total
            self.update()
            self._bar.refresh()
            self._bar.close()
            self._bar = None
