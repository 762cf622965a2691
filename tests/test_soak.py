"""The soak benchmark at CI size: hundreds of chains through one model, with faults injected.

Runs the same code as ``python -m benchmarks.soak`` (its server subprocess, responder and
checks), only smaller. The memory check is reported but not asserted here: at a few hundred
chains the phase after warm-up is a few seconds long and RSS moves by allocator arenas and
lazily imported code, not by leaks, so a 10% bound would measure noise. The 20,000-chain
run (``python -m benchmarks.soak``) asserts it.
"""

from __future__ import annotations

import pytest

from benchmarks.soak import FAULTS, SoakConfig, SoakResult, run_soak


def check(result: SoakResult) -> None:
    assert result.problems() == []
    cfg = result.config
    assert result.completed + sum(result.failures.values()) == cfg.chains
    assert not result.untyped
    assert not result.wrong
    # Faults were injected, and failures are only the types they can cause.
    assert sum(result.server.get(f"fault_{kind}", 0) for kind in FAULTS) > 0
    assert set(result.failures) <= {"APIConnectionError", "RateLimitError", "ServerError"}
    assert result.server["input_tokens"] > 0
    assert (result.input_tokens, result.output_tokens) == (
        result.server["input_tokens"],
        result.server["output_tokens"],
    )
    assert result.fds_start == result.fds_end


@pytest.mark.timeout(120)
def test_soak_ci_sized_on_trio() -> None:
    result = run_soak(
        SoakConfig(
            chains=300,
            concurrency=50,
            fault_rate=0.05,
            seed=1,
            backend="trio",
            max_rss_growth=None,
            tranches=1,
        )
    )
    check(result)
    # A chain makes K + 1 = 4 requests unless a fault ends it, plus one per retry.
    assert result.server["requests"] > 300 * 3
    assert result.completed > 250


@pytest.mark.timeout(120)
def test_soak_heavy_faults_on_asyncio() -> None:
    # One request in four fails: retries run out now and then, so errors after retries show
    # up next to the mid-stream ones, and still nothing untyped, nothing miscounted.
    result = run_soak(
        SoakConfig(
            chains=120,
            concurrency=30,
            fault_rate=0.25,
            seed=2,
            backend="asyncio",
            max_rss_growth=None,
            tranches=1,
        )
    )
    check(result)
    assert sum(result.failures.values()) > 0
