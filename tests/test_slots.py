"""Building jobs on the hot path without the dataclass ``__init__`` (chancy.utils.slot_builder
and slot_copier, and a claim's row maker): the objects must be the ones ``__init__``,
``dataclasses.replace`` and ``QueuedJob.unpack`` make."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from chancy.job import QueuedJob, _build_queued_job, unpack_claimed
from chancy.outcome import evolve
from chancy.store.claims import claimed_row_maker

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def row(**changes: Any) -> dict[str, Any]:
    base = dict(
        id=uuid.uuid4(),
        func="tests.jobs.noop",
        queue="q",
        kwargs={"a": 1},
        priority=3,
        max_attempts=2,
        scheduled_at=NOW,
        limits=[],
        unique_key="k",
        meta={"m": True},
        claim_id=uuid.uuid4(),
        created_at=NOW,
        started_at=NOW,
        completed_at=None,
        attempts=1,
        recoveries=0,
        state="running",
        errors=[],
        result=None,
        taken_by="w",
        progress=None,
        partition_key="p",
        deadline=None,
    )
    return {**base, **changes}


def fields(job: QueuedJob) -> dict[str, Any]:
    return {f.name: getattr(job, f.name) for f in dataclasses.fields(job)}


def test_a_built_job_is_the_one_init_makes() -> None:
    job = unpack_claimed(row())
    made = QueuedJob(**fields(job))
    assert fields(job) == fields(made) and job == made and repr(job) == repr(made)
    assert job.state is QueuedJob.State.RUNNING
    # Defaults and default factories: a fresh object each time, never shared.
    minimal = _build_queued_job(id=uuid.uuid4(), func="tests.jobs.noop")
    other = _build_queued_job(id=uuid.uuid4(), func="tests.jobs.noop")
    made = fields(QueuedJob(id=minimal.id, func="tests.jobs.noop"))
    # scheduled_at's factory is "now": the same kind of value, a few microseconds apart.
    assert type(minimal.scheduled_at) is type(made.pop("scheduled_at"))
    assert {k: v for k, v in fields(minimal).items() if k != "scheduled_at"} == made
    assert minimal.errors == [] and minimal.errors is not other.errors
    assert minimal.dependencies is not other.dependencies
    with pytest.raises(dataclasses.FrozenInstanceError):
        minimal.state = QueuedJob.State.FAILED  # type: ignore[misc]
    with pytest.raises(TypeError):
        _build_queued_job(func="tests.jobs.noop")  # id is required, as in __init__


def test_a_subclass_still_goes_through_its_init() -> None:
    checked: list[str] = []

    @dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
    class Checked(QueuedJob):
        def __post_init__(self) -> None:
            checked.append(self.func)

    job = Checked.unpack(row())
    assert type(job) is Checked and checked == ["tests.jobs.noop"]


def test_evolve_is_dataclasses_replace() -> None:
    job = unpack_claimed(row())
    changes = {"state": QueuedJob.State.SUCCEEDED, "completed_at": NOW, "result": {"r": 1}}
    assert fields(evolve(job, **changes)) == fields(dataclasses.replace(job, **changes))
    assert fields(job)["state"] is QueuedJob.State.RUNNING  # the original is unchanged
    with pytest.raises(AttributeError):
        evolve(job, no_such_field=1)


COLUMNS = tuple(row())  # a claimed row's columns, as job_fetch returns them


def test_a_claimed_row_becomes_the_job_unpack_makes() -> None:
    """``claimed_row_maker`` builds a running row's job from its values as ``QueuedJob.unpack``
    builds it from the row's dict, for every kind of stored value."""
    make = claimed_row_maker(COLUMNS)
    rows = [
        row(),
        # job_fetch sends empty JSON values as NULL, and '' is a keyless job on a keyed queue.
        row(kwargs=None, limits=None, meta=None, errors=None, partition_key="", recoveries=None),
        row(
            limits=[{"t": "time", "v": 5}, {"t": "memory", "v": 100}],
            errors=[{"attempt": 0, "traceback": "boom"}],
            progress={"fraction": 0.5, "message": "half", "data": {"i": 3}, "at": NOW.isoformat()},
            recoveries=2,
            deadline=NOW,
        ),
    ]
    for stored in rows:
        job = make(tuple(stored.values()))
        assert type(job) is QueuedJob
        assert fields(job) == fields(QueuedJob.unpack(stored))
    made = make(tuple(rows[1].values()))
    assert made.kwargs == {} and made.meta == {} and made.errors == [] and made.limits == []
    assert made.partition_key is None and made.recoveries == 0
    other = make(tuple(rows[1].values()))
    assert other.kwargs is not made.kwargs and other.errors is not made.errors


def test_other_claimed_rows_stay_dicts_for_unpack_claimed() -> None:
    """A row the claim failed as expired, or one ``unpack`` refuses, comes back as its dict
    (``unpack_claimed`` then makes the failed outcome, as for a dict row)."""
    make = claimed_row_maker(COLUMNS)
    expired = row(state="failed")
    assert make(tuple(expired.values())) == expired
    broken = row(limits=[{"no": "type"}])
    assert make(tuple(broken.values())) == broken
    assert unpack_claimed(broken).state is QueuedJob.State.FAILED
    # Columns that do not make a job (a query without state, or without a required column).
    assert claimed_row_maker(("id", "func"))((1, "f")) == {"id": 1, "func": "f"}
    short = {k: v for k, v in row().items() if k != "kwargs"}
    assert claimed_row_maker(tuple(short))(tuple(short.values())) == short
