"""Fixtures for provider tests: one loopback fake server per session, reset per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tools.fakeserver.server import FakeServer


@pytest.fixture(scope="session")
def _fake_server_session() -> Iterator[FakeServer]:
    with FakeServer() as server:
        yield server


@pytest.fixture
def fake_server(_fake_server_session: FakeServer) -> Iterator[FakeServer]:
    """The shared fake server, with an empty queue and no recorded requests."""
    _fake_server_session.reset()
    yield _fake_server_session
    _fake_server_session.reset()
