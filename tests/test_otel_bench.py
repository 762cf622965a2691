"""The OpenTelemetry benchmark still runs (tiny run; figures are for ``benchmarks.otel_bench``)."""

from __future__ import annotations

import anyio
import pytest

from benchmarks import otel_bench


@pytest.mark.parametrize("variant", otel_bench.VARIANTS)
def test_every_variant_runs_chains_to_the_expected_answer(variant: str) -> None:
    figures = anyio.run(lambda: otel_bench.run_variant(variant, stream=True, chains=2, k=1))
    assert figures["cpu_us_per_turn"] > 0
    import agentrt.otel

    assert agentrt.otel.instrumented() is None  # each run leaves nothing installed


def test_sdk_floor_measures_something() -> None:
    assert otel_bench.sdk_floor(turns=50) > 0
