from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

_PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


#: ``--anyio-backend-variant`` (or ``AGENTRT_TEST_VARIANT``): how the asyncio runs go.
_VARIANTS = {
    "plain": "asyncio",
    "debug": ("asyncio", {"debug": True}),
    "uvloop": ("asyncio", {"use_uvloop": True}),
    "portable": "asyncio",  # with AGENTRT_PORTABLE=1: no asyncio fast path
}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--anyio-backend-variant",
        choices=sorted(_VARIANTS),
        default=os.environ.get("AGENTRT_TEST_VARIANT", "plain"),
        help="run the asyncio half of the suite with debug=True, on uvloop, or portable",
    )


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("--anyio-backend-variant") == "portable":
        os.environ["AGENTRT_PORTABLE"] = "1"  # read when agentrt is first imported


@pytest.fixture(params=[pytest.param("asyncio", id="asyncio"), pytest.param("trio", id="trio")])
def anyio_backend(request: pytest.FixtureRequest) -> object:
    if request.param == "asyncio":
        return _VARIANTS[request.config.getoption("--anyio-backend-variant")]
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
