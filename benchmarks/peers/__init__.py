"""Peer libraries, each driven through its public API; skipped when not installed."""
