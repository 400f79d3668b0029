"""Workflow values without a database: building, validation and the Graphviz view."""

from __future__ import annotations

import pytest

from chancy import Job, job
from chancy.plugins.workflow import InvalidWorkflowError, Sequence, Workflow, WorkflowStep
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


def test_generate_dot_draws_every_step_and_edge() -> None:
    wf = Workflow('a "quoted" name').add("top", J("noop")).add("bottom", J("step"), ["top"])
    wf["top"].state = "succeeded"
    dot = wf.generate_dot()
    assert dot.startswith('digraph "a \\"quoted\\" name" {')
    assert '"top" -> "bottom";' in dot
    assert '"top" [label="top\\ntests.workflow.jobs.noop\\nsucceeded"' in dot
    assert 'fillcolor="palegreen"' in dot
    assert '"bottom" [label="bottom\\ntests.workflow.jobs.step"' in dot
    assert dot.rstrip().endswith("}")


def test_state_values() -> None:
    assert [s.value for s in Workflow.State] == ["pending", "running", "completed", "failed"]
    assert Workflow("w").state is Workflow.State.PENDING
