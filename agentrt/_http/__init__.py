"""The HTTP layer under the providers' driver: its backends (see :mod:`.backends`)."""
