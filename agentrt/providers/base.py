"""The one interface every provider implements.

A provider turns a :class:`~agentrt.messages.TurnRequest` into a stream of normalised
events (:data:`~agentrt.messages.StreamEvent`). Streaming and non-streaming calls yield the
same events, so everything above this interface is written once.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from typing import Any, ClassVar

from ..messages import StreamEvent, TurnRequest

__all__ = ["Provider"]


class Provider(ABC):
    """One vendor's wire format.

    Subclasses set ``name`` (the model-id prefix) and implement :meth:`turn`.
    """

    name: ClassVar[str]

    def __init__(self, model_name: str, **options: Any) -> None:
        self.model_name = model_name
        if options:
            unknown = ", ".join(sorted(options))
            raise TypeError(f"{type(self).__name__} got unknown option(s): {unknown}")

    @abstractmethod
    def turn(self, request: TurnRequest, *, stream: bool) -> AsyncIterator[StreamEvent]:
        """Run one model call and yield its events as they arrive.

        Args:
            request: the conversation, tools and generation options.
            stream: use the provider's streaming endpoint; ``False`` must yield events
                that assemble into the identical result.

        Raises:
            ProviderError: on any provider or transport failure, already mapped.
        """

    async def aclose(self) -> None:  # noqa: B027 - optional hook, not abstract
        """Release network resources (the default holds none)."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}:{self.model_name}>"
