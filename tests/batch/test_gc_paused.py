"""push_many builds a batch's rows and references with the cyclic collector held off
(chancy.utils.gc_paused): it is back on afterwards, also after an error, and left off when
the application had turned it off."""

from __future__ import annotations

import gc

import pytest

from chancy import Job
from chancy.store import Store
from chancy.utils import gc_paused


def test_the_collector_is_off_in_the_block_and_back_on_after_it() -> None:
    assert gc.isenabled()
    with gc_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    with pytest.raises(RuntimeError), gc_paused():
        raise RuntimeError("bad batch")
    assert gc.isenabled()


def test_a_collector_the_application_turned_off_stays_off() -> None:
    gc.disable()
    try:
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_encoding_a_batch_runs_with_the_collector_off(monkeypatch: pytest.MonkeyPatch) -> None:
    import chancy.store.jobs as jobs_module

    seen: list[bool] = []
    encode = jobs_module.encode_jobs

    def recording(jobs: list[Job], start: int = 0) -> object:
        seen.append(gc.isenabled())
        return encode(jobs, start)

    monkeypatch.setattr(jobs_module, "encode_jobs", recording)
    Store("t_").job_push([Job(func="app.f", queue="q") for _ in range(3)], notify=False)
    assert seen == [False] and gc.isenabled()
