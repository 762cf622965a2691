"""LangChain: ``create_agent`` when the ``langchain`` package is installed, else the
documented ``bind_tools`` loop on ``langchain-openai``'s ``ChatOpenAI``."""

from __future__ import annotations

from typing import Any

from ..scenarios import PROMPT, Spec, Unavailable

MAX_TURNS = 10


def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


class LangChainClient:
    def __init__(self, spec: Spec) -> None:
        try:
            from langchain_core.tools import tool
            from langchain_openai import ChatOpenAI
        except ImportError as exc:
            raise Unavailable(f"langchain-openai is not installed ({exc})") from exc
        self.tool: Any = tool(add)
        self.chat: Any = ChatOpenAI(model="bench", base_url=spec.base_url, api_key="sk-bench")
        self.agent: Any = None
        if spec.variant != "bind_tools":
            try:
                from langchain.agents import create_agent
            except ImportError:
                pass
            else:
                self.agent = create_agent(self.chat, tools=[self.tool])
        self.bound: Any = self.chat.bind_tools([self.tool])

    @property
    def variant(self) -> str:
        return "create_agent" if self.agent is not None else "bind_tools loop"

    async def run_chain(self) -> str:
        if self.agent is not None:
            state = await self.agent.ainvoke({"messages": [{"role": "user", "content": PROMPT}]})
            return str(state["messages"][-1].content)
        from langchain_core.messages import HumanMessage

        messages: list[Any] = [HumanMessage(PROMPT)]
        for _ in range(MAX_TURNS):
            ai = await self.bound.ainvoke(messages)
            messages.append(ai)
            if not ai.tool_calls:
                return str(ai.content)
            messages.extend([await self.tool.ainvoke(call) for call in ai.tool_calls])
        raise RuntimeError("too many tool turns")

    async def aclose(self) -> None:
        client = getattr(self.chat, "root_async_client", None)
        if client is not None:
            await client.close()


async def open_client(spec: Spec) -> LangChainClient:
    return LangChainClient(spec)
