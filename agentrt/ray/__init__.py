"""Batches on a Ray cluster (the ``ray`` extra): the same records as local batches.

``run_batch(spec, items, ...)`` runs one chain per item on long-lived async Ray actors.
Only the :class:`ChainSpec` and the items travel to the cluster (cloudpickle); each worker
builds its own ``AsyncModel`` (one connection pool) and its tools (``tools_factory()``:
clients, pools and locks cannot be pickled). API keys are read from the workers'
environment: the environment the cluster was started with, or ``runtime_env=
{"env_vars": ...}``. ``ChainSpec`` refuses an ``api_key`` option, so a key is never put in
the object store.

Workers are asyncio actors: Ray actors run one asyncio event loop each and have no trio
(the driver side, this module, runs on asyncio and trio). Each runs up to ``per_actor``
chains at once; the driver keeps at most ``actors * per_actor`` items in flight. When a
worker dies, its in-flight items go to another worker, up to ``max_attempts`` runs in
all, and their records say which ``attempt`` produced them: a tool with side effects may
then have run twice for one item.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from types import ModuleType
from typing import TYPE_CHECKING, Any

import anyio
import anyio.from_thread

from ..batch._chainrun import revive_output, run_item
from ..batch._items import BatchItem
from ..batch._pace import RateLimit
from ..batch._progress import ProgressOption
from ..batch._result import BatchResult
from ..batch._run import BatchRun, check_batch_options, iterate_in_portal
from ..errors import UsageError
from ..providers import provider_class

if TYPE_CHECKING:
    from ._pool import WorkerPool

__all__ = ["ChainSpec", "RayBatchRun", "run_batch", "start_local"]

logger = logging.getLogger("agentrt")

#: Environment of a local cluster started by :func:`start_local`: every listener on
#: 127.0.0.1, no token written to the home directory, no usage statistics sent. Ray reads
#: the first when it is imported, so these are set before this module imports it.
LOCAL_CLUSTER_ENV = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_AUTH_MODE": "disabled",
    "RAY_USAGE_STATS_ENABLED": "0",
}

_SECRET_OPTIONS = ("api_key", "key", "token", "secret", "password", "authorization")


@dataclasses.dataclass(frozen=True)
class ChainSpec:
    """What every chain of a Ray batch is: sent to the workers, so it must pickle.

    Attributes:
        model_id: e.g. ``"openai:gpt-4.1-mini"``; the key comes from the workers'
            environment (``OPENAI_API_KEY``, ...).
        options: options of ``get_async_model`` (``base_url``, ``timeout``,
            ``max_retries``, generation defaults), never a key.
        tools_factory: called once in each worker to build the tools (a module-level
            function or a ``functools.partial`` of one).
        system: the system prompt.
        output_type: the type each answer is validated into (``record.output``).
        max_turns: the turn limit of each chain.
    """

    model_id: str
    options: dict[str, Any] | None = None
    tools_factory: Callable[[], Iterable[Any]] | None = None
    system: str | None = None
    output_type: Any = None
    max_turns: int = 10

    def __post_init__(self) -> None:
        if not isinstance(self.model_id, str) or not self.model_id:
            raise UsageError(
                f"ChainSpec(model_id=...) takes a model id string, got {self.model_id!r}"
            )
        provider_class(self.model_id)  # UnknownModelError now, not in every worker
        if self.options is not None and not isinstance(self.options, dict):
            raise UsageError(f"ChainSpec(options=...) takes a dict, got {self.options!r}")
        secret = [k for k in self.options or {} if any(s in k.lower() for s in _SECRET_OPTIONS)]
        if secret:
            raise UsageError(
                f"ChainSpec(options=...) must not hold credentials ({', '.join(secret)}): the "
                "spec is stored in Ray's object store. Set the key in the workers' "
                "environment instead, e.g. run_batch(..., runtime_env={'env_vars': "
                "{'OPENAI_API_KEY': ...}}), or start the cluster with it set"
            )
        if self.tools_factory is not None and not callable(self.tools_factory):
            raise UsageError(
                f"ChainSpec(tools_factory=...) takes a callable returning tools, got "
                f"{self.tools_factory!r}"
            )
        if self.system is not None and not isinstance(self.system, str):
            raise UsageError(f"ChainSpec(system=...) takes a string, got {self.system!r}")
        if (
            isinstance(self.max_turns, bool)
            or not isinstance(self.max_turns, int)
            or self.max_turns < 1
        ):
            raise UsageError(
                f"ChainSpec(max_turns=...) must be a positive integer, got {self.max_turns!r}"
            )


def _import_ray(*, local_cluster: bool) -> ModuleType:
    """Import ray; for a local cluster, with :data:`LOCAL_CLUSTER_ENV` set first."""
    if local_cluster:
        if "ray" in sys.modules and os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER") != "0":
            logger.warning(
                "ray was imported before agentrt started the local cluster, so its listeners "
                "bind every interface, not only 127.0.0.1; set "
                "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 before importing ray to avoid it"
            )
        for name, value in LOCAL_CLUSTER_ENV.items():
            os.environ.setdefault(name, value)
    import ray

    return ray


def start_local(num_cpus: int | None = None) -> None:
    """Start a local Ray cluster bound to 127.0.0.1 for this process (blocking, seconds).

    Sets the variables of :data:`LOCAL_CLUSTER_ENV` that are not set already, before
    importing ray. The cluster inherits this process's environment, API keys included.
    """
    ray = _import_ray(local_cluster=True)
    ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)


class RayBatchRun(BatchRun):
    """A Ray batch: ``async for`` (asyncio or trio) or plain ``for`` over its records.

    ``summary`` holds the totals; ``actors`` the live worker handles (once started).
    """

    def __init__(self, pool: WorkerPool, *args: Any, **kwargs: Any) -> None:
        super().__init__(pool, *args, **kwargs)
        self._pool = pool

    @property
    def actors(self) -> list[Any]:
        """The live worker actors."""
        return self._pool.live_actors()

    def __iter__(self) -> Iterator[BatchResult]:
        with anyio.from_thread.start_blocking_portal() as portal:
            yield from iterate_in_portal(portal, self)


def run_batch(
    spec: ChainSpec,
    items: Iterable[Any] | Any,
    *,
    actors: int | None = None,
    per_actor: int = 64,
    ordered: bool = True,
    address: str | None = None,
    max_attempts: int = 2,
    results_path: str | os.PathLike[str] | None = None,
    rate_limit: RateLimit | None = None,
    progress: ProgressOption = None,
    runtime_env: dict[str, Any] | None = None,
) -> RayBatchRun:
    """Run one chain per item on Ray actors; iterate the records as with local batches.

    Args:
        spec: the chain every item runs.
        items: as for :func:`agentrt.run_batch`: prompts, message lists, or dicts with a
            ``prompt``, an optional ``id`` and per-item chain options (they must pickle).
        actors: how many worker actors (each takes 1 CPU); default: the cluster's CPUs.
        per_actor: chains each worker runs at once.
        ordered: yield in input order (``True``) or as chains finish.
        address: the cluster to connect to (``"auto"``, ``"ray://host:10001"``, ...) when
            this process is not connected yet; ``None`` starts a local cluster on
            127.0.0.1 for the batch (:func:`start_local`).
        max_attempts: runs of an item at most when workers die under it.
        results_path: the JSON Lines results file (resume), as locally.
        rate_limit: requests and tokens per minute shared by every worker.
        progress: ``True`` for a bar on stderr, or a callable, as locally.
        runtime_env: the workers' Ray runtime environment (e.g. ``{"env_vars": {...}}``
            for API keys on a cluster started without them).

    Returns:
        A :class:`RayBatchRun`.

    Raises:
        UsageError: a parameter is wrong, or the spec does not pickle.
    """
    if not isinstance(spec, ChainSpec):
        raise UsageError(f"agentrt.ray.run_batch() takes a ChainSpec first, got {spec!r}")
    if actors is not None and (
        isinstance(actors, bool) or not isinstance(actors, int) or actors < 1
    ):
        raise UsageError(f"actors= must be a positive integer or None, got {actors!r}")
    if not _is_positive_int(max_attempts):
        raise UsageError(f"max_attempts= must be a positive integer, got {max_attempts!r}")
    if address is not None and not isinstance(address, str):
        raise UsageError(f"address= takes a cluster address string, got {address!r}")
    if runtime_env is not None and not isinstance(runtime_env, dict):
        raise UsageError(f"runtime_env= takes a dict, got {runtime_env!r}")
    path = check_batch_options(
        items,
        concurrency=per_actor,
        ordered=ordered,
        progress=progress,
        results_path=results_path,
        rate_limit=rate_limit,
        max_turns=spec.max_turns,
        concurrency_name="per_actor",
    )
    ray = _import_ray(local_cluster=address is None and "ray" not in sys.modules)
    try:
        ray.cloudpickle.dumps(spec)
    except Exception as exc:
        raise UsageError(
            f"the ChainSpec must pickle to reach the workers, and it does not: {exc}; build "
            "clients and other resources inside tools_factory, not before"
        ) from exc
    from ._pool import WorkerPool

    pool = WorkerPool(
        spec,
        actors=actors,
        per_actor=per_actor,
        max_attempts=max_attempts,
        address=address,
        rate_limit=rate_limit,
        runtime_env=runtime_env,
        start_local=functools.partial(start_local, None),
        local_item=_run_locally,
    )
    return RayBatchRun(
        pool,
        items,
        concurrency=pool.capacity_hint(),
        ordered=ordered,
        results_path=path,
        progress=progress,
        revive=revive_output(spec.output_type),
    )


def _is_positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


async def _run_locally(item: BatchItem) -> BatchResult:
    """The record of an item that cannot be run (its ``problem``), made on the driver."""
    return await run_item(_no_chain, item, {})


def _no_chain(*args: Any, **kwargs: Any) -> Any:  # pragma: no cover - never called
    raise AssertionError("an item with a problem is never run")
