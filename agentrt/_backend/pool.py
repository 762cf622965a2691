"""agentrt's process-wide pool of worker threads for sync tools.

Daemon threads wait on one ``SimpleQueue``; a thread is started only when no idle one is
left, so the threads busy at once never outnumber the jobs submitted (which the callers'
limiter tokens bound); an idle thread exits after :data:`IDLE_SECONDS`.

A job is ``(run, *args)``: the worker calls ``run(pool, *args)``, which runs the tool, calls
:meth:`Pool.ready` and returns ``(report, outcome)``; the worker drops the job and then
calls ``report(*outcome)``, which hands the outcome to the event loop that waits for it.
The pool knows nothing of any event loop: the asyncio and trio hops bring their own
``run`` and ``report``.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["IDLE_SECONDS", "Pool", "current_pool"]

#: Seconds an idle worker thread waits for work before it exits.
IDLE_SECONDS = 10.0

#: ``run(pool, *args) -> (report, outcome)``: what a worker does with one job.
Job = tuple[Any, ...]


class Pool:
    """Daemon worker threads fed by one queue; ``idle`` counts those free to take a job."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[Job] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0

    def submit(self, job: Job) -> None:
        """Queue ``job`` (``(run, *args)``), starting a thread when none is idle."""
        with self._lock:
            start = self._idle == 0
            if not start:
                self._idle -= 1  # that idle thread is now promised to this job
        self._jobs.put(job)
        if start:
            threading.Thread(target=self._work, name="agentrt worker", daemon=True).start()

    def _work(self) -> None:
        jobs = self._jobs
        while True:
            try:
                job = jobs.get(timeout=IDLE_SECONDS)
            except queue.Empty:
                with self._lock:
                    if self._idle > 0:  # no job is promised to the idle threads: leave
                        self._idle -= 1
                        return
                continue  # a job was promised to an idle thread: take it
            run: Callable[..., tuple[Callable[..., None], tuple[Any, ...]]] = job[0]
            report, outcome = run(self, *job[1:])
            # Drop the job (the tool, its arguments, the context) before the result is
            # reported: once the loop has it, the chain may end, and must owe this thread
            # nothing.
            del job, run
            report(*outcome)
            del report, outcome

    def ready(self) -> None:
        """Count the calling worker as idle, before it reports its result.

        So the job that the freed limiter token lets in finds this thread idle, and no
        extra thread is started.
        """
        with self._lock:
            self._idle += 1


_pool = Pool()


def current_pool() -> Pool:
    """The process's pool (a fresh one in a forked child)."""
    return _pool


def _reset_after_fork() -> None:
    # A forked child has none of the parent's threads: a pool that counted idle ones
    # would queue jobs nobody takes.
    global _pool
    _pool = Pool()


os.register_at_fork(after_in_child=_reset_after_fork)
