"""Workflow values without a database: building, validation and the Graphviz view."""

from __future__ import annotations

import io

import pytest

from chancy import Job, QueuedJob, job
from chancy.plugins.workflow import (
    InvalidWorkflowError,
    Sequence,
    Workflow,
    WorkflowPlugin,
    WorkflowStep,
)
from tests.workflow.conftest import J


def test_add_and_add_group_build_the_graph() -> None:
    wf = (
        Workflow("w")
        .add("top", J("noop"))
        .add_group([("left", J("noop")), ("right", J("noop"))], dependencies=["top"])
        .add("bottom", J("noop"), ["left", "right"])
    )
    assert list(wf.steps) == ["top", "left", "right", "bottom"]
    assert wf["left"].dependencies == ["top"]
    assert wf["bottom"].dependencies == ["left", "right"]
    assert wf["top"].job_id is None and wf["top"].state is None
    order = wf.validate()
    assert order.index("top") < order.index("left") < order.index("bottom")
    assert order.index("right") < order.index("bottom")
    assert len(wf) == 4


def test_a_single_dependency_may_be_given_as_a_string() -> None:
    wf = Workflow("w").add("a", J("noop")).add("b", J("noop"), "a")
    assert wf["b"].dependencies == ["a"]


@job(queue="wf")
def decorated() -> None: ...


def test_jobs_decorated_with_job_are_accepted() -> None:
    wf = Workflow("w").add("a", decorated)
    assert isinstance(wf["a"].job, Job)
    with pytest.raises(TypeError, match="needs a Job"):
        Workflow("w").add("a", "not a job")


def test_iadd_adds_a_step_object() -> None:
    wf = Workflow("w")
    wf += WorkflowStep(job=J("noop"), step_id="a")
    wf += WorkflowStep(job=J("noop"), step_id="b", dependencies=["a"])
    assert wf["b"].dependencies == ["a"]


def test_an_empty_workflow_is_an_error() -> None:
    with pytest.raises(InvalidWorkflowError, match="has no steps"):
        Workflow("empty").validate()


def test_a_duplicate_step_id_is_an_error() -> None:
    wf = Workflow("w").add("a", J("noop"))
    with pytest.raises(InvalidWorkflowError, match="already has a step 'a'"):
        wf.add("a", J("noop"))
    with pytest.raises(InvalidWorkflowError, match="already has a step 'a'"):
        Workflow("w").add_group([("a", J("noop")), ("a", J("noop"))])


def test_an_unknown_dependency_is_an_error() -> None:
    wf = Workflow("w").add("a", J("noop")).add("b", J("noop"), ["a", "nope"])
    with pytest.raises(InvalidWorkflowError, match="step 'b' depends on 'nope'"):
        wf.validate()


def test_a_repeated_dependency_is_an_error() -> None:
    wf = Workflow("w").add("a", J("noop")).add("b", J("noop"), ["a", "a"])
    with pytest.raises(InvalidWorkflowError, match="twice"):
        wf.validate()


def test_cycles_are_errors_that_name_the_cycle() -> None:
    wf = (
        Workflow("w")
        .add("start", J("noop"))
        .add("a", J("noop"), ["start", "c"])
        .add("b", J("noop"), ["a"])
        .add("c", J("noop"), ["b"])
    )
    with pytest.raises(InvalidWorkflowError, match="dependency cycle") as caught:
        wf.validate()
    message = str(caught.value)
    for step in ("a", "b", "c"):
        assert f"{step} ->" in message or f"-> {step}" in message
    assert "start" not in message.split(":", 1)[1].split(";")[0]

    itself = Workflow("w").add("a", J("noop"), ["a"])
    with pytest.raises(InvalidWorkflowError, match="a -> a"):
        itself.validate()


def test_a_step_filed_under_another_id_is_an_error() -> None:
    wf = Workflow("w")
    wf.steps["x"] = WorkflowStep(job=J("noop"), step_id="y")
    with pytest.raises(InvalidWorkflowError, match="says its id is 'y'"):
        wf.validate()


def test_sequence_chains_its_jobs() -> None:
    wf = Sequence("seq", [J("noop"), J("noop"), J("noop")]).to_workflow()
    assert list(wf.steps) == ["step_0", "step_1", "step_2"]
    assert wf["step_0"].dependencies == []
    assert wf["step_2"].dependencies == ["step_1"]


def test_generate_dot_draws_what_chancy_026_draws() -> None:
    """The same DOT text as 0.26's WorkflowPlugin.generate_dot, states written by value."""
    wf = (
        Workflow("example")
        .add("top", J("noop"))
        .add("left", J("noop"), ["top"])
        .add("right", J("noop"), ["top"])
        .add("bottom", J("noop"), ["left", "right"])
    )
    wf.state = Workflow.State.RUNNING
    wf["top"].state = QueuedJob.State.SUCCEEDED
    wf["left"].state = QueuedJob.State.RUNNING
    wf["right"].state = QueuedJob.State.RETRYING
    expected = (
        'digraph "example" {\n'
        "  rankdir=TB;\n"
        '  node [shape=box, style="rounded,filled", fontname="Arial"];\n'
        '  "top" [label="top\\n(succeeded)", fillcolor=lightgreen];\n'
        '  "left" [label="left\\n(running)", fillcolor=yellow];\n'
        '  "right" [label="right\\n(retrying)", fillcolor=lightgray];\n'
        '  "bottom" [label="bottom\\n(None)", fillcolor=lightgray];\n'
        '  "top" -> "left";\n'
        '  "top" -> "right";\n'
        '  "left" -> "bottom";\n'
        '  "right" -> "bottom";\n'
        '  labelloc="t";\n'
        '  label="Workflow: example\\nState: running";\n'
        "}\n"
    )
    assert wf.generate_dot() == expected
    # 0.26's form: a static method writing to a file-like object (and returning the text).
    out = io.StringIO()
    assert WorkflowPlugin.generate_dot(wf, out) == expected
    assert out.getvalue() == expected
    wf["bottom"].state = QueuedJob.State.PENDING
    wf["right"].state = QueuedJob.State.FAILED
    dot = WorkflowPlugin.generate_dot(wf)
    assert '"bottom" [label="bottom\\n(pending)", fillcolor=lightblue];' in dot
    assert '"right" [label="right\\n(failed)", fillcolor=lightpink];' in dot


def test_generate_dot_escapes_quotes_and_backslashes_in_names() -> None:
    wf = Workflow('a "quoted" \\ name').add('s"1', J("noop")).add("s2", J("noop"), ['s"1'])
    dot = wf.generate_dot()
    assert dot.startswith('digraph "a \\"quoted\\" \\\\ name" {')
    assert '"s\\"1" -> "s2";' in dot
    assert '  "s\\"1" [label="s\\"1\\n(None)", fillcolor=lightgray];' in dot
    assert 'label="Workflow: a \\"quoted\\" \\\\ name\\nState: pending";' in dot


def test_state_values() -> None:
    assert [s.value for s in Workflow.State] == ["pending", "running", "completed", "failed"]
    assert Workflow("w").state is Workflow.State.PENDING
