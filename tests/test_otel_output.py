"""``output_type=`` chains say so: ``gen_ai.output.type`` on their chat and agent spans."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel
from test_otel_kit import Telemetry, telemetry

import agentrt
from agentrt.otel import _semconv as sc

__all__ = ["telemetry"]  # fixtures, used by name


class Answer(BaseModel):
    value: int


@pytest.mark.anyio
async def test_output_type_is_json_on_chat_and_agent_spans(telemetry: Telemetry) -> None:
    model = agentrt.get_async_model("offline")
    chain = model.chain("give me a number", output_type=Answer, callbacks=[telemetry.handler])
    assert isinstance(await chain.output(), Answer)
    plain = model.chain("no type", callbacks=[telemetry.handler])
    await plain.text()
    traces: dict[int, set[Any]] = {}
    for span in [*telemetry.named("invoke_agent"), *telemetry.named("chat")]:
        traces.setdefault(span.context.trace_id, set()).add(
            (span.attributes or {}).get(sc.OUTPUT_TYPE)
        )
    typed = telemetry.named("invoke_agent")[0].context.trace_id  # the first chain
    assert traces.pop(typed) == {"json"}  # the agent span and each of its chat spans
    assert list(traces.values()) == [{None}]  # the plain chain: none of them
