"""Benchmarks of agentrt against a raw-socket floor and peer libraries.

Run ``python -m benchmarks.run`` (``--quick`` for a CI-sized smoke run). Every measurement
runs in a fresh subprocess against a fake provider server in another process, so CPU time
and peak RSS belong to the client alone.
"""
