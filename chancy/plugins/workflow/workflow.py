"""Workflows as values: steps, their dependencies, validation and a Graphviz view.

A ``Workflow`` is a directed acyclic graph of steps; each step is a job that runs once every
step it depends on has succeeded. These classes hold no database state: pushing, fetching and
advancing are :class:`~chancy.plugins.workflow.plugin.WorkflowPlugin`'s.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from chancy.errors import ChancyError
from chancy.job import Job, QueuedJob
from chancy.utils import chancy_uuid


class InvalidWorkflowError(ChancyError, ValueError):
    """A workflow cannot be pushed as given (no steps, a cycle, an unknown dependency...)."""


def _as_job(item: Any) -> Job:
    if isinstance(item, Job):
        return item
    attached = getattr(item, "job", None)
    if isinstance(attached, Job):
        return attached
    raise TypeError(
        f"a workflow step needs a Job (Job.from_func(f, kwargs=...)) or a function decorated"
        f" with @job, not {item!r}"
    )


@dataclasses.dataclass(slots=True)
class WorkflowStep:
    """One step: its job and the ids of the steps it waits for.

    ``job_id`` and ``state`` are filled in on fetched workflows: both are None until the
    leader queues the step, then ``state`` is its job's state (a ``QueuedJob.State`` value).
    """

    job: Job
    step_id: str = ""
    dependencies: list[str] = dataclasses.field(default_factory=list)
    job_id: str | None = None
    state: QueuedJob.State | str | None = None


@dataclasses.dataclass(slots=True)
class Workflow:
    """A named DAG of steps; build it with :meth:`add` and :meth:`add_group`.

    ::

        wf = (
            Workflow("nightly")
            .add("extract", extract.job)
            .add_group([("a", clean.job), ("b", enrich.job)], dependencies=["extract"])
            .add("load", load.job, dependencies=["a", "b"])
        )
        workflow_id = await WorkflowPlugin.push(chancy, wf)
    """

    class State(enum.StrEnum):
        PENDING = "pending"
        RUNNING = "running"
        COMPLETED = "completed"
        FAILED = "failed"

        def __str__(self) -> str:
            return self.value

    name: str
    steps: dict[str, WorkflowStep] = dataclasses.field(default_factory=dict)
    state: Workflow.State = State.PENDING
    #: Given at construction, as in Chancy 0.26, so that pushing the same object again
    #: updates the stored workflow instead of starting a second one. None: a new id at push.
    id: str | None = dataclasses.field(default_factory=lambda: str(chancy_uuid()))
    created_at: datetime | None = None
    updated_at: datetime | None = None

    def add(self, step_id: str, job: Any, dependencies: Iterable[str] | None = None) -> Workflow:
        """Add a step that runs ``job`` after every step in ``dependencies`` succeeded."""
        if not isinstance(step_id, str) or not step_id:
            raise InvalidWorkflowError(f"a step id must be a non-empty string, not {step_id!r}")
        if step_id in self.steps:
            raise InvalidWorkflowError(
                f"workflow {self.name!r} already has a step {step_id!r}; step ids must be unique"
            )
        if isinstance(dependencies, str):
            dependencies = [dependencies]
        self.steps[step_id] = WorkflowStep(
            job=_as_job(job), step_id=step_id, dependencies=list(dependencies or ())
        )
        return self

    #: Chancy 0.26's name for :meth:`add`.
    add_step = add

    def add_group(
        self, steps: Iterable[tuple[str, Any]], dependencies: Iterable[str] | None = None
    ) -> Workflow:
        """Add several steps sharing the same dependencies (they may run in parallel)."""
        deps = [dependencies] if isinstance(dependencies, str) else list(dependencies or ())
        for step_id, job in steps:
            self.add(step_id, job, deps)
        return self

    def __iadd__(self, step: WorkflowStep) -> Workflow:
        self.add(step.step_id, step.job, step.dependencies)
        return self

    def __len__(self) -> int:
        return len(self.steps)

    def __iter__(self) -> Iterator[tuple[str, WorkflowStep]]:
        return iter(self.steps.items())

    def __getitem__(self, step_id: str) -> WorkflowStep:
        return self.steps[step_id]

    def __delitem__(self, step_id: str) -> None:
        del self.steps[step_id]

    @property
    def is_complete(self) -> bool:
        """True once the workflow is completed or failed (Chancy 0.26's name)."""
        return self.state in (Workflow.State.COMPLETED, Workflow.State.FAILED)

    #: The same as :attr:`is_complete`.
    is_finished = is_complete

    @property
    def is_running(self) -> bool:
        """True while the workflow is running (at least one step was queued, none failed)."""
        return self.state == Workflow.State.RUNNING

    @property
    def steps_by_state(self) -> dict[str | None, list[WorkflowStep]]:
        found: dict[str | None, list[WorkflowStep]] = {}
        for step in self.steps.values():
            key = None if step.state is None else str(step.state)
            found.setdefault(key, []).append(step)
        return found

    def validate(self) -> list[str]:
        """Check the graph; return the step ids in an order that respects dependencies.

        Raises ``InvalidWorkflowError`` for an empty workflow, a step filed under another id,
        a duplicate or unknown dependency, and a cycle (naming its steps).
        """
        if not isinstance(self.name, str) or not self.name:
            raise InvalidWorkflowError(f"a workflow needs a non-empty name, not {self.name!r}")
        if not self.steps:
            raise InvalidWorkflowError(
                f"workflow {self.name!r} has no steps; add one with workflow.add(step_id, job)"
            )
        for key, step in self.steps.items():
            if step.step_id and step.step_id != key:
                raise InvalidWorkflowError(
                    f"workflow {self.name!r}: the step filed under {key!r} says its id is"
                    f" {step.step_id!r}; add steps with workflow.add(step_id, job)"
                )
            if not isinstance(step.job, Job):
                raise InvalidWorkflowError(
                    f"workflow {self.name!r}: step {key!r} has no Job ({step.job!r})"
                )
            seen: set[str] = set()
            for dep in step.dependencies:
                if dep in seen:
                    raise InvalidWorkflowError(
                        f"workflow {self.name!r}: step {key!r} lists dependency {dep!r} twice"
                    )
                seen.add(dep)
                if dep not in self.steps:
                    raise InvalidWorkflowError(
                        f"workflow {self.name!r}: step {key!r} depends on {dep!r}, which is not"
                        f" a step of this workflow (steps: {_few(self.steps)})"
                    )
        return self._order()

    def _order(self) -> list[str]:
        # Kahn's algorithm; whatever is left has a cycle, which is then traced for the message.
        waiting = {key: len(step.dependencies) for key, step in self.steps.items()}
        dependents: dict[str, list[str]] = {key: [] for key in self.steps}
        for key, step in self.steps.items():
            for dep in step.dependencies:
                dependents[dep].append(key)
        ready = [key for key, n in waiting.items() if n == 0]
        order: list[str] = []
        while ready:
            key = ready.pop()
            order.append(key)
            for child in dependents[key]:
                waiting[child] -= 1
                if waiting[child] == 0:
                    ready.append(child)
        if len(order) < len(self.steps):
            stuck = {key for key, n in waiting.items() if n > 0}
            cycle = self._trace_cycle(stuck)
            raise InvalidWorkflowError(
                f"workflow {self.name!r} has a dependency cycle: {' -> '.join(cycle)}; a step"
                " cannot (even indirectly) depend on itself"
            )
        return order

    def _trace_cycle(self, stuck: set[str]) -> list[str]:
        # Every stuck step has a stuck dependency; walk them until a step repeats.
        start = min(stuck)
        path = [start]
        index = {start: 0}
        current = start
        while True:
            current = next(d for d in self.steps[current].dependencies if d in stuck)
            if current in index:
                cycle = [*path[index[current] :], current]
                cycle.reverse()  # show it in the direction work flows
                return cycle
            index[current] = len(path)
            path.append(current)

    def generate_dot(self) -> str:
        """The workflow as Graphviz DOT text (``dot -Tsvg``), each step coloured by its state.

        The same drawing as Chancy 0.26's ``WorkflowPlugin.generate_dot``: one box per step
        labelled with its id and state, an edge from each dependency to its dependent, and the
        workflow's name and state as the title. States are written by value (``succeeded``,
        not ``State.SUCCEEDED``) and quotes in names are escaped, so any name draws.
        """
        lines = [
            f"digraph {_dot_quote(self.name)} {{",
            "  rankdir=TB;",
            '  node [shape=box, style="rounded,filled", fontname="Arial"];',
        ]
        for key, step in self.steps.items():
            state = _state_text(step.state)
            color = _COLOURS.get(state, "lightgray")
            lines.append(
                f'  {_dot_quote(key)} [label="{_dot_escape(key)}\\n({_dot_escape(state)})",'
                f" fillcolor={color}];"
            )
        for key, step in self.steps.items():
            for dep in step.dependencies:
                lines.append(f"  {_dot_quote(dep)} -> {_dot_quote(key)};")
        lines.append('  labelloc="t";')
        lines.append(
            f'  label="Workflow: {_dot_escape(self.name)}\\nState:'
            f' {_dot_escape(_state_text(self.state))}";'
        )
        lines.append("}")
        return "\n".join(lines) + "\n"

    def __repr__(self) -> str:
        return f"<Workflow {self.name!r} {self.state} {len(self.steps)} step(s) id={self.id}>"


#: Step state -> fill colour, as Chancy 0.26 draws them; any other state is light grey.
_COLOURS = {
    "pending": "lightblue",
    "running": "yellow",
    "succeeded": "lightgreen",
    "failed": "lightpink",
}


def _state_text(state: Any) -> str:
    if state is None:
        return "None"
    return str(getattr(state, "value", state))


def _dot_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _dot_quote(text: str) -> str:
    return '"' + _dot_escape(text) + '"'


def _few(steps: dict[str, Any]) -> str:
    keys = list(steps)
    shown = ", ".join(repr(k) for k in keys[:10])
    return shown + (f" and {len(keys) - 10} more" if len(keys) > 10 else "")


class Sequence:
    """Jobs that run one after the other: a workflow where each step waits for the previous.

    ::

        workflow_id = await Sequence("import", [fetch.job, parse.job]).add(store.job).push(chancy)

    Steps are named ``step_0``, ``step_1``, ... Each push stores a new workflow.
    """

    def __init__(self, name: str, jobs: Iterable[Any] | None = None) -> None:
        self.name = name
        self.jobs: list[Job] = []
        for job in jobs or ():
            self.add(job)

    def add(self, job: Any) -> Sequence:
        """Append a job (a ``Job`` or an ``@job`` function) to run after the others; chainable."""
        self.jobs.append(_as_job(job))
        return self

    def to_workflow(self) -> Workflow:
        workflow = Workflow(self.name)
        previous: str | None = None
        for i, job in enumerate(self.jobs):
            step_id = f"step_{i}"
            workflow.add(step_id, job, [previous] if previous else None)
            previous = step_id
        return workflow

    async def push(self, chancy: Any) -> str:
        """Push the sequence as a new workflow; return its id."""
        from chancy.plugins.workflow.plugin import WorkflowPlugin

        return await WorkflowPlugin.push(chancy, self.to_workflow())
