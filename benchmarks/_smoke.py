"""``AGENTRT_SMOKE=1``: run each benchmark's smallest variant.

CI runs every command the README shows; the benchmark commands are the same commands a
reader types, and with this variable set they only check that everything still runs
(figures from a smoke run mean nothing).
"""

from __future__ import annotations

import os

SMOKE = os.environ.get("AGENTRT_SMOKE", "").strip() not in ("", "0")
