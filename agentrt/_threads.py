"""Where the thread hop lived: now :mod:`agentrt._backend` (kept for existing imports)."""

from __future__ import annotations

from ._backend import IDLE_SECONDS, run_in_thread

__all__ = ["IDLE_SECONDS", "run_in_thread"]
