"""WorkflowPlugin: stores workflows and, on the leader, queues each step when it is ready.

How the leader advances workflows (read before changing it):

* **Step state.** Each step row records what the leader last saw: NULL until its job is
  queued, ``pending`` until that job finishes, then ``succeeded`` or ``failed``. Readiness is
  decided from these rows alone, so a workflow never stalls on a pruned job. (The results a
  step receives are read from its dependencies' jobs, so those jobs must not be pruned while
  their workflow runs; DESIGN.md makes that the pruner's rule.)
* **A pass** is one transaction, fenced by the leader's lease (see ``workflow_lease`` in
  ``sql/workflow.sql``): record finished step jobs (``workflow_sync_jobs``), lock the affected
  workflows and finish those that are done (``workflow_settle``: failed as soon as one step
  failed, completed when all succeeded), select the steps whose dependencies all succeeded
  (``workflow_ready``), push their jobs in batches and record the job ids (``workflow_queued``).
  A fixed handful of statements per pass, whatever the number of steps: a 1,000-step fan-out
  is one multi-row insert. Everything a pass changes is locked with ``SKIP LOCKED``, so a step
  is queued once even if two passes overlap, and a leader killed mid-pass leaves nothing
  behind: its transaction rolls back and the next leader redoes the work.
* **What wakes a pass.** ``job.finished`` notifications (the hub re-emits them) name the
  finished jobs; if any of them is the job of an unfinished step (one indexed read) a pass runs
  for just those. ``workflow.created`` wakes a pass for the new workflow. Every
  ``poll_interval`` a full pass looks at every unfinished workflow, page by page, so nothing
  depends on a notification arriving.
* **Failure.** A step whose job ends ``failed`` (every attempt used, cancelled, or failed by
  recovery) fails its workflow at once; steps not yet queued are never queued. Steps already
  running finish on their own. A job that fails an attempt but has attempts left is not a
  failure: its step waits for the final outcome. A step whose job disappears before it
  finished (purged) counts as failed. Retrying a failed job later does not revive its
  workflow: push the workflow again.

A step's job carries ``meta["workflow"] = {"id", "step", "dependencies"}`` (the ids of the
steps it depends on). When it starts, the worker fills ``QueuedJob.dependencies`` (step id ->
stored result) with at most one query, only for steps that have dependencies; results of
succeeded steps are final, so each worker process keeps small ones (up to 64 KiB stored, 4,096
of them) and a fan-out's steps, which all read the same results, do not query again. Other
jobs pay one dictionary look-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterable
from datetime import timedelta
from typing import TYPE_CHECKING, Any, LiteralString

from chancy import events
from chancy.errors import ConfigurationError
from chancy.job import QueuedJob
from chancy.plugin import Plugin, PluginScope
from chancy.plugins.leadership import lease_params
from chancy.plugins.workflow import store
from chancy.plugins.workflow.advance import PassResult, pass_plan
from chancy.plugins.workflow.client import UNFENCED, WorkflowClient
from chancy.rule import Condition, JobRules, Op

if TYPE_CHECKING:
    from chancy.app import Chancy
    from chancy.worker import Worker

log = logging.getLogger("chancy.workflow")


#: Events (hub and NOTIFY) of this plugin.
CREATED = events.WORKFLOW_CREATED
UPDATED = events.WORKFLOW_UPDATED
FINISHED = events.WORKFLOW_FINISHED

#: Dependency results kept by each worker process: how many, and the largest stored size.
_CACHE_ENTRIES = 4096
_CACHE_MAX_SIZE = 64 * 1024

#: More finished-job ids than this waiting for a pass turn it into a full pass.
_MAX_TRACKED_IDS = 20_000


class _Unset:
    def __repr__(self) -> str:
        return "<unset>"


_UNSET: Any = _Unset()


def _one_of(ours: str, ours_value: Any, theirs: str, theirs_value: Any, default: Any) -> Any:
    """The value of a setting that chancy and Chancy 0.26 name differently; both is an error."""
    if ours_value is not _UNSET and theirs_value is not _UNSET:
        raise ConfigurationError(
            f"WorkflowPlugin got both {ours}= and {theirs}= (Chancy 0.26's name for it);"
            f" give only one"
        )
    if ours_value is not _UNSET:
        return ours_value
    return default if theirs_value is _UNSET else theirs_value


def _retention_of(rule: Any) -> Any:
    """The retention (seconds) that Chancy 0.26's ``pruning_rule`` asks for."""
    if rule is _UNSET or rule is None:
        return _UNSET
    if (
        isinstance(rule, Condition)
        and isinstance(rule.rule, JobRules.Age)
        and rule.op in (Op.GT, Op.GE)
    ):
        value = rule.value
        return value.total_seconds() if isinstance(value, timedelta) else float(value)
    raise ConfigurationError(
        f"WorkflowPlugin(pruning_rule={rule!r}): chancy deletes finished workflows by how long"
        " ago they finished, so only WorkflowPlugin.Rules.Age() > seconds is accepted; or give"
        " retention=seconds (None keeps them)"
    )


class WorkflowPlugin(WorkflowClient, Plugin):
    """DAGs of jobs, advanced by the leader (a default plugin).

    :param poll_interval: seconds between full passes over every unfinished workflow (passes
        also run at once on notifications, so this only bounds the delay without them);
        default 1.
    :param retention: seconds a finished (completed or failed) workflow is kept, counted from
        when it finished, before the pruner's cleanup deletes it with its steps (their jobs are
        the pruner's); None keeps them for ever; default 86400.
    :param max_steps_per_pass: steps queued per transaction; more ready steps take more passes.
    :param batch_size: workflows per transaction in a full pass, and per cleanup statement;
        default 500.

    Chancy 0.26's keywords are accepted too: ``polling_interval`` (``poll_interval``),
    ``max_workflows_per_run`` (``batch_size``), ``pruning_rule`` (only of the form
    ``WorkflowPlugin.Rules.Age() > seconds``, which sets ``retention``; the age counts from
    when the workflow finished, not from when it was created) and ``max_pending_workflows``
    (how many finished jobs a leader tracks between passes before it runs a full pass
    instead).
    """

    class Rules:
        """Rules of Chancy 0.26's ``pruning_rule``."""

        class Age(JobRules.Age):
            """Seconds since the workflow finished (see the class's ``pruning_rule``)."""

            def __repr__(self) -> str:
                return "WorkflowPlugin.Rules.Age()"

    def __init__(
        self,
        *,
        poll_interval: float = _UNSET,
        retention: float | None = _UNSET,
        max_steps_per_pass: int = 5000,
        batch_size: int = _UNSET,
        polling_interval: float = _UNSET,
        max_workflows_per_run: int = _UNSET,
        pruning_rule: Any = _UNSET,
        max_pending_workflows: int = _MAX_TRACKED_IDS,
    ) -> None:
        super().__init__()
        poll_interval = _one_of(
            "poll_interval", poll_interval, "polling_interval", polling_interval, 1
        )
        batch_size = _one_of(
            "batch_size", batch_size, "max_workflows_per_run", max_workflows_per_run, 500
        )
        retention = _one_of(
            "retention", retention, "pruning_rule", _retention_of(pruning_rule), 86400
        )
        if isinstance(poll_interval, bool) or not isinstance(poll_interval, int | float):
            raise ConfigurationError(
                f"WorkflowPlugin(poll_interval={poll_interval!r}) must be seconds"
            )
        if poll_interval <= 0:
            raise ConfigurationError(f"WorkflowPlugin(poll_interval={poll_interval!r}) must be > 0")
        if retention is not None and (
            isinstance(retention, bool) or not isinstance(retention, int | float) or retention < 0
        ):
            raise ConfigurationError(
                f"WorkflowPlugin(retention={retention!r}) must be seconds (>= 0) or None"
            )
        for name, value in (
            ("max_steps_per_pass", max_steps_per_pass),
            ("batch_size", batch_size),
            ("max_pending_workflows", max_pending_workflows),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigurationError(f"WorkflowPlugin({name}={value!r}) must be an int >= 1")
        self.max_pending_workflows = max_pending_workflows
        self.poll_interval = float(poll_interval)
        self.retention = None if retention is None else float(retention)
        self.max_steps_per_pass = max_steps_per_pass
        self.batch_size = batch_size
        self._wakers: set[asyncio.Event] = set()
        #: (prefix, workflow id, step id) -> result of a succeeded step, least recent first.
        self._results: OrderedDict[tuple[str, uuid.UUID, str], Any] = OrderedDict()

    @classmethod
    def get_identifier(cls) -> str:
        # Chancy 0.26's identifier: code looks the plugin up as
        # chancy.plugins["chancy.workflow_plugin"].
        return "chancy.workflow_plugin"

    @classmethod
    def get_scope(cls) -> PluginScope:
        return PluginScope.LEADER

    def migrate_key(self) -> str | None:
        return "workflow"

    def migrate_package(self) -> str | None:
        return "chancy.plugins.workflow.migrations"

    def api_plugin(self) -> str | None:
        """The dashboard's routes and page for this plugin (Chancy 0.26's hook)."""
        return "chancy.plugins.workflow.api.WorkflowApiPlugin"

    def wake_up(self) -> None:
        super().wake_up()
        for event in self._wakers:
            event.set()

    # -- a step's dependencies' results ---------------------------------------------------

    async def on_jobs_starting(self, *, jobs: list[QueuedJob], worker: Worker) -> list[QueuedJob]:
        """Give each step of a claimed batch its dependencies' results, read in one statement
        for the whole batch (small succeeded results are cached for a fan-out's siblings)."""
        prefix = worker.chancy.prefix
        steps: dict[int, tuple[uuid.UUID, list[str]]] = {}
        for index, job in enumerate(jobs):
            marker = job.meta.get("workflow") if job.meta else None
            if not isinstance(marker, dict):
                continue
            wanted = marker.get("dependencies")
            if not wanted or not isinstance(wanted, list):
                continue
            try:
                steps[index] = (uuid.UUID(str(marker["id"])), [str(w) for w in wanted])
            except (KeyError, ValueError):
                continue
        if not steps:
            return jobs
        found: dict[tuple[uuid.UUID, str], Any] = {}
        missing: set[tuple[uuid.UUID, str]] = set()
        for workflow_id, wanted in steps.values():
            for step_id in wanted:
                key = (prefix, workflow_id, step_id)
                if key in self._results:
                    self._results.move_to_end(key)
                    found[(workflow_id, step_id)] = self._results[key]
                else:
                    missing.add((workflow_id, step_id))
        if missing:
            pairs = sorted(missing)
            spec = store.results(prefix, [p[0] for p in pairs], [p[1] for p in pairs])
            rows: list[dict[str, Any]] = await worker.chancy.db.run(spec)
            for row in rows:
                pair = (row["workflow_id"], row["step_id"])
                found[pair] = row["result"]
                # A succeeded step's result is final: keep small ones for its other dependents
                # (a fan-out's steps all read the same results).
                if row["state"] == "succeeded" and (row["size"] or 0) <= _CACHE_MAX_SIZE:
                    self._results[(prefix, *pair)] = row["result"]
            while len(self._results) > _CACHE_ENTRIES:
                self._results.popitem(last=False)
        adjusted = list(jobs)
        for index, (workflow_id, wanted) in steps.items():
            ordered = {
                step_id: found[(workflow_id, step_id)]
                for step_id in wanted
                if (workflow_id, step_id) in found
            }
            adjusted[index] = dataclasses.replace(jobs[index], dependencies=ordered)
        return adjusted

    async def on_job_starting(self, *, job: QueuedJob, worker: Worker) -> QueuedJob:
        """One job's form of :meth:`on_jobs_starting` (Chancy 0.26's hook)."""
        return (await self.on_jobs_starting(jobs=[job], worker=worker))[0]

    # -- the leader's service -------------------------------------------------------------

    async def run(self, worker: Worker, chancy: Chancy) -> None:
        wake = asyncio.Event()
        finished_ids: set[uuid.UUID] = set()
        created: set[uuid.UUID] = set()
        self._wakers.add(wake)

        def on_finished(event: Any) -> None:
            if not maybe_active and not created:
                # No workflow can be waiting on these jobs: skip parsing their ids. A workflow
                # is announced (CREATED) in the transaction that pushes its steps, before any
                # of them can finish, and notifications arrive in commit order.
                return
            for raw in event.body.get("ids") or ():
                with contextlib.suppress(ValueError):
                    finished_ids.add(uuid.UUID(str(raw)))
            wake.set()

        def on_created(event: Any) -> None:
            with contextlib.suppress(ValueError):
                created.add(uuid.UUID(str(event.body.get("id"))))
            wake.set()

        worker.hub.on(events.JOB_FINISHED, on_finished)
        worker.hub.on(CREATED, on_created)
        # A workflow pushed again may have new steps to queue, or be reopened.
        worker.hub.on(UPDATED, on_created)
        next_full = 0.0
        # Whether unfinished workflows may exist: when the last full pass found none and none
        # was created since, finished jobs cannot be steps and cost no query at all.
        maybe_active = True
        try:
            while True:
                wake.clear()
                lease = lease_params(worker)
                result = PassResult()
                if time.monotonic() >= next_full or len(finished_ids) > self.max_pending_workflows:
                    finished_ids.clear()
                    created.clear()
                    next_full = time.monotonic() + self.poll_interval
                    result = await self.advance_all(chancy, lease=lease)
                    maybe_active = result.active > 0 or bool(created)
                elif finished_ids or created:
                    jobs, finished_ids = list(finished_ids), set()
                    workflows, created = list(created), set()
                    maybe_active = maybe_active or bool(workflows)
                    if not maybe_active:
                        jobs = []
                    elif jobs and not workflows:
                        pending = store.has_pending_jobs(chancy.prefix, jobs)
                        row: Any = await chancy.db.run(pending)
                        if not row["found"]:
                            jobs = []
                    if jobs or workflows:
                        result = await self.advance(
                            chancy, lease=lease, job_ids=jobs, workflow_ids=workflows
                        )
                if result.more:
                    next_full = 0.0
                    continue
                timeout = max(0.0, next_full - time.monotonic())
                if timeout > 0 and not wake.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(wake.wait(), timeout)
        finally:
            worker.hub.remove(events.JOB_FINISHED, on_finished)
            worker.hub.remove(CREATED, on_created)
            worker.hub.remove(UPDATED, on_created)
            self._wakers.discard(wake)

    async def advance_all(
        self, chancy: Chancy, *, lease: dict[str, Any] | None = None
    ) -> PassResult:
        """A full pass: every unfinished workflow, ``batch_size`` per transaction."""
        total = PassResult()
        after = uuid.UUID(int=0)
        while True:
            rows = await chancy.db.run(store.active_ids(chancy.prefix, after, self.batch_size))
            if not rows:
                break
            ids = [row["id"] for row in rows]
            total.active += len(ids)
            result = await self.advance(chancy, lease=lease, workflow_ids=ids, full=True)
            if not result.leader:
                total.leader = False
                break
            total.queued += result.queued
            total.finished += result.finished
            total.more = total.more or result.more
            if len(rows) < self.batch_size:
                break
            after = ids[-1]
        return total

    async def advance(
        self,
        chancy: Chancy,
        *,
        lease: dict[str, Any] | None = None,
        job_ids: Iterable[uuid.UUID] = (),
        workflow_ids: Iterable[uuid.UUID] = (),
        full: bool = False,
    ) -> PassResult:
        """One pass in one transaction, for the workflows of ``job_ids`` and ``workflow_ids``.

        With ``full``, every step of ``workflow_ids`` is checked rather than only the jobs
        named. ``lease`` is the fence from :func:`~chancy.plugins.leadership.lease_params`;
        without it (an operator calling this by hand) nothing is fenced.
        """
        fence = lease if lease is not None else UNFENCED
        plan = pass_plan(
            chancy,
            fence,
            job_ids=list(job_ids),
            workflow_ids=list(workflow_ids),
            full=full,
            limit=self.max_steps_per_pass,
        )
        return await chancy.db.run(plan, transaction=True)

    # -- the pruner's hooks ---------------------------------------------------------------

    def prune_guard(self, prefix: str) -> LiteralString | None:
        """The steps of a running workflow stay: later steps read their results."""
        return store.prune_guard(prefix)

    async def cleanup(self, chancy: Chancy) -> int | None:
        """Delete finished workflows older than ``retention`` with their steps; return how many."""
        if self.retention is None:
            return 0
        total = 0
        while True:
            row = await chancy.db.run(store.cleanup(chancy.prefix, self.retention, self.batch_size))
            deleted = int(row["deleted"])
            total += deleted
            if deleted < self.batch_size:
                return total
