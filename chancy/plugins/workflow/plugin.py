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
import functools
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from psycopg.rows import dict_row

from chancy.errors import ConfigurationError
from chancy.job import Job, QueuedJob
from chancy.plugin import Plugin, PluginScope
from chancy.plugins.leadership import lease_params
from chancy.plugins.workflow.workflow import Workflow, WorkflowStep
from chancy.store import Spec, run
from chancy.store.loader import Queries
from chancy.store.runner import dict_cursor
from chancy.utils import chancy_uuid, json_dumps

if TYPE_CHECKING:
    import psycopg

    from chancy.app import Chancy
    from chancy.worker import Worker

log = logging.getLogger("chancy.workflow")

_UNFENCED = {"leader": None, "term": None, "fenced": False}

#: Events (hub and NOTIFY) of this plugin.
CREATED = "workflow.created"
FINISHED = "workflow.finished"

_TERMINAL = frozenset({Workflow.State.COMPLETED, Workflow.State.FAILED})

#: Dependency results kept by each worker process: how many, and the largest stored size.
_CACHE_ENTRIES = 4096
_CACHE_MAX_SIZE = 64 * 1024

#: More finished-job ids than this waiting for a pass turn it into a full pass.
_MAX_TRACKED_IDS = 20_000


@functools.cache
def workflow_queries(prefix: str) -> Queries:
    """The named queries of ``chancy/plugins/workflow/sql`` for one prefix, loaded once."""
    return Queries("chancy.plugins.workflow.sql", prefix)


@dataclasses.dataclass(slots=True)
class PassResult:
    """What one advancing pass did."""

    leader: bool = True
    queued: int = 0
    finished: int = 0
    #: Unfinished workflows a full pass looked at.
    active: int = 0
    #: True when the pass stopped at its step limit: run another one at once.
    more: bool = False


def _workflow_id(value: Any) -> uuid.UUID:
    if isinstance(value, Workflow):
        value = value.id
    try:
        return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
    except ValueError:
        raise KeyError(f"{value!r} is not a workflow id (a UUID)") from None


class WorkflowPlugin(Plugin):
    """DAGs of jobs, advanced by the leader (a default plugin).

    :param poll_interval: seconds between full passes over every unfinished workflow (passes
        also run at once on notifications, so this only bounds the delay without them).
    :param retention: seconds a finished (completed or failed) workflow is kept, counted from
        when it finished, before the pruner's cleanup deletes it with its steps (their jobs are
        the pruner's); None keeps them for ever.
    :param max_steps_per_pass: steps queued per transaction; more ready steps take more passes.
    :param batch_size: workflows per transaction in a full pass, and per cleanup statement.
    """

    def __init__(
        self,
        *,
        poll_interval: float = 1,
        retention: float | None = 86400,
        max_steps_per_pass: int = 5000,
        batch_size: int = 500,
    ) -> None:
        super().__init__()
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
        for name, value in (("max_steps_per_pass", max_steps_per_pass), ("batch_size", batch_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigurationError(f"WorkflowPlugin({name}={value!r}) must be an int >= 1")
        self.poll_interval = float(poll_interval)
        self.retention = None if retention is None else float(retention)
        self.max_steps_per_pass = max_steps_per_pass
        self.batch_size = batch_size
        self._wakers: set[asyncio.Event] = set()
        #: (prefix, workflow id, step id) -> result of a succeeded step, least recent first.
        self._results: OrderedDict[tuple[str, uuid.UUID, str], Any] = OrderedDict()

    @classmethod
    def get_identifier(cls) -> str:
        return "chancy.workflow"

    @classmethod
    def get_scope(cls) -> PluginScope:
        return PluginScope.LEADER

    def migrate_key(self) -> str | None:
        return "workflow"

    def migrate_package(self) -> str | None:
        return "chancy.plugins.workflow.migrations"

    def wake_up(self) -> None:
        super().wake_up()
        for event in self._wakers:
            event.set()

    # -- pushing and reading ------------------------------------------------------------

    @classmethod
    async def push(cls, chancy: Chancy, workflow: Workflow) -> str:
        """Validate and store ``workflow`` (one transaction); return its id.

        The leader queues its first steps at once (it is told by NOTIFY) or at its next poll.
        """
        pool = await chancy.open()
        async with pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            return await cls.push_ex(chancy, cur, workflow)

    @classmethod
    async def push_ex(
        cls, chancy: Chancy, cursor: psycopg.AsyncCursor[Any], workflow: Workflow
    ) -> str:
        """Store ``workflow`` inside the caller's transaction; return its id."""
        spec, workflow_id = cls._insert_spec(chancy, workflow)
        async with dict_cursor(cursor) as cur:
            row: Any = await run(cur, spec)
        return cls._stored(workflow, workflow_id, row)

    @classmethod
    def _insert_spec(cls, chancy: Chancy, workflow: Workflow) -> tuple[Spec[Any], Any]:
        workflow.validate()
        order = list(workflow.steps)  # stored (and fetched) in the order they were added
        workflow_id = chancy_uuid()
        steps = [workflow.steps[key] for key in order]
        params = {
            "id": workflow_id,
            "name": workflow.name,
            "step_ids": order,
            "jobs": [json_dumps(step.job.pack()) for step in steps],
            "dependencies": [json_dumps(list(step.dependencies)) for step in steps],
            "notify": chancy.notifications,
        }
        q = workflow_queries(chancy.prefix)
        return Spec(q["workflow_insert"], params, "one"), workflow_id

    @staticmethod
    def _stored(workflow: Workflow, workflow_id: Any, row: Any) -> str:
        workflow.id = str(workflow_id)
        workflow.state = Workflow.State.PENDING
        workflow.created_at = row["created_at"]
        workflow.updated_at = row["updated_at"]
        return workflow.id

    @classmethod
    async def fetch_workflow(cls, chancy: Chancy, workflow_id: Any) -> Workflow | None:
        """The workflow with this id, with its steps' current states, or None."""
        try:
            wanted = _workflow_id(workflow_id)
        except KeyError:
            return None
        found = await cls.fetch_workflows(chancy, ids=[wanted], limit=1)
        return found[0] if found else None

    @classmethod
    async def fetch_workflows(
        cls,
        chancy: Chancy,
        *,
        states: Iterable[str] | None = None,
        ids: Iterable[Any] | None = None,
        name: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Workflow]:
        """Workflows matching every given filter, newest first."""
        spec = _fetch_spec(chancy, states, ids, name, limit, offset)
        rows: Any = await chancy._run(spec)
        return [_workflow_from_row(row) for row in rows]

    @classmethod
    async def wait_for_workflow(
        cls,
        chancy: Chancy,
        workflow_id: Any,
        *,
        interval: float = 1,
        timeout: float | None = None,
    ) -> Workflow:
        """Wait until the workflow is completed or failed, and return it.

        Woken by NOTIFY when notifications are on; reads the workflow every ``interval``
        seconds either way. Raises ``KeyError`` for an unknown id (or one deleted meanwhile)
        and ``TimeoutError`` after ``timeout`` seconds.
        """
        wanted = _workflow_id(workflow_id)
        key = str(wanted)
        q = workflow_queries(chancy.prefix)
        woken = asyncio.Event()
        unsubscribe: Any = None
        if chancy.notifications:
            notifier = await chancy.notifier()

            def on_event(payload: dict[str, Any]) -> None:
                if payload.get("t") == FINISHED and payload.get("id") == key:
                    woken.set()

            unsubscribe = notifier.subscribe(on_event)
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while True:
                woken.clear()
                row: Any = await chancy._run(Spec(q["workflow_state"], {"id": wanted}, "one"))
                if row is None:
                    raise KeyError(f"no workflow with id {key}")
                if row["state"] in _TERMINAL:
                    found = await cls.fetch_workflow(chancy, wanted)
                    if found is None:
                        raise KeyError(f"no workflow with id {key}")
                    return found
                budget = interval
                if deadline is not None:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise TimeoutError(
                            f"workflow {key} did not finish within {timeout}s (it is"
                            f" {row['state']})"
                        )
                    budget = min(budget, remaining)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(woken.wait(), budget)
        finally:
            if unsubscribe is not None:
                unsubscribe()

    # -- a step's dependencies' results ---------------------------------------------------

    async def on_job_starting(self, *, job: QueuedJob, worker: Worker) -> QueuedJob:
        marker = job.meta.get("workflow") if job.meta else None
        if not isinstance(marker, dict):
            return job
        wanted = marker.get("dependencies")
        if not wanted or not isinstance(wanted, list):
            return job
        try:
            workflow_id = uuid.UUID(str(marker["id"]))
        except (KeyError, ValueError):
            return job
        prefix = worker.chancy.prefix
        found: dict[str, Any] = {}
        missing: list[str] = []
        for step_id in wanted:
            key = (prefix, workflow_id, step_id)
            if key in self._results:
                self._results.move_to_end(key)
                found[step_id] = self._results[key]
            else:
                missing.append(step_id)
        if missing:
            q = workflow_queries(prefix)
            params = {"workflow_id": workflow_id, "step_ids": missing}
            rows: Any = await worker.chancy._run(Spec(q["workflow_results"], params, "all"))
            for row in rows:
                found[row["step_id"]] = row["result"]
                # A succeeded step's result is final: keep small ones for its other dependents
                # (a fan-out's steps all read the same results).
                if row["state"] == "succeeded" and (row["size"] or 0) <= _CACHE_MAX_SIZE:
                    self._results[(prefix, workflow_id, row["step_id"])] = row["result"]
            while len(self._results) > _CACHE_ENTRIES:
                self._results.popitem(last=False)
        ordered = {step_id: found[step_id] for step_id in wanted if step_id in found}
        return dataclasses.replace(job, dependencies=ordered)

    # -- sync forms (scripts, WSGI apps): the same SQL on the sync pool -------------------

    @classmethod
    def sync_push(cls, chancy: Chancy, workflow: Workflow) -> str:
        """:meth:`push` for sync code."""
        spec, workflow_id = cls._insert_spec(chancy, workflow)
        row = chancy._run_sync(spec, transaction=True)
        return cls._stored(workflow, workflow_id, row)

    @classmethod
    def sync_push_ex(cls, chancy: Chancy, cursor: psycopg.Cursor[Any], workflow: Workflow) -> str:
        """:meth:`push_ex` for sync code."""
        spec, workflow_id = cls._insert_spec(chancy, workflow)
        row = chancy._run_ex_sync(cursor, spec)
        return cls._stored(workflow, workflow_id, row)

    @classmethod
    def sync_fetch_workflow(cls, chancy: Chancy, workflow_id: Any) -> Workflow | None:
        try:
            wanted = _workflow_id(workflow_id)
        except KeyError:
            return None
        found = cls.sync_fetch_workflows(chancy, ids=[wanted], limit=1)
        return found[0] if found else None

    @classmethod
    def sync_fetch_workflows(
        cls,
        chancy: Chancy,
        *,
        states: Iterable[str] | None = None,
        ids: Iterable[Any] | None = None,
        name: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Workflow]:
        rows: Any = chancy._run_sync(_fetch_spec(chancy, states, ids, name, limit, offset))
        return [_workflow_from_row(row) for row in rows]

    @classmethod
    def sync_wait_for_workflow(
        cls, chancy: Chancy, workflow_id: Any, *, interval: float = 1, timeout: float | None = None
    ) -> Workflow:
        """:meth:`wait_for_workflow` for sync code (polls every ``interval`` seconds)."""
        wanted = _workflow_id(workflow_id)
        q = workflow_queries(chancy.prefix)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            row: Any = chancy._run_sync(Spec(q["workflow_state"], {"id": wanted}, "one"))
            if row is None:
                raise KeyError(f"no workflow with id {wanted}")
            if row["state"] in _TERMINAL:
                found = cls.sync_fetch_workflow(chancy, wanted)
                if found is None:
                    raise KeyError(f"no workflow with id {wanted}")
                return found
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(
                    f"workflow {wanted} did not finish within {timeout}s (it is {row['state']})"
                )
            wait = interval if deadline is None else min(interval, deadline - time.monotonic())
            time.sleep(max(0.0, wait))

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

        worker.hub.on("job.finished", on_finished)
        worker.hub.on(CREATED, on_created)
        next_full = 0.0
        # Whether unfinished workflows may exist: when the last full pass found none and none
        # was created since, finished jobs cannot be steps and cost no query at all.
        maybe_active = True
        try:
            while True:
                wake.clear()
                lease = lease_params(worker)
                result = PassResult()
                if time.monotonic() >= next_full or len(finished_ids) > _MAX_TRACKED_IDS:
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
                        q = workflow_queries(chancy.prefix)
                        row: Any = await chancy._run(
                            Spec(q["workflow_has_pending_jobs"], {"job_ids": jobs}, "one")
                        )
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
            worker.hub.remove("job.finished", on_finished)
            worker.hub.remove(CREATED, on_created)
            self._wakers.discard(wake)

    async def advance_all(
        self, chancy: Chancy, *, lease: dict[str, Any] | None = None
    ) -> PassResult:
        """A full pass: every unfinished workflow, ``batch_size`` per transaction."""
        q = workflow_queries(chancy.prefix)
        total = PassResult()
        after = uuid.UUID(int=0)
        while True:
            rows: Any = await chancy._run(
                Spec(q["workflow_active_ids"], {"after": after, "limit": self.batch_size}, "all")
            )
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
        fence = lease if lease is not None else _UNFENCED
        q = workflow_queries(chancy.prefix)
        notify = chancy.notifications
        explicit = list(workflow_ids)
        jobs = list(job_ids)
        result = PassResult()
        pool = await chancy.open()
        async with (
            pool.connection() as conn,
            conn.transaction(),
            conn.cursor(row_factory=dict_row) as cur,
        ):
            if fence["fenced"]:
                held: Any = await run(cur, Spec(q["workflow_lease"], fence, "one"))
                if held is None:
                    result.leader = False
                    return result
            sync: Spec[Any]
            if full:
                sync = Spec(q["workflow_sync_workflows"], {"workflow_ids": explicit}, "all")
            else:
                sync = Spec(q["workflow_sync_jobs"], {"job_ids": jobs}, "all")
            changed: Any = await run(cur, sync) if (full or jobs) else []
            ids = sorted({row["workflow_id"] for row in changed} | set(explicit))
            if not ids:
                return result
            settled: Any = await run(
                cur, Spec(q["workflow_settle"], {"ids": ids, "notify": notify}, "all")
            )
            result.finished = sum(1 for row in settled if row["finished"])
            for row in settled:
                if row["finished"]:
                    log.info("workflow %s %s", row["id"], row["state"])
            active = [row["id"] for row in settled if row["state"] in ("pending", "running")]
            if not active:
                return result
            ready: Any = await run(
                cur,
                Spec(q["workflow_ready"], {"ids": active, "limit": self.max_steps_per_pass}, "all"),
            )
            if not ready:
                return result
            jobs_to_push = [_step_job(row) for row in ready]
            refs = await chancy.push_many_ex(cur, jobs_to_push)
            await run(
                cur,
                Spec(
                    q["workflow_queued"],
                    {
                        "ids": [row["id"] for row in ready],
                        "job_ids": [ref.identifier for ref in refs],
                    },
                    "one",
                ),
            )
            result.queued = len(ready)
            result.more = len(ready) >= self.max_steps_per_pass
        return result

    # -- the pruner's hook ----------------------------------------------------------------

    async def cleanup(self, chancy: Chancy) -> int | None:
        """Delete finished workflows older than ``retention`` with their steps; return how many."""
        if self.retention is None:
            return 0
        q = workflow_queries(chancy.prefix)
        total = 0
        while True:
            row: Any = await chancy._run(
                Spec(
                    q["workflow_cleanup"],
                    {"retention": self.retention, "limit": self.batch_size},
                    "one",
                )
            )
            deleted = int(row["deleted"])
            total += deleted
            if deleted < self.batch_size:
                return total


def _step_job(row: dict[str, Any]) -> Job:
    job = Job.unpack(row["job_data"])
    marker = {
        "id": str(row["workflow_id"]),
        "step": row["step_id"],
        "dependencies": list(row["dependencies"] or ()),
    }
    return dataclasses.replace(job, meta={**job.meta, "workflow": marker})


def _workflow_from_row(row: dict[str, Any]) -> Workflow:
    steps: dict[str, WorkflowStep] = {}
    for step in row["steps"] or ():
        state = step.get("state")
        if state is not None:
            with contextlib.suppress(ValueError):
                state = QueuedJob.State(state)
        steps[step["step_id"]] = WorkflowStep(
            job=Job.unpack(step["job_data"]),
            step_id=step["step_id"],
            dependencies=list(step["dependencies"] or ()),
            job_id=step["job_id"],
            state=state,
        )
    try:
        state = Workflow.State(row["state"])
    except ValueError:
        state = row["state"]
    return Workflow(
        name=row["name"],
        steps=steps,
        state=state,
        id=str(row["id"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _fetch_spec(
    chancy: Chancy,
    states: Iterable[str] | None,
    ids: Iterable[Any] | None,
    name: str | None,
    limit: int,
    offset: int,
) -> Spec[Any]:
    params = {
        "ids": None if ids is None else [_workflow_id(i) for i in ids],
        "states": None if states is None else [str(s) for s in states],
        "name": name,
        "limit": limit,
        "offset": offset,
    }
    return Spec(workflow_queries(chancy.prefix)["workflow_get_many"], params, "all")
