"""pydantic-ai: one shared ``Agent`` with an OpenAI chat model pointed at the fake server."""

from __future__ import annotations

from typing import Any

from ..scenarios import PROMPT, Spec, Unavailable


def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


class PydanticAIClient:
    def __init__(self, spec: Spec) -> None:
        try:
            from pydantic_ai import Agent
            from pydantic_ai.models.openai import OpenAIChatModel
            from pydantic_ai.providers.openai import OpenAIProvider
        except ImportError as exc:
            raise Unavailable(f"pydantic-ai is not installed ({exc})") from exc
        self.provider = OpenAIProvider(base_url=spec.base_url, api_key="sk-bench")
        model = OpenAIChatModel("bench", provider=self.provider)
        self.agent: Any = Agent(model, tools=[add])

    async def run_chain(self) -> str:
        result = await self.agent.run(PROMPT)
        return str(result.output)

    async def aclose(self) -> None:
        await self.provider.client.close()


async def open_client(spec: Spec) -> PydanticAIClient:
    return PydanticAIClient(spec)
