"""The ``agentrt`` command line: ``chain``, ``models``, ``tools`` and ``logs``."""

from .exit_codes import ExitCode
from .main import build_parser, main

__all__ = ["ExitCode", "build_parser", "main"]
