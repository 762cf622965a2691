"""What runs inside the Ray cluster: the batch workers and the shared pacer.

Both are async actors (only ``async def`` methods besides ``__init__``, which Ray requires
to be sync), so each runs on one asyncio event loop: Ray actors have no trio. A worker
holds one ``AsyncModel`` (one connection pool), built on first use from the spec, with the
tools from ``spec.tools_factory()``; the API key comes from the worker's environment.
"""

from __future__ import annotations

from typing import Any

import ray

from .._model import AsyncModel, get_async_model
from ..batch._chainrun import run_item
from ..batch._items import BatchItem
from ..batch._pace import Pacer, RateLimit, pacing_handler
from ..batch._result import BatchResult

__all__ = ["BatchWorker", "SharedPacer"]


class _PacerProxy:
    """A worker's handle to the :class:`SharedPacer`, with the ``Pacer`` methods.

    ``reserve`` and ``paused_for`` return object refs the pacing handler awaits; the
    others are sent without waiting.
    """

    def __init__(self, actor: Any, limit: RateLimit) -> None:
        self.limit = limit
        self._actor = actor

    def reserve(self) -> Any:
        return self._actor.reserve.remote()

    def paused_for(self) -> Any:
        return self._actor.paused_for.remote()

    def add_tokens(self, tokens: int) -> None:
        self._actor.add_tokens.remote(tokens)

    def pause(self, seconds: float) -> None:
        self._actor.pause.remote(seconds)

    def rate_limited(self) -> None:
        self._actor.rate_limited.remote()

    def succeeded(self) -> None:
        self._actor.succeeded.remote()


class _SharedPacer:
    """One :class:`~agentrt.batch._pace.Pacer` for every worker of a batch."""

    def __init__(self, limit: RateLimit) -> None:
        self._pacer = Pacer(limit)

    async def reserve(self) -> float:
        return self._pacer.reserve()

    async def paused_for(self) -> float:
        return self._pacer.paused_for()

    async def add_tokens(self, tokens: int) -> None:
        self._pacer.add_tokens(tokens)

    async def pause(self, seconds: float) -> None:
        self._pacer.pause(seconds)

    async def rate_limited(self) -> float:
        return self._pacer.rate_limited()

    async def succeeded(self) -> None:
        self._pacer.succeeded()


class _BatchWorker:
    """Runs chains of a batch, up to the actor's ``max_concurrency`` at once."""

    def __init__(self, spec: Any, pacer: Any, limit: RateLimit | None) -> None:
        self._spec = spec
        self._model: AsyncModel | None = None
        self._options: dict[str, Any] = {}
        if pacer is not None and limit is not None:
            self._pacer: Any = _PacerProxy(pacer, limit)
        else:
            self._pacer = Pacer(None)  # 429 pauses, for this worker's chains
        self._handler = pacing_handler(self._pacer)

    async def ready(self) -> bool:
        """Build the model and the tools now (so a bad spec fails at the start)."""
        if self._model is None:
            self._model, self._options = _build(self._spec)
        return True

    async def run(
        self, index: int, prompt: Any, options: dict[str, Any], key: str, attempt: int
    ) -> BatchResult:
        """Run one item's chain and return its record (``input`` is filled by the driver)."""
        if self._model is None:
            self._model, self._options = _build(self._spec)
        model = self._model
        item = BatchItem(index, prompt, options, input=None, key=key)
        return await run_item(
            model.chain,
            item,
            self._options,
            handler=self._handler,
            pacer=self._pacer,
            attempt=attempt,
        )

    async def close(self) -> None:
        """Close the model's connections."""
        if self._model is not None:
            await self._model.aclose()


def _build(spec: Any) -> tuple[AsyncModel, dict[str, Any]]:
    """The worker's model and the chain options every item starts from."""
    tools = list(spec.tools_factory()) if spec.tools_factory is not None else []
    options: dict[str, Any] = {"tools": tools, "max_turns": spec.max_turns}
    if spec.system is not None:
        options["system"] = spec.system
    if spec.output_type is not None:
        options["output_type"] = spec.output_type
    return get_async_model(spec.model_id, **(spec.options or {})), options


BatchWorker = ray.remote(num_cpus=1)(_BatchWorker)
SharedPacer = ray.remote(num_cpus=0)(_SharedPacer)
