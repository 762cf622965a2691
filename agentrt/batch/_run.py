"""``run_batch`` and ``run_batch_sync``: the public entry points of local batches."""

from __future__ import annotations

import concurrent.futures
import contextvars
import os
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import anyio

from .._model import AsyncModel
from ..errors import UsageError
from ..sync import Model, _in_context, check_sync_allowed
from ._chainrun import MakeChain, revive_output, run_item
from ._engine import Engine
from ._items import BatchItem
from ._pace import Pacer, RateLimit, pacing_handler
from ._progress import ProgressOption, check_progress
from ._result import BatchResult, BatchSummary

__all__ = [
    "BatchRun",
    "BatchRunSync",
    "check_batch_options",
    "iterate_in_portal",
    "run_batch",
    "run_batch_sync",
]


def check_batch_options(
    items: Any,
    *,
    concurrency: int,
    ordered: bool,
    progress: ProgressOption,
    results_path: Any,
    rate_limit: RateLimit | None,
    max_turns: int,
    concurrency_name: str = "concurrency",
) -> Path | None:
    """Validate the options shared by local and Ray batches; return the results path.

    Raises:
        UsageError: naming the parameter that is wrong and what it takes.
    """
    if isinstance(items, (str, bytes, dict)) or not (
        hasattr(items, "__iter__") or hasattr(items, "__aiter__")
    ):
        raise UsageError(
            f"items must be an iterable or async iterable of prompts, got "
            f"{type(items).__name__}; for one prompt pass a list: [prompt]"
        )
    _positive_int(concurrency_name, concurrency)
    _positive_int("max_turns", max_turns)
    if not isinstance(ordered, bool):
        raise UsageError(f"ordered= takes True or False, got {ordered!r}")
    check_progress(progress)
    if rate_limit is not None and not isinstance(rate_limit, RateLimit):
        raise UsageError(
            f"rate_limit= takes agentrt.RateLimit(requests_per_minute=..., "
            f"tokens_per_minute=...), got {rate_limit!r}"
        )
    if results_path is None:
        return None
    if not isinstance(results_path, (str, os.PathLike)):
        raise UsageError(f"results_path= takes a file path, got {results_path!r}")
    path = Path(results_path)
    if path.is_dir():
        raise UsageError(f"results_path={str(path)!r} is a directory; give a file path")
    if not path.parent.is_dir():
        raise UsageError(
            f"results_path={str(path)!r}: the directory {str(path.parent)!r} does not exist"
        )
    return path


def _positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UsageError(f"{name}= must be a positive integer, got {value!r}")


def chain_defaults(
    probe: MakeChain,
    *,
    tools: Iterable[Any],
    system: str | None,
    output_type: Any,
    max_turns: int,
    chain_options: dict[str, Any],
) -> dict[str, Any]:
    """The options every chain of the batch gets, checked now by building one chain.

    The chain is built, not run: ``model.chain`` validates its options when called.

    Raises:
        UsageError: an option ``model.chain`` refuses (it names the option).
    """
    if system is not None and not isinstance(system, str):
        raise UsageError(f"system= takes a string, got {system!r}")
    options: dict[str, Any] = {
        "tools": list(tools),
        "system": system,
        "max_turns": max_turns,
        **chain_options,
    }
    if output_type is not None:
        options["output_type"] = output_type
    try:
        probe("batch option check", **options)
    except UsageError:
        raise
    except (TypeError, ValueError) as exc:
        raise UsageError(f"run_batch: the chain options are not usable: {exc}") from exc
    return options


class BatchRun:
    """A running batch: an async iterator of :class:`BatchResult`, one per input.

    Use it as ``async with run_batch(...) as batch: async for record in batch`` (or
    ``contextlib.aclosing``) when the loop may stop early: leaving the block cancels the
    chains still running and writes the finished ones. ``summary`` holds the totals.
    """

    def __init__(
        self,
        execute: Callable[[BatchItem], Any],
        items: Any,
        *,
        concurrency: int,
        ordered: bool,
        results_path: Path | None,
        progress: ProgressOption,
        revive: Callable[[BatchResult], BatchResult] | None,
    ) -> None:
        self._execute = execute
        self._items = items
        self._settings = (concurrency, ordered, results_path, progress, revive)
        self._engine: Engine | None = None
        self._generator: AsyncGenerator[BatchResult, None] | None = None

    @property
    def summary(self) -> BatchSummary:
        """The totals so far (all of them once iteration ended)."""
        if self._engine is None:
            return BatchSummary()
        return self._engine.summary

    def __aiter__(self) -> AsyncIterator[BatchResult]:
        if self._generator is not None:
            raise UsageError("a batch can be iterated once; call run_batch() again")
        concurrency, ordered, results_path, progress, revive = self._settings
        self._engine = Engine(
            self._items,
            self._execute,
            concurrency=concurrency,
            ordered=ordered,
            results_path=results_path,
            progress=progress,
            revive=revive,
        )
        self._generator = self._engine.run()
        return self._generator

    async def aclose(self) -> None:
        """Stop the batch: cancel running chains, write finished records."""
        if self._generator is not None:
            await self._generator.aclose()

    async def __aenter__(self) -> BatchRun:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


def run_batch(
    model: AsyncModel,
    items: Iterable[Any] | Any,
    *,
    tools: Iterable[Any] = (),
    system: str | None = None,
    output_type: Any = None,
    concurrency: int = 64,
    ordered: bool = True,
    progress: ProgressOption = None,
    results_path: str | os.PathLike[str] | None = None,
    rate_limit: RateLimit | None = None,
    max_turns: int = 10,
    **chain_options: Any,
) -> BatchRun:
    """Run one chain per item, ``concurrency`` at a time; iterate the records.

    Args:
        model: an :class:`~agentrt.AsyncModel` (for a sync ``Model`` use
            :func:`run_batch_sync`).
        items: prompts (strings or message lists) or dicts with a ``prompt`` key, an
            optional ``id`` and per-item chain options; any iterable or async iterable,
            read lazily.
        tools: tools offered to every chain.
        system: the system prompt of every chain.
        output_type: the type each chain's answer is validated into (``record.output``).
        concurrency: how many chains run at once.
        ordered: yield in input order (``True``) or as chains finish.
        progress: ``True`` for a progress bar on stderr (the ``progress`` extra), or a
            callable receiving :class:`BatchProgress` after every record.
        results_path: a JSON Lines file each record is appended to; a run with the same
            path skips the items already completed there.
        rate_limit: requests and tokens per minute shared by the whole batch.
        max_turns: the turn limit of each chain.
        **chain_options: any other option of ``model.chain`` (``temperature=``,
            ``callbacks=``, ...), checked by ``model.chain`` now.

    Returns:
        A :class:`BatchRun`: ``async for record in run_batch(...)``.

    Raises:
        UsageError: a parameter is wrong (the message names it).
    """
    if isinstance(model, Model):
        raise UsageError(
            "run_batch() takes an AsyncModel (get_async_model()); for a sync Model use "
            "agentrt.run_batch_sync()"
        )
    if not isinstance(model, AsyncModel):
        raise UsageError(f"run_batch() takes an AsyncModel as its first argument, got {model!r}")
    return _prepare(
        model.chain,
        items,
        tools=tools,
        system=system,
        output_type=output_type,
        concurrency=concurrency,
        ordered=ordered,
        progress=progress,
        results_path=results_path,
        rate_limit=rate_limit,
        max_turns=max_turns,
        chain_options=chain_options,
    )


def _prepare(
    make_chain: MakeChain,
    items: Any,
    *,
    tools: Iterable[Any],
    system: str | None,
    output_type: Any,
    concurrency: int,
    ordered: bool,
    progress: ProgressOption,
    results_path: Any,
    rate_limit: RateLimit | None,
    max_turns: int,
    chain_options: dict[str, Any],
) -> BatchRun:
    path = check_batch_options(
        items,
        concurrency=concurrency,
        ordered=ordered,
        progress=progress,
        results_path=results_path,
        rate_limit=rate_limit,
        max_turns=max_turns,
    )
    options = chain_defaults(
        make_chain,
        tools=tools,
        system=system,
        output_type=output_type,
        max_turns=max_turns,
        chain_options=chain_options,
    )
    pacer = Pacer(rate_limit)
    handler = pacing_handler(pacer)

    async def execute(item: BatchItem) -> BatchResult:
        return await run_item(make_chain, item, options, handler=handler, pacer=pacer)

    return BatchRun(
        execute,
        items,
        concurrency=concurrency,
        ordered=ordered,
        results_path=path,
        progress=progress,
        revive=revive_output(output_type),
    )


class BatchRunSync:
    """A batch of a sync ``Model``: a plain iterator of :class:`BatchResult`.

    The batch runs on the model's own event loop thread. Use it as ``with`` (or call
    ``close()``) when the loop may stop early. ``summary`` holds the totals.
    """

    def __init__(self, model: Model, batch: BatchRun) -> None:
        self._model = model
        self._batch = batch
        self._started = False

    @property
    def summary(self) -> BatchSummary:
        """The totals so far (all of them once iteration ended)."""
        return self._batch.summary

    def __iter__(self) -> Iterator[BatchResult]:
        if self._started:
            raise UsageError("a batch can be iterated once; call run_batch_sync() again")
        self._started = True
        check_sync_allowed()
        portal = self._model._loop().portal
        assert portal is not None
        return iterate_in_portal(portal, self._batch)

    def close(self) -> None:
        """Nothing to do once iterated; kept for ``with``."""

    def __enter__(self) -> BatchRunSync:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def iterate_in_portal(portal: Any, batch: BatchRun) -> Iterator[BatchResult]:
    """Iterate ``batch`` from sync code, running it in ``portal``'s event loop.

    One task runs the whole batch (its task group must stay in one task); the records come
    out through a stream, one portal call each. Stopping early cancels that task.
    """
    send, receive = anyio.create_memory_object_stream[BatchResult](0)

    async def pump() -> None:
        async with send, batch:
            async for record in batch:
                await send.send(record)

    future = portal.start_task_soon(_in_context, contextvars.copy_context(), pump)
    finished = False
    try:
        while True:
            try:
                record = portal.call(receive.receive)
            except anyio.EndOfStream:
                finished = True
                break
            yield record
    finally:
        if not finished:
            future.cancel()
        concurrent.futures.wait([future])
        portal.call(receive.aclose)
    if not future.cancelled():
        future.result()  # the batch's own error, if any


def run_batch_sync(
    model: Model,
    items: Iterable[Any],
    *,
    tools: Iterable[Any] = (),
    system: str | None = None,
    output_type: Any = None,
    concurrency: int = 64,
    ordered: bool = True,
    progress: ProgressOption = None,
    results_path: str | os.PathLike[str] | None = None,
    rate_limit: RateLimit | None = None,
    max_turns: int = 10,
    **chain_options: Any,
) -> BatchRunSync:
    """The sync form of :func:`run_batch` for a :class:`~agentrt.Model`: same arguments.

    Chains call the sync implementation of dual tools, as the sync facade's chains do.

    Returns:
        A :class:`BatchRunSync`: ``for record in run_batch_sync(...)``.

    Raises:
        UsageError: a parameter is wrong, or it is called from inside an event loop.
    """
    if isinstance(model, AsyncModel):
        raise UsageError(
            "run_batch_sync() takes a sync Model (get_model()); for an AsyncModel use "
            "agentrt.run_batch()"
        )
    if not isinstance(model, Model):
        raise UsageError(f"run_batch_sync() takes a Model as its first argument, got {model!r}")
    check_sync_allowed()

    def make_chain(prompt: Any, **options: Any) -> Any:
        # The facade's own chain (sync implementations of dual tools), run by the engine.
        return model.chain(prompt, **options)._inner

    batch = _prepare(
        make_chain,
        items,
        tools=tools,
        system=system,
        output_type=output_type,
        concurrency=concurrency,
        ordered=ordered,
        progress=progress,
        results_path=results_path,
        rate_limit=rate_limit,
        max_turns=max_turns,
        chain_options=chain_options,
    )
    return BatchRunSync(model, batch)
