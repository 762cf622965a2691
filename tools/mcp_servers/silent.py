"""A process that reads its stdin and never answers: an MCP server stuck before ``initialize``.

``silent.py [PIDFILE] [--linger]``: writes its pid to PIDFILE when given; with ``--linger``
it keeps running after its stdin ends (a server that ignores the end of its input).
"""

from __future__ import annotations

import os
import sys
import time

if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--linger"]
    if args:
        with open(args[0], "w") as file:
            file.write(str(os.getpid()))
    for _line in sys.stdin:
        pass
    while "--linger" in sys.argv:
        time.sleep(60)
