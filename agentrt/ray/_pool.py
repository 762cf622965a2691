"""The driver's side of a Ray batch: the worker actors, and waiting for their results.

``WorkerPool`` is the batch engine's executor. It connects to (or starts) the cluster,
creates the workers and the shared pacer, sends each item to the least busy live worker,
and resubmits the items of a worker that died, up to ``max_attempts`` runs. A dead worker
is replaced, so the pool keeps its size (at most ``actors * max_attempts`` replacements).

Object refs are awaited by one background task that calls ``ray.wait`` in a worker
thread, so the driver runs on any anyio backend (asyncio or trio) and never blocks its
event loop.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.to_thread
import ray
from ray.exceptions import RayActorError, RayTaskError

from ..batch._items import BatchItem
from ..batch._pace import RateLimit
from ..batch._result import BatchResult
from ..errors import UsageError

__all__ = ["WorkerPool"]

#: Set in every worker's environment (see ``WorkerPool._new_worker``).
_WORKER_ENV = {"RAY_USE_UVLOOP": "0"}

#: How long one ``ray.wait`` call in the waiter thread may block.
_WAIT_SLICE = 0.05


class _Slot:
    __slots__ = ("done", "error", "value")

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.value: Any = None
        self.error: BaseException | None = None


class _Waiter:
    """Awaits many object refs with one ``ray.wait`` loop in a worker thread."""

    def __init__(self) -> None:
        self._pending: dict[Any, _Slot] = {}
        self._wake = anyio.Event()

    async def result(self, ref: Any) -> Any:
        """Wait for ``ref`` and return its value (or raise its error)."""
        slot = self._pending[ref] = _Slot()
        self._wake.set()
        try:
            await slot.done.wait()
        finally:
            self._pending.pop(ref, None)
        if slot.error is not None:
            raise slot.error
        return slot.value

    async def serve(self) -> None:
        """Deliver results as they become ready; runs until cancelled."""
        while True:
            if not self._pending:
                await self._wake.wait()
                self._wake = anyio.Event()
                continue
            refs = list(self._pending)
            ready = await anyio.to_thread.run_sync(_wait_ready, refs)
            if not ready:
                continue
            outcomes = await anyio.to_thread.run_sync(_get_each, ready)
            for ref, (value, error) in zip(ready, outcomes, strict=True):
                slot = self._pending.pop(ref, None)
                if slot is not None:
                    slot.value, slot.error = value, error
                    slot.done.set()


def _wait_ready(refs: list[Any]) -> list[Any]:
    ready, rest = ray.wait(refs, num_returns=1, timeout=_WAIT_SLICE)
    if ready and rest:
        more, _ = ray.wait(rest, num_returns=len(rest), timeout=0)
        ready.extend(more)
    return list(ready)


def _get_each(refs: list[Any]) -> list[tuple[Any, BaseException | None]]:
    outcomes: list[tuple[Any, BaseException | None]] = []
    for ref in refs:
        try:
            outcomes.append((ray.get(ref), None))
        except Exception as exc:  # noqa: PERF203 - one outcome per ref
            outcomes.append((None, exc))
    return outcomes


class WorkerPool:
    """Runs batch items on Ray worker actors (see the module docstring)."""

    def __init__(
        self,
        spec: Any,
        *,
        actors: int | None,
        per_actor: int,
        max_attempts: int,
        address: str | None,
        rate_limit: RateLimit | None,
        runtime_env: dict[str, Any] | None,
        start_local: Callable[[], None],
        local_item: Callable[[BatchItem], Awaitable[BatchResult]],
    ) -> None:
        self._spec = spec
        self._actors_wanted = actors
        self._per_actor = per_actor
        self._max_attempts = max_attempts
        self._address = address
        self._rate_limit = rate_limit
        self._runtime_env = runtime_env
        self._start_local = start_local
        self._local_item = local_item
        self._waiter = _Waiter()
        self._busy: dict[Any, int] = {}  # live actor -> items in flight
        self._replacements = 0
        self._pacer: Any = None
        self._started_ray = False
        self._spec_ref: Any = None

    def capacity_hint(self) -> int:
        """The in-flight limit before the pool knows its size."""
        return self._per_actor * (self._actors_wanted or 1)

    def live_actors(self) -> list[Any]:
        """The workers alive now."""
        return list(self._busy)

    # --- the engine's executor interface ------------------------------------------------

    async def start(self) -> int:
        """Connect, create the workers, wait until they are ready; return the capacity.

        Raises:
            UsageError: a worker could not build the model or the tools from the spec.
        """
        await anyio.to_thread.run_sync(self._connect)
        cpus = ray.cluster_resources().get("CPU", 1)  # type: ignore[no-untyped-call]
        count = self._actors_wanted or max(1, int(cpus))
        if self._rate_limit is not None:
            from ._worker import SharedPacer

            self._pacer = SharedPacer.remote(self._rate_limit)
        self._spec_ref = ray.put(self._spec)
        workers = [self._new_worker() for _ in range(count)]
        try:
            await anyio.to_thread.run_sync(ray.get, [w.ready.remote() for w in workers])
        except RayTaskError as exc:
            raise UsageError(
                f"the Ray workers could not build the chain from the ChainSpec: {exc.cause!r}"
            ) from exc.cause
        except RayActorError as exc:
            raise UsageError(
                "the Ray workers could not start; a ChainSpec whose tools_factory or "
                "output_type lives in a module the workers cannot import does this (ship it "
                f"with runtime_env=...): {_first_line(exc)}"
            ) from exc
        for worker in workers:
            self._busy[worker] = 0
        return count * self._per_actor

    async def serve(self) -> None:
        """Deliver the workers' results (a background task of the batch)."""
        await self._waiter.serve()

    async def stop(self) -> None:
        """Close and release the workers; shut Ray down if the batch started it."""
        actors, self._busy = list(self._busy), {}
        if self._pacer is not None:
            actors.append(self._pacer)
        await anyio.to_thread.run_sync(self._release, actors)

    async def __call__(self, item: BatchItem) -> BatchResult:
        """Run ``item`` on a worker; resubmit it when the worker dies under it."""
        if item.problem is not None:
            return await self._local_item(item)
        attempt = 1
        while True:
            worker = self._pick()
            if worker is None:
                return _failed(item, attempt, "ActorDiedError", "no live Ray worker is left")
            self._busy[worker] += 1
            ref = worker.run.remote(item.index, item.prompt, item.options, item.key, attempt)
            try:
                record: BatchResult = await self._waiter.result(ref)
            except RayActorError as exc:
                self._lost(worker)
                if attempt >= self._max_attempts:
                    return _failed(item, attempt, type(exc).__name__, _first_line(exc))
                attempt += 1
                continue
            except RayTaskError as exc:  # the worker's own code failed: not retried
                cause = exc.cause if exc.cause is not None else exc
                return _failed(item, attempt, type(cause).__name__, _first_line(cause))
            finally:
                if worker in self._busy:
                    self._busy[worker] -= 1
            return dataclasses.replace(record, input=item.input)

    # --- workers -----------------------------------------------------------------------

    def _connect(self) -> None:
        if ray.is_initialized():
            return
        self._started_ray = True
        if self._address is None:
            self._start_local()
        else:
            ray.init(address=self._address, log_to_driver=False)

    def _new_worker(self) -> Any:
        from ._worker import BatchWorker

        runtime_env = dict(self._runtime_env or {})
        # Ray runs async actors on uvloop when it is installed, and the transport in
        # main (agentrt/_conn.py) passes happy_eyeballs_delay, which uvloop refuses: the
        # workers use the standard asyncio loop. Drop this once the new transport that
        # runs on uvloop is merged.
        runtime_env["env_vars"] = {**_WORKER_ENV, **runtime_env.get("env_vars", {})}
        options: dict[str, Any] = {"max_concurrency": self._per_actor, "runtime_env": runtime_env}
        return BatchWorker.options(**options).remote(self._spec_ref, self._pacer, self._rate_limit)

    def _pick(self) -> Any:
        if not self._busy:
            return None
        return min(self._busy, key=self._busy.__getitem__)

    def _lost(self, worker: Any) -> None:
        if self._busy.pop(worker, None) is None:
            return  # another item already reported this worker's death
        limit = (self._actors_wanted or len(self._busy) + 1) * self._max_attempts
        if self._replacements < limit:
            self._replacements += 1
            self._busy[self._new_worker()] = 0

    def _release(self, actors: list[Any]) -> None:
        for actor in actors:
            try:
                ray.kill(actor)
            except Exception:  # noqa: PERF203 - already dead or gone with the cluster
                pass
        if self._started_ray:
            ray.shutdown()


def _failed(item: BatchItem, attempt: int, error_type: str, error: str) -> BatchResult:
    return BatchResult(
        item.index,
        item.input,
        "failed",
        error_type=error_type,
        error=error,
        attempt=attempt,
        key=item.key,
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
