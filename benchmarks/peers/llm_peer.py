"""simonw/llm: its async OpenAI chat model with ``api_base`` at the fake server."""

from __future__ import annotations

from typing import Any

from ..scenarios import PROMPT, Spec, Unavailable


def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


class LLMClient:
    def __init__(self, spec: Spec) -> None:
        try:
            from llm.default_plugins.openai_models import AsyncChat
        except ImportError as exc:
            raise Unavailable(f"llm is not installed ({exc})") from exc
        self.model: Any = AsyncChat(  # type: ignore[no-untyped-call]
            "bench", model_name="bench", api_base=spec.base_url, supports_tools=True
        )
        self.stream = spec.stream

    async def run_chain(self) -> str:
        chain = self.model.chain(PROMPT, tools=[add], key="sk-bench", stream=self.stream)
        return str(await chain.text())

    async def aclose(self) -> None:
        return None


async def open_client(spec: Spec) -> LLMClient:
    return LLMClient(spec)
