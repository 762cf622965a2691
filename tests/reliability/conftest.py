"""Fixtures for the reliability tests: one loopback fake server per session, reset per test."""

from __future__ import annotations

import functools
from collections.abc import Iterator

import pytest

from tools.fakeserver.server import FakeServer


@pytest.fixture(scope="session")
def _reliability_server() -> Iterator[FakeServer]:
    with FakeServer() as server:
        yield server


@pytest.fixture
def fake_server(_reliability_server: FakeServer) -> Iterator[FakeServer]:
    """The shared fake server, with an empty queue and no recorded requests."""
    _reliability_server.reset()
    yield _reliability_server
    _reliability_server.reset()


@pytest.fixture(scope="module", autouse=True)
def _one_ssl_context() -> Iterator[None]:
    """Build httpx's default SSL context once instead of once per model.

    Loading the CA bundle costs about 30 ms per client, more than most scenarios here
    take; every request in these tests is plain HTTP on loopback, so TLS is never used.
    """
    from httpx._transports import default

    create = getattr(default, "create_ssl_context", None)
    if create is None:  # another httpx version: nothing to speed up
        yield
        return
    cached = functools.cache(create)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(default, "create_ssl_context", lambda **kw: cached(**kw))
        yield
