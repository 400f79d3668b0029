"""What applications call on workflows: push, fetch, process and wait (with their ``_ex`` and
sync forms). ``WorkflowPlugin`` inherits them; they need no worker and no running leader.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from typing import TYPE_CHECKING, Any, TextIO

from chancy import events
from chancy.plugins.leadership import lease_params
from chancy.plugins.workflow import store
from chancy.plugins.workflow.advance import pass_plan, refresh
from chancy.plugins.workflow.workflow import InvalidWorkflowError, Workflow
from chancy.store import Plan, Spec, run, run_sync
from chancy.store.runner import dict_cursor
from chancy.utils import chancy_uuid, json_dumps

if TYPE_CHECKING:
    from collections.abc import Iterable

    import psycopg

    from chancy.app import Chancy
    from chancy.worker import Worker

#: The fence of an operator's call (no lease).
UNFENCED: dict[str, Any] = {"leader": None, "term": None, "fenced": False}

_TERMINAL = frozenset({Workflow.State.COMPLETED, Workflow.State.FAILED})

#: Steps queued per transaction when no WorkflowPlugin instance says otherwise.
_DEFAULT_MAX_STEPS = 5000


def _cursor_and_app(first: Any, second: Any, method: str) -> tuple[Any, Chancy]:
    """Chancy 0.26 passes ``(cursor, chancy, ...)`` to the cursor forms; chancy's first
    releases passed ``(chancy, cursor, ...)``. Both orders are accepted (told apart by type)."""
    from chancy.app import Chancy

    if isinstance(second, Chancy):
        return first, second
    if isinstance(first, Chancy):
        return second, first
    raise TypeError(
        f"WorkflowPlugin.{method}(cursor, chancy, ...) needs a database cursor and the Chancy"
        f" app, got {type(first).__name__} and {type(second).__name__}"
    )


class WorkflowClient:
    """The class methods of ``WorkflowPlugin`` that store, read and advance workflows."""

    @classmethod
    def get_identifier(cls) -> str:
        raise NotImplementedError

    # -- pushing and reading ------------------------------------------------------------

    @classmethod
    async def push(cls, chancy: Chancy, workflow: Workflow) -> str:
        """Validate and store ``workflow`` (one transaction); return its id.

        A workflow whose id is already stored is updated as in Chancy 0.26 (name, state, steps
        added or changed), except that a step whose job was already queued is left as it is,
        so pushing a workflow again never runs a step twice. The leader queues ready steps at
        once (it is told by NOTIFY) or at its next poll.
        """
        spec = cls._push_spec(chancy, workflow)
        row = await chancy.db.run(spec, transaction=True)
        return cls._stored(workflow, row)

    @classmethod
    async def push_ex(
        cls,
        cursor: psycopg.AsyncCursor[Any] | Chancy,
        chancy: Chancy | psycopg.AsyncCursor[Any],
        workflow: Workflow,
        worker: Worker | None = None,
    ) -> str:
        """:meth:`push` inside the caller's transaction; return the workflow's id.

        Takes Chancy 0.26's ``(cursor, chancy, workflow)``; ``(chancy, cursor, workflow)`` is
        accepted too. ``worker`` is accepted for 0.26's signature and not needed.
        """
        cur, app = _cursor_and_app(cursor, chancy, "push_ex")
        spec = cls._push_spec(app, workflow)
        async with dict_cursor(cur) as dcur:
            row: Any = await run(dcur, spec)
        return cls._stored(workflow, row)

    @classmethod
    def _push_spec(cls, chancy: Chancy, workflow: Workflow) -> Spec[Any]:
        # Everything is checked before anything is written.
        workflow.validate()
        try:
            state = Workflow.State(getattr(workflow.state, "value", workflow.state))
        except ValueError:
            raise InvalidWorkflowError(
                f"workflow {workflow.name!r} has state {workflow.state!r}; it must be one of"
                f" {', '.join(s.value for s in Workflow.State)}"
            ) from None
        if workflow.id is None:
            workflow_id = chancy_uuid()
        else:
            try:
                workflow_id = (
                    workflow.id
                    if isinstance(workflow.id, uuid.UUID)
                    else uuid.UUID(str(workflow.id))
                )
            except ValueError:
                raise InvalidWorkflowError(
                    f"workflow {workflow.name!r} has id {workflow.id!r}, which is not a UUID;"
                    " leave it out (or set it to None) and a new id is given at push"
                ) from None
        order = list(workflow.steps)  # stored (and fetched) in the order they were added
        steps = [workflow.steps[key] for key in order]
        params = {
            "id": workflow_id,
            "name": workflow.name,
            "state": state.value,
            "step_ids": order,
            "jobs": [json_dumps(step.job.pack()) for step in steps],
            "dependencies": [json_dumps(list(step.dependencies)) for step in steps],
            "notify": chancy.notifications,
        }
        return store.push(chancy.prefix, params)

    @staticmethod
    def _stored(workflow: Workflow, row: Any) -> str:
        workflow.id = str(row["id"])
        workflow.state = Workflow.State(row["state"])
        workflow.created_at = row["created_at"]
        workflow.updated_at = row["updated_at"]
        return workflow.id

    @classmethod
    async def fetch_workflow(cls, chancy: Chancy, id_: Any) -> Workflow | None:
        """The workflow with this id, with its steps' current states, or None."""
        try:
            wanted = store.workflow_id(id_)
        except KeyError:
            return None
        found = await cls.fetch_workflows(chancy, ids=[wanted], limit=1)
        return found[0] if found else None

    @classmethod
    async def fetch_workflow_ex(
        cls,
        cursor: psycopg.AsyncCursor[Any] | Chancy,
        chancy: Chancy | psycopg.AsyncCursor[Any],
        id_: Any,
    ) -> Workflow | None:
        """:meth:`fetch_workflow` inside the caller's transaction."""
        cur, app = _cursor_and_app(cursor, chancy, "fetch_workflow_ex")
        try:
            wanted = store.workflow_id(id_)
        except KeyError:
            return None
        found = await cls.fetch_workflows_ex(cur, app, ids=[wanted], limit=1)
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
        return await chancy.db.run(store.fetch(chancy.prefix, states, ids, name, limit, offset))

    @classmethod
    async def fetch_workflows_ex(
        cls,
        cursor: psycopg.AsyncCursor[Any] | Chancy,
        chancy: Chancy | psycopg.AsyncCursor[Any],
        *,
        states: Iterable[str] | None = None,
        ids: Iterable[Any] | None = None,
        name: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Workflow]:
        """:meth:`fetch_workflows` inside the caller's transaction."""
        cur, app = _cursor_and_app(cursor, chancy, "fetch_workflows_ex")
        return await app.db.run_ex(cur, store.fetch(app.prefix, states, ids, name, limit, offset))

    @classmethod
    async def process_workflow(
        cls,
        cursor: psycopg.AsyncCursor[Any] | Chancy,
        chancy: Chancy | psycopg.AsyncCursor[Any],
        workflow: Workflow,
        worker: Worker | None = None,
    ) -> bool:
        """Advance one stored workflow now, inside the caller's transaction; True if it changed.

        Runs the leader's pass for this workflow (record finished steps, finish the workflow
        if it is done, queue every step whose dependencies all succeeded) and refreshes
        ``workflow`` in place from what is stored: its state and each step's job and state.
        With a ``worker`` the pass is fenced by that worker's leadership, as the leader's own
        passes are: a worker that does not hold the lease changes nothing and gets False.
        Without one it is an operator's unfenced call. Unlike Chancy 0.26, the changes are
        written here (pushing the workflow afterwards is harmless but not needed), and the
        stored workflow is what is advanced: push local changes to it first. Raises
        ``KeyError`` when the workflow is not stored.
        """
        cur, app = _cursor_and_app(cursor, chancy, "process_workflow")
        if workflow.is_complete:
            return False
        plan = cls._process_plan(app, workflow, worker)
        async with cur.connection.transaction(), dict_cursor(cur) as dcur:
            return await run(dcur, plan)

    @classmethod
    def _process_plan(cls, chancy: Chancy, workflow: Workflow, worker: Worker | None) -> Plan[bool]:
        wanted = store.workflow_id(workflow)
        fence = lease_params(worker) if worker is not None else UNFENCED
        installed = chancy.plugins.get(cls.get_identifier())
        limit = installed.max_steps_per_pass if isinstance(installed, cls) else _DEFAULT_MAX_STEPS
        changed = False
        while True:
            result = yield from pass_plan(
                chancy, fence, job_ids=(), workflow_ids=[wanted], full=True, limit=limit
            )
            changed = changed or bool(result.queued or result.finished or result.synced)
            if not (result.leader and result.more):
                break
        rows: Any = yield store.fetch(chancy.prefix, None, [wanted], None, 1, 0)
        if not rows:
            raise KeyError(f"no workflow with id {wanted}; push it before processing it")
        refresh(workflow, rows[0])
        return changed

    @staticmethod
    def generate_dot(workflow: Workflow, output: TextIO | None = None) -> str:
        """Graphviz DOT text of ``workflow`` (see :meth:`Workflow.generate_dot`).

        As in Chancy 0.26 it is written to ``output`` when one is given; it is also returned.
        """
        text = workflow.generate_dot()
        if output is not None:
            output.write(text)
        return text

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
        wanted = store.workflow_id(workflow_id)
        key = str(wanted)
        woken = asyncio.Event()
        unsubscribe: Any = None
        if chancy.listening:
            notifier = await chancy.notifier()

            def on_event(payload: dict[str, Any]) -> None:
                if payload.get("t") == events.WORKFLOW_FINISHED and payload.get("id") == key:
                    woken.set()

            unsubscribe = notifier.subscribe(on_event)
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while True:
                woken.clear()
                row = await chancy.db.run(store.state(chancy.prefix, wanted))
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

    # -- sync forms (scripts, WSGI apps): the same SQL on the sync pool -------------------

    @classmethod
    def sync_push(cls, chancy: Chancy, workflow: Workflow) -> str:
        """:meth:`push` for sync code."""
        row = chancy.db.run_sync(cls._push_spec(chancy, workflow), transaction=True)
        return cls._stored(workflow, row)

    @classmethod
    def sync_push_ex(
        cls,
        cursor: psycopg.Cursor[Any] | Chancy,
        chancy: Chancy | psycopg.Cursor[Any],
        workflow: Workflow,
        worker: Worker | None = None,
    ) -> str:
        """:meth:`push_ex` for sync code."""
        cur, app = _cursor_and_app(cursor, chancy, "sync_push_ex")
        row = app.db.run_ex_sync(cur, cls._push_spec(app, workflow))
        return cls._stored(workflow, row)

    @classmethod
    def sync_fetch_workflow(cls, chancy: Chancy, id_: Any) -> Workflow | None:
        try:
            wanted = store.workflow_id(id_)
        except KeyError:
            return None
        found = cls.sync_fetch_workflows(chancy, ids=[wanted], limit=1)
        return found[0] if found else None

    @classmethod
    def sync_fetch_workflow_ex(
        cls, cursor: psycopg.Cursor[Any] | Chancy, chancy: Chancy | psycopg.Cursor[Any], id_: Any
    ) -> Workflow | None:
        cur, app = _cursor_and_app(cursor, chancy, "sync_fetch_workflow_ex")
        try:
            wanted = store.workflow_id(id_)
        except KeyError:
            return None
        found = cls.sync_fetch_workflows_ex(cur, app, ids=[wanted], limit=1)
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
        return chancy.db.run_sync(store.fetch(chancy.prefix, states, ids, name, limit, offset))

    @classmethod
    def sync_fetch_workflows_ex(
        cls,
        cursor: psycopg.Cursor[Any] | Chancy,
        chancy: Chancy | psycopg.Cursor[Any],
        *,
        states: Iterable[str] | None = None,
        ids: Iterable[Any] | None = None,
        name: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Workflow]:
        cur, app = _cursor_and_app(cursor, chancy, "sync_fetch_workflows_ex")
        return app.db.run_ex_sync(cur, store.fetch(app.prefix, states, ids, name, limit, offset))

    @classmethod
    def sync_process_workflow(
        cls,
        cursor: psycopg.Cursor[Any] | Chancy,
        chancy: Chancy | psycopg.Cursor[Any],
        workflow: Workflow,
        worker: Worker | None = None,
    ) -> bool:
        """:meth:`process_workflow` for sync code."""
        cur, app = _cursor_and_app(cursor, chancy, "sync_process_workflow")
        if workflow.is_complete:
            return False
        plan = cls._process_plan(app, workflow, worker)
        with cur.connection.transaction(), dict_cursor(cur) as dcur:
            return run_sync(dcur, plan)

    @classmethod
    def sync_wait_for_workflow(
        cls, chancy: Chancy, workflow_id: Any, *, interval: float = 1, timeout: float | None = None
    ) -> Workflow:
        """:meth:`wait_for_workflow` for sync code (polls every ``interval`` seconds)."""
        wanted = store.workflow_id(workflow_id)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            row = chancy.db.run_sync(store.state(chancy.prefix, wanted))
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
