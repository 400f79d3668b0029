"""The code that runs jobs in a ProcessExecutor child (or a sub-interpreter), and its wire format.

Kept apart from ``process.py`` so a child imports only what running jobs needs: never
psycopg, never the worker. The parent and a child exchange length-prefixed pickles over a
socket pair; the messages are plain tuples so the hot path pickles as little as possible.

Parent to child, one per job (a child may be sent several ahead; it runs them in order)::

    (job or None, job id as int, func, kwargs, attempts, queue, memory limit or None)
    (SKIP, job id as int)                          drop that job if it has not started

The full ``QueuedJob`` (costly to pickle) is sent only while the parent does not know that
the function leaves it unused; a child that turns out to need it answers ``NEED_JOB`` and the
parent sends it again in full.

Child to parent::

    (READY, pid)                                   once, when the child can take jobs
    (DONE, used_job, result, meta or None)         result: None, pickled bytes, or a type
                                                   name (str) when it could not be pickled
    (FAILED, used_job, exception pickle or None, type name, message, traceback, meta)
    (NEED_JOB,)
    (SKIPPED, job id as int)                       answers a SKIP that dropped the job
    (PROGRESS, job id as int, fraction, message, data as JSON text or None)
                                                   while a job runs (chancy.executors._progress)
"""

from __future__ import annotations

import collections
import importlib
import logging
import os
import pickle
import signal
import socket
import struct
import sys
import threading
import time
import types
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chancy import progress
from chancy.errors import JobControl, JobMemoryLimitError
from chancy.executors._functions import FunctionCache
from chancy.executors._progress import ProgressPipe
from chancy.executors.base import (
    RemoteJobError,
    format_exception,
    run_coroutine_function,
)
from chancy.job import QueuedJob
from chancy.utils import import_string

if TYPE_CHECKING:
    from chancy.executors.process import ProcessExecutor

try:
    import resource
except ImportError:  # pragma: no cover - not on Windows
    resource = None  # type: ignore[assignment]

READY, DONE, FAILED, NEED_JOB, PROGRESS, SKIPPED = 0, 1, 2, 3, 4, 5
#: Parent to child: drop a job sent ahead that has not started, ``(SKIP, job id as int)``.
SKIP = 6

FRAME = struct.Struct("!I")
PICKLE_PROTOCOL = pickle.HIGHEST_PROTOCOL

log = logging.getLogger("chancy.executor.child")

#: (job id as int, queue, attempt) of the job running now, for log records.
_running: tuple[int, str, int] | None = None


# -- the wire format ------------------------------------------------------------------


def frame(message: Any) -> bytes:
    """Pickle ``message`` behind its 4-byte length."""
    data = pickle.dumps(message, PICKLE_PROTOCOL)
    return FRAME.pack(len(data)) + data


def job_message(job: QueuedJob, memory_limit: int | None, *, full: bool) -> tuple[Any, ...]:
    """The message that starts ``job`` in a child."""
    return (
        job if full else None,
        job.id.int,
        job.func,
        job.kwargs,
        job.attempts,
        job.queue,
        memory_limit,
    )


def decode_outcome(
    reply: tuple[Any, ...],
) -> tuple[BaseException | None, Any, dict[str, Any] | None]:
    """Turn a DONE or FAILED reply into (exception, result, meta)."""
    if reply[0] == DONE:
        _, _, payload, meta = reply
        return None, _load_result(payload), meta
    _, _, exc_bytes, type_name, message, formatted, meta = reply
    exc: Any = None
    if exc_bytes is not None:
        try:
            exc = pickle.loads(exc_bytes)
        except Exception:
            exc = None
    if isinstance(exc, BaseException):
        try:
            # format_exception() in base prefers this over the (lost) traceback object.
            exc.formatted_traceback = formatted  # type: ignore[attr-defined]
        except Exception:
            exc = None
    if not isinstance(exc, BaseException):
        exc = RemoteJobError(type_name, message, formatted)
    return exc, None, meta


def _load_result(payload: Any) -> Any:
    if payload is None:
        return None
    if isinstance(payload, str):
        return _opaque(payload)
    try:
        return pickle.loads(payload)
    except Exception:
        return _opaque("unloadable value")


def _opaque(type_name: str) -> Any:
    # An object that JSON encoding rejects with the original type's name, so the job
    # succeeds with ``meta["result_error"]`` naming what could not be stored.
    return type(type_name, (), {"__repr__": lambda self: f"<{type_name} not transferable>"})()


# -- running one job ------------------------------------------------------------------


def run_job(message: tuple[Any, ...], functions: FunctionCache) -> tuple[Any, ...]:
    """Run the job a message describes and return the reply (never raises)."""
    global _running
    job, id_int, func_path, kwargs, attempts, queue, memory_limit = message
    used_job = False
    _running = (id_int, queue, attempts)
    try:
        if job is None and (hit := functions.cached(func_path, kwargs)) is not None:
            func, _, injected = hit
            if injected:
                return (NEED_JOB,)
            call_kwargs = kwargs
        else:
            slim = job is None
            if slim:
                # Only to resolve the function the first time; it is not given to the job.
                job = QueuedJob(
                    id=uuid.UUID(int=id_int),
                    func=func_path,
                    kwargs=kwargs,
                    attempts=attempts,
                    queue=queue,
                    state=QueuedJob.State.RUNNING,
                )
            func, call_kwargs, _, used_job = functions.resolve(job)
            if used_job and slim:
                return (NEED_JOB,)
        if memory_limit:
            with _AddressSpaceLimit(memory_limit):
                result = run_coroutine_function(func, call_kwargs)
        else:
            result = run_coroutine_function(func, call_kwargs)
    except BaseException as exc:  # job code may raise SystemExit; it fails only the job
        return _failure(exc, used_job, job.meta if used_job else None, memory_limit)
    finally:
        _running = None
    return (DONE, used_job, _dump_result(result), job.meta if used_job else None)


_interpreter_functions: FunctionCache | None = None


def run_pickled(message: bytes) -> bytes:
    """``run_job`` for a sub-interpreter: a pickled message in, a pickled reply out.

    Bytes cross interpreters cheaply; the function cache lives in this interpreter's copy
    of the module.
    """
    global _interpreter_functions
    if _interpreter_functions is None:
        _interpreter_functions = FunctionCache()
    return pickle.dumps(run_job(pickle.loads(message), _interpreter_functions), PICKLE_PROTOCOL)


def _dump_result(result: Any) -> bytes | str | None:
    if result is None:
        return None
    try:
        return pickle.dumps(result, PICKLE_PROTOCOL)
    except Exception:
        return type(result).__name__


def _failure(
    exc: BaseException, used_job: bool, meta: dict[str, Any] | None, memory_limit: int | None
) -> tuple[Any, ...]:
    formatted = format_exception(exc)
    if memory_limit and isinstance(exc, MemoryError):
        exc = JobMemoryLimitError(
            f"the job exceeded its memory limit of {memory_limit} bytes (it raised MemoryError)"
        )
        formatted = f"{formatted}\nchancy.errors.JobMemoryLimitError: {exc}\n"
    try:
        message = str(exc)
    except Exception:
        message = "<the exception's message could not be formatted>"
    return (
        FAILED,
        used_job,
        _dump_exception(exc),
        f"{type(exc).__module__}.{type(exc).__qualname__}",
        message,
        formatted,
        meta,
    )


def _dump_exception(exc: BaseException) -> bytes | None:
    """Pickle ``exc`` if the parent will be able to rebuild it, else None."""
    try:
        data = pickle.dumps(exc, PICKLE_PROTOCOL)
        pickle.loads(data)  # some exceptions pickle but cannot be rebuilt
        return data
    except Exception:
        pass
    if isinstance(exc, JobControl):
        # A Retry or Snooze subclass that does not pickle still steers the job.
        base = next(c for c in type(exc).__mro__ if c.__module__ == "chancy.errors")
        return pickle.dumps(base(exc.delay), PICKLE_PROTOCOL)
    return None


class _AddressSpaceLimit:
    """Caps how much address space the running job may add (RLIMIT_AS), then restores it.

    The limit counts from the child's size when the job starts, so it bounds what the job
    itself allocates rather than the interpreter and imports already loaded.
    """

    __slots__ = ("_limit", "_previous")

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._previous: tuple[int, int] | None = None

    def __enter__(self) -> None:
        if resource is None:
            return
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        target = _address_space_size() + self._limit
        if hard != resource.RLIM_INFINITY:
            target = min(target, hard)
        resource.setrlimit(resource.RLIMIT_AS, (target, hard))
        self._previous = (soft, hard)

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            resource.setrlimit(resource.RLIMIT_AS, self._previous)


def _address_space_size() -> int:
    try:
        with open("/proc/self/statm", "rb") as f:
            pages = int(f.read().split()[0])
        return pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


# -- the child process ----------------------------------------------------------------


def main(sock: socket.socket, config: dict[str, Any]) -> None:
    """Entry point of a child: run jobs from ``sock`` until the parent closes it."""
    # Ctrl-C in a terminal reaches the whole process group; the worker decides what happens
    # to running jobs, so children ignore it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if not config.get("parent_watched"):
        _watch_parent(config["parent_pid"])
    if config.get("main"):
        sys.modules["__main__"] = LazyMain(config["main"])
    executor_cls = _executor_class(config["executor"])
    executor_cls.on_initialize_worker()
    _configure_logging(config["log_level"])
    functions = FunctionCache(executor_cls.get_function_and_kwargs)
    sock.setblocking(True)
    pipe = ProgressPipe(sock, frame, PROGRESS)
    progress.set_remote(pipe.report)
    inbox = Inbox(sock, lambda id_int: pipe.reply(frame((SKIPPED, id_int))))
    try:
        sock.sendall(frame((READY, os.getpid())))
        fresh = False
        while True:
            if inbox.awaiting is not None or not inbox.pending:
                if not inbox.take(block=True):
                    return  # the parent closed the socket: recycled, stopped, or gone
                fresh = True
                continue
            if not fresh:
                # Jobs sent ahead wait here; a skip for one of them may have arrived since.
                if not inbox.take(block=False):
                    return
                if not inbox.pending:
                    continue
            fresh = False
            message = inbox.pending.popleft()
            reply = run_job(message, functions)
            if reply[0] == NEED_JOB:
                inbox.awaiting = message[1]
            pipe.reply(frame(reply))
    except (BrokenPipeError, ConnectionResetError):
        return  # the parent went away mid-message


class Inbox:
    """The child's side of its socket: job messages in order, minus the ones skipped.

    The parent may send a child several jobs ahead (see ``ProcessExecutor``); they wait in
    ``pending``. ``(SKIP, id)`` drops a waiting job (a cancellation) and is answered
    ``(SKIPPED, id)``; a skip for a job already run is ignored (its outcome went first).
    After ``NEED_JOB`` the child waits for that job's full message (``awaiting``), which
    goes ahead of the others.
    """

    def __init__(self, sock: socket.socket, skipped: Callable[[int], None]) -> None:
        self.sock = sock
        self.skipped = skipped
        self.pending: collections.deque[tuple[Any, ...]] = collections.deque()
        self.awaiting: int | None = None
        self.buf = bytearray()

    def take(self, *, block: bool) -> bool:
        """Read what the socket holds (waiting for it if ``block``); False at its end."""
        try:
            data = self.sock.recv(1 << 16, 0 if block else socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return True
        if not data:
            return False
        buf = self.buf
        buf += data
        start, end = 0, len(buf)
        while end - start >= FRAME.size:
            (size,) = FRAME.unpack_from(buf, start)
            stop = start + FRAME.size + size
            if stop > end:
                break
            self._add(pickle.loads(bytes(buf[start + FRAME.size : stop])))
            start = stop
        del buf[:start]
        return True

    def _add(self, message: tuple[Any, ...]) -> None:
        if message[0] == SKIP and len(message) == 2:
            id_int = message[1]
            if self.awaiting == id_int:
                self.awaiting = None
                self.skipped(id_int)
                return
            for queued in self.pending:
                if queued[1] == id_int:
                    self.pending.remove(queued)
                    self.skipped(id_int)
                    return
        elif self.awaiting is not None and message[1] == self.awaiting and message[0] is not None:
            self.awaiting = None
            self.pending.appendleft(message)
        else:
            self.pending.append(message)


class LazyMain(types.ModuleType):
    """Stands in for the worker's main module; loads it on first use, as ``__mp_main__``.

    Jobs defined in the script that runs the worker are stored as ``__main__.name``. Loading
    that script in every child would re-run its top level at each start, so it is loaded only
    when such a job arrives, under the name multiprocessing uses, so that code guarded by
    ``if __name__ == "__main__":`` stays in the parent.
    """

    def __init__(self, where: dict[str, str]) -> None:
        super().__init__("__main__")
        self._where = where

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        where = self.__dict__["_where"]
        if "name" in where:
            real = importlib.import_module(where["name"])
        else:
            real = types.ModuleType("__mp_main__")
            real.__file__ = where["path"]
            sys.modules["__mp_main__"] = real
            code = compile(Path(where["path"]).read_bytes(), where["path"], "exec")
            exec(code, real.__dict__)
        sys.modules["__main__"] = real
        return getattr(real, name)


def _executor_class(path: str | None) -> type[ProcessExecutor]:
    from chancy.executors.process import ProcessExecutor

    if path is None:
        return ProcessExecutor
    try:
        cls = import_string(path)
    except Exception as exc:
        log.warning(
            "could not import executor %s in the child (%s); using ProcessExecutor", path, exc
        )
        return ProcessExecutor
    return cls if isinstance(cls, type) and issubclass(cls, ProcessExecutor) else ProcessExecutor


def _watch_parent(parent_pid: int) -> None:
    """Exit when the worker is gone, even while a job is stuck, so no child is orphaned.

    The process to watch is this child's parent at start: the worker itself under "spawn",
    the forkserver (which exits with the worker) under "forkserver".
    """
    watched = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != watched:
                os._exit(1)

    threading.Thread(target=watch, name="chancy-parent-watch", daemon=True).start()


def _configure_logging(level: int) -> None:
    """Add the running job's id, queue and attempt to every log record made in this child.

    Records carry ``chancy_job_id``, ``chancy_queue`` and ``chancy_attempt`` (None between
    jobs). Without a handler configured by ``on_initialize_worker``, records at the worker's
    level go to stderr in a format that shows them.
    """
    make_record = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make_record(*args, **kwargs)
        running = _running
        if running is None:
            record.chancy_job_id = record.chancy_queue = record.chancy_attempt = None
        else:
            record.chancy_job_id = str(uuid.UUID(int=running[0]))
            record.chancy_queue = running[1]
            record.chancy_attempt = running[2]
        return record

    logging.setLogRecordFactory(factory)
    logging.basicConfig(
        level=level,
        format=(
            "%(asctime)s %(levelname)s %(processName)s job=%(chancy_job_id)s"
            " queue=%(chancy_queue)s attempt=%(chancy_attempt)s %(name)s: %(message)s"
        ),
    )
