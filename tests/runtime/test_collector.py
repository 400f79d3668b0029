"""While workers run, Python's garbage collector is tuned for them (chancy.runtime.collector):
objects of the process at the first start frozen, the young threshold raised; the last
worker to stop undoes it, and a process that manages the collector keeps its settings."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from chancy import Chancy, Job, Queue, Worker
from chancy.runtime import collector
from tests.conftest import eventually


@pytest.fixture(autouse=True)
def untouched_collector() -> Iterator[None]:
    """Every test starts with the collector as Python sets it, and leaves it so."""
    assert collector._workers == 0 and not collector.tuned()
    before = gc.get_threshold()
    assert before[0] == 700 and gc.get_freeze_count() == 0 and gc.isenabled()
    try:
        yield
    finally:
        collector._workers, collector._changed = 0, None
        gc.unfreeze()
        gc.set_threshold(*before)
        gc.enable()


def test_the_first_worker_tunes_and_the_last_one_undoes() -> None:
    before = gc.get_threshold()
    collector.worker_started()
    assert gc.get_threshold() == (collector.GEN0_THRESHOLD, *before[1:])
    frozen = gc.get_freeze_count()
    assert frozen > 1000  # the modules and classes of this process
    collector.worker_started()  # a second worker: nothing more
    assert gc.get_freeze_count() == frozen
    collector.worker_stopped()
    assert collector.tuned() and gc.get_threshold()[0] == collector.GEN0_THRESHOLD
    collector.worker_stopped()
    assert not collector.tuned()
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0


def test_a_process_that_manages_its_collector_keeps_its_settings() -> None:
    # Its own threshold: kept; objects are still frozen, and unfrozen after.
    gc.set_threshold(2000, 10, 10)
    collector.worker_started()
    assert gc.get_threshold() == (2000, 10, 10) and gc.get_freeze_count() > 0
    collector.worker_stopped()
    assert gc.get_threshold() == (2000, 10, 10) and gc.get_freeze_count() == 0
    gc.set_threshold(700, 10, 10)
    # Objects it froze itself: left frozen (the threshold is still raised for the workers).
    gc.freeze()
    frozen = gc.get_freeze_count()
    collector.worker_started()
    collector.worker_stopped()
    assert gc.get_freeze_count() == frozen and gc.get_threshold()[0] == 700
    gc.unfreeze()
    # The collector turned off: nothing is touched.
    gc.disable()
    collector.worker_started()
    assert gc.get_threshold()[0] == 700 and gc.get_freeze_count() == 0
    collector.worker_stopped()
    assert not gc.isenabled() and not collector.tuned()
    gc.enable()


def test_a_threshold_changed_while_workers_ran_is_left_as_changed() -> None:
    collector.worker_started()
    gc.set_threshold(9000, 5, 5)
    collector.worker_stopped()
    assert gc.get_threshold() == (9000, 5, 5) and gc.get_freeze_count() == 0


async def test_a_running_worker_tunes_the_collector(chancy: Chancy) -> None:
    await chancy.declare(Queue("gc", executor=Chancy.Executor.Async, polling_interval=60))
    worker = Worker(chancy, register_signal_handlers=False, shutdown_timeout=5)
    async with worker:
        await eventually(lambda: "gc" in worker.executors, message="worker serves queue gc")
        assert collector.tuned()
        assert gc.get_threshold()[0] == collector.GEN0_THRESHOLD and gc.get_freeze_count() > 0
        ref = await chancy.push(Job(func="tests.runtime.jobs.noop", queue="gc"))
        done = await chancy.wait_for_job(ref, timeout=10)
        assert done is not None and done.state == done.State.SUCCEEDED
    assert not collector.tuned()
    assert gc.get_threshold()[0] == 700 and gc.get_freeze_count() == 0


async def test_tune_gc_false_leaves_the_collector_alone(chancy: Chancy) -> None:
    worker = Worker(chancy, register_signal_handlers=False, shutdown_timeout=5, tune_gc=False)
    async with worker:
        assert not collector.tuned()
        assert gc.get_threshold()[0] == 700 and gc.get_freeze_count() == 0
    assert not collector.tuned()


class _Cycle:
    def __init__(self) -> None:
        self.me = self


async def test_a_running_worker_collects_cyclic_garbage_on_a_timer(
    chancy: Chancy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cyclic garbage (a failed job's traceback and its frames) is collected every
    SWEEP_INTERVAL while the worker runs, even when too little is allocated to reach the
    raised threshold."""
    import weakref

    monkeypatch.setattr(collector, "SWEEP_INTERVAL", 0.05)
    worker = Worker(chancy, register_signal_handlers=False, shutdown_timeout=5)
    async with worker:
        await eventually(collector.tuned, message="the collector is tuned")
        cycle = _Cycle()
        gone = weakref.ref(cycle)
        del cycle
        assert gone() is not None  # only the collector frees a cycle
        await eventually(lambda: gone() is None, message="the sweep collected the cycle")
