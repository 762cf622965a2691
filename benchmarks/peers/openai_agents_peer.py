"""openai-agents: one shared ``Agent`` on ``OpenAIChatCompletionsModel``, tracing off."""

from __future__ import annotations

from typing import Any

from ..scenarios import PROMPT, Spec, Unavailable


def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


class OpenAIAgentsClient:
    def __init__(self, spec: Spec) -> None:
        try:
            from agents import (
                Agent,
                OpenAIChatCompletionsModel,
                Runner,
                function_tool,
                set_tracing_disabled,
            )
            from openai import AsyncOpenAI
        except ImportError as exc:
            raise Unavailable(f"openai-agents is not installed ({exc})") from exc
        set_tracing_disabled(True)
        self.client = AsyncOpenAI(base_url=spec.base_url, api_key="sk-bench")
        model = OpenAIChatCompletionsModel(model="bench", openai_client=self.client)
        self.agent: Any = Agent(name="bench", model=model, tools=[function_tool(add)])
        self.runner: Any = Runner

    async def run_chain(self) -> str:
        result = await self.runner.run(self.agent, PROMPT)
        return str(result.final_output)

    async def aclose(self) -> None:
        await self.client.close()


async def open_client(spec: Spec) -> OpenAIAgentsClient:
    return OpenAIAgentsClient(spec)
