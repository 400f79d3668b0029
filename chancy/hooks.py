"""The one place plugin hooks are called.

Every hook has a do-nothing default on ``Plugin`` (it raises ``NotImplementedError``); the
plugins that override a hook are listed once per set of plugins, so the hot path skips the
rest without a call. Hooks are called with keyword arguments, which suits both chancy's
signatures and Chancy 0.26's (whose worker hooks are keyword-only).

Where each hook runs on a job's route (see docs/architecture.md):
- ``on_push``: every push form, in the pusher's thread, before encoding (``push``);
- ``on_jobs_starting`` (or ``on_job_starting`` per job): once per claim batch, in the
  producer, before the jobs reach the executor (``starting``);
- ``on_job_completed``: per run, as its outcome is reported (``completed``);
- ``on_jobs_updated_in_transaction``: once per written batch, inside its transaction, and
  ``on_job_updated``: once per accepted update, after the commit (completer).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from chancy.outcome import Delayed
from chancy.plugin import plugins_with

if TYPE_CHECKING:
    from chancy.app import Chancy
    from chancy.job import Job, QueuedJob
    from chancy.plugin import Plugin
    from chancy.worker import Worker

log = logging.getLogger("chancy.hooks")

HOOKS = (
    "on_push",
    "on_job_starting",
    "on_jobs_starting",
    "on_job_completed",
    "on_jobs_updated_in_transaction",
    "on_job_updated",
    "on_worker_started",
    "on_worker_stopped",
)


class Hooks:
    """Calls the plugins of ``plugins`` (an app's plugin mapping) that implement each hook."""

    __slots__ = ("_cache", "_key", "_plugins")

    def __init__(self, plugins: Mapping[str, Plugin]) -> None:
        self._plugins = plugins
        self._key: tuple[Any, ...] | None = None
        self._cache: dict[str, list[Any]] = {}

    def implementing(self, hook: str) -> list[Any]:
        """The plugins that override ``hook``, recomputed only when the plugins change."""
        key = tuple(self._plugins.values())
        if key != self._key:
            self._key = key
            self._cache = {name: plugins_with(key, name) for name in HOOKS}
        return self._cache[hook]

    def any(self, hook: str) -> bool:
        return bool(self.implementing(hook))

    # -- pushing ----------------------------------------------------------------------

    def push(self, jobs: list[Job], chancy: Chancy) -> list[Job]:
        for plugin in self.implementing("on_push"):
            try:
                jobs = list(plugin.on_push(jobs, chancy=chancy))
            except NotImplementedError:
                continue
        return jobs

    # -- running ----------------------------------------------------------------------

    async def starting(
        self,
        jobs: list[QueuedJob],
        worker: Worker,
        failed: list[tuple[QueuedJob, BaseException]] | None = None,
    ) -> list[QueuedJob]:
        """Let plugins adjust a claimed batch before it runs (a finished state skips the run).

        Plugins run in their installed order; one with the batch form (``on_jobs_starting``)
        gets the whole batch in one call, the others each job. With ``failed`` given, a
        plugin that raises takes the jobs it was given out of the batch (every job of a batch
        call, the one job of a single call): they go to ``failed`` with the error, for the
        worker to fail their attempt, instead of the error stopping the whole claim.
        """
        batched = self.implementing("on_jobs_starting")
        single = self.implementing("on_job_starting")
        if not batched and not single:
            return jobs
        for plugin in self._plugins.values():
            if not jobs:
                break
            if plugin in batched:
                try:
                    jobs = list(await plugin.on_jobs_starting(jobs=jobs, worker=worker))
                    continue
                except NotImplementedError:
                    pass
                except Exception as exc:
                    if failed is None:
                        raise
                    log.exception("on_jobs_starting of %r failed for %d job(s)", plugin, len(jobs))
                    failed.extend((job, exc) for job in jobs)
                    return []
            if plugin in single:
                adjusted = []
                for job in jobs:
                    try:
                        job = await plugin.on_job_starting(job=job, worker=worker)
                    except NotImplementedError:
                        pass
                    except Exception as exc:
                        if failed is None:
                            raise
                        log.exception("on_job_starting of %r failed for job %s", plugin, job.id)
                        failed.append((job, exc))
                        continue
                    adjusted.append(job)
                jobs = adjusted
        return jobs

    async def completed(
        self,
        job: QueuedJob,
        exc: BaseException | None,
        result: Any,
        worker: Worker,
        plugins: list[Any] | None = None,
    ) -> tuple[QueuedJob, float | None, bool]:
        """Let plugins adjust a run's next state.

        Returns ``(job, delay, changed)``: ``delay`` is set when a plugin returned
        ``Delayed`` (seconds after the database's now), ``changed`` when any plugin returned
        a different job. ``plugins``: ``implementing("on_job_completed")``, when the caller
        has it already.
        """
        delay: float | None = None
        changed = False
        if plugins is None:
            plugins = self.implementing("on_job_completed")
        for plugin in plugins:
            try:
                new = await plugin.on_job_completed(job=job, worker=worker, exc=exc, result=result)
            except NotImplementedError:
                continue
            except Exception:
                # The run's outcome is still written (as the other plugins leave it): a
                # failing plugin must not leave the job running under a live worker.
                log.exception("on_job_completed of %r failed for job %s", plugin, job.id)
                continue
            if isinstance(new, Delayed):
                job, delay, changed = new.job, max(0.0, float(new.delay)), True
            elif new is not None and new is not job:
                job, changed = new, True
        return job, delay, changed

    # -- writing ----------------------------------------------------------------------

    async def in_transaction(self, jobs: list[QueuedJob], cursor: Any, worker: Worker) -> None:
        for plugin in self.implementing("on_jobs_updated_in_transaction"):
            try:
                await plugin.on_jobs_updated_in_transaction(worker=worker, cursor=cursor, jobs=jobs)
            except NotImplementedError:
                continue

    async def updated(self, jobs: Iterable[QueuedJob], worker: Worker) -> None:
        """After a batch committed: each accepted update, in order (failures are logged)."""
        plugins = self.implementing("on_job_updated")
        if not plugins:
            return
        for job in jobs:
            for plugin in plugins:
                try:
                    await plugin.on_job_updated(worker=worker, job=job)
                except NotImplementedError:
                    continue
                except Exception:
                    log.exception("on_job_updated of %r failed for job %s", plugin, job.id)

    # -- the worker's life ------------------------------------------------------------

    async def worker_started(self, worker: Worker) -> None:
        for plugin in self.implementing("on_worker_started"):
            try:
                await plugin.on_worker_started(worker=worker)
            except NotImplementedError:
                continue

    async def worker_stopped(self, worker: Worker) -> None:
        for plugin in self.implementing("on_worker_stopped"):
            try:
                await plugin.on_worker_stopped(worker=worker)
            except NotImplementedError:
                continue
            except Exception:
                log.exception("on_worker_stopped of %r failed", plugin)
