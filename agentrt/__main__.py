"""``python -m agentrt`` and the ``agentrt`` console script."""

from __future__ import annotations

import sys

from agentrt.cli import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
