from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

_PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


@pytest.fixture(params=[pytest.param("asyncio", id="asyncio"), pytest.param("trio", id="trio")])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(autouse=True, scope="session")
def _no_proxy_from_the_environment() -> Iterator[None]:
    # Every test talks to servers on 127.0.0.1: a proxy configured on the machine (as
    # package-registry access sometimes is) must not reroute them.
    names = [n for v in _PROXY_VARIABLES for n in (v, v.upper())]
    saved = {n: os.environ.pop(n) for n in names if n in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)
