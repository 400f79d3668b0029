"""SubInterpreterExecutor: each slot runs its jobs in its own sub-interpreter (Python 3.14+).

Sub-interpreters give jobs their own module state and (with a per-interpreter GIL) true
parallelism inside one process, without the start-up cost of a child process. The API they
need, ``concurrent.interpreters``, is public from Python 3.14; on 3.13 it comes from the
``interpreters-pep-734`` backport. Below that the executor reports itself unsupported.

Not exercised by the test suite, which runs on Python 3.11: only the "unsupported" path is.
"""

from __future__ import annotations

import dataclasses
import importlib
import pickle
import sys
import threading
from types import ModuleType
from typing import TYPE_CHECKING, Any

from chancy.errors import ConfigurationError
from chancy.executors import _child
from chancy.executors.base import Executor
from chancy.executors.thread import ThreadedExecutor, _Run, _Thread
from chancy.job import QueuedJob

if TYPE_CHECKING:
    from chancy.queue import Queue
    from chancy.worker import Worker


def _load_interpreters() -> ModuleType | None:
    for name in ("concurrent.interpreters", "interpreters_backport.interpreters"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    return None


_interpreters = _load_interpreters() if sys.version_info >= (3, 13) else None


class SubInterpreterExecutor(ThreadedExecutor):
    """Runs each slot's jobs in a sub-interpreter driven by its own daemon thread.

    Jobs travel as pickles, like to a ProcessExecutor child, and the same code runs them, so
    results, errors, ``Retry``/``Snooze`` and ``meta`` changes behave the same. A running
    interpreter cannot be interrupted: at a time limit or on cancellation the job is reported
    as failed and its slot freed, and the interpreter is discarded once the job returns.
    Extension modules that do not support sub-interpreters fail to import in them; use
    ProcessExecutor for such jobs.
    """

    def __init__(self, worker: Worker, queue: Queue, **options: Any) -> None:
        reason = self.unsupported_reason()
        if reason is not None:
            raise ConfigurationError(reason)
        super().__init__(worker, queue, **options)
        self._local = threading.local()

    @classmethod
    def get_capabilities(cls) -> Executor.Capability:
        if cls.unsupported_reason() is not None:
            return cls.Capability(0)
        return (
            cls.Capability.SYNC_JOBS
            | cls.Capability.ASYNC_JOBS
            | cls.Capability.COOPERATIVE_TIME_LIMITS
        )

    @classmethod
    def unsupported_reason(cls) -> str | None:
        version = ".".join(map(str, sys.version_info[:3]))
        if sys.version_info < (3, 13):
            return (
                f"SubInterpreterExecutor needs Python 3.13 or newer (this worker runs Python"
                f" {version}); use ProcessExecutor to run jobs isolated and in parallel"
            )
        if _interpreters is None:
            return (
                f"SubInterpreterExecutor needs Python 3.14+, or Python 3.13 with the"
                f" interpreters-pep-734 backport installed (this worker runs Python {version});"
                f" or use ProcessExecutor"
            )
        return None

    def _thread_main(self, thread: _Thread) -> None:
        assert _interpreters is not None
        interpreter = _interpreters.create()
        try:
            # A new interpreter starts with the default sys.path, not the worker's.
            interpreter.prepare_main(path=tuple(sys.path))
            interpreter.exec("import sys; sys.path[:] = list(path)")
            self._local.interpreter = interpreter
            super()._thread_main(thread)
        finally:
            interpreter.close()

    def _invoke(self, run: _Run) -> tuple[QueuedJob, BaseException | None, Any]:
        job = run.job
        message = pickle.dumps(_child.job_message(job, None, full=True), _child.PICKLE_PROTOCOL)
        try:
            reply = pickle.loads(self._local.interpreter.call(_child.run_pickled, message))
        except Exception as exc:
            return job, exc, None
        error, result, meta = _child.decode_outcome(reply)
        if meta is not None:
            job = dataclasses.replace(job, meta=meta)
        return job, error, result

    def _interrupt_thread(self, run: _Run) -> None:
        # Code in another interpreter cannot be interrupted from here; the run is abandoned
        # and its thread (with its interpreter) retires when the job returns.
        pass
