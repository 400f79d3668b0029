"""``Job.pack()`` keeps Chancy 0.26's form: ``s`` is always a number.

0.26's ``Job.unpack`` (and its workers, during a rolling deploy) read ``s`` with
``datetime.fromtimestamp``, and 0.26 code expects ``Job.unpack(job.pack()) == job``. A job that
was never given a ``scheduled_at`` also carries ``"sn": True``, so it keeps its "when stored"
default (database time) through the round trip.
"""

from __future__ import annotations

from datetime import UTC, datetime

from chancy import Job
from chancy.job import DefaultNow


def test_a_default_job_round_trips_and_keeps_its_default() -> None:
    job = Job(func="a.b", queue="q", kwargs={"x": 1}, max_attempts=3)
    packed = job.pack()
    assert isinstance(packed["s"], float) and packed["sn"] is True
    again = Job.unpack(packed)
    assert again == job
    assert type(again.scheduled_at) is DefaultNow  # still stored with the database's now()


def test_an_explicit_time_round_trips() -> None:
    when = datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    job = Job(func="a.b", scheduled_at=when)
    packed = job.pack()
    assert packed["s"] == when.timestamp() and "sn" not in packed
    again = Job.unpack(packed)
    assert again == job and type(again.scheduled_at) is datetime


def test_packs_from_026_and_from_earlier_chancy_still_unpack() -> None:
    from_026 = {
        "f": "a.b",
        "k": {},
        "p": 0,
        "a": 1,
        "s": 1700000000.5,
        "l": [],
        "u": None,
        "q": "default",
        "m": {},
    }
    assert Job.unpack(from_026).scheduled_at == datetime.fromtimestamp(1700000000.5, tz=UTC)
    assert type(Job.unpack(from_026).scheduled_at) is datetime
    earlier = {**from_026, "s": None}
    assert type(Job.unpack(earlier).scheduled_at) is DefaultNow
