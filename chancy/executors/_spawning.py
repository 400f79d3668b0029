"""How a ProcessExecutor starts, describes and kills its children (module-level helpers).

Children are started with forkserver where the platform has it (else spawn; never fork, which
is unsafe in a running worker), without re-running the worker's ``__main__`` module.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import multiprocessing
import multiprocessing.spawn
import os
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any

#: The module the forkserver imports once, so that each child forks warm.
_PRELOAD = "chancy.executors.process"


def default_start_method() -> str:
    """The start method to use by default: forkserver where it exists, else spawn (never fork)."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        return "forkserver"
    return "spawn"


@functools.cache
def cpu_count() -> int:
    # Cached: os.cpu_count reads /sys on every call, and the capacity is asked per job.
    count = getattr(os, "process_cpu_count", os.cpu_count)()
    return max(1, count or 1)


def kill_process(process: Any) -> None:
    """SIGKILL a child unless it is known to have exited (a zygote's child through its
    pidfd: see ``_zygote.ZygoteChild.kill_unless_reaped``)."""
    kill = getattr(process, "kill_unless_reaped", None)
    if kill is not None:
        kill()
        return
    pid = process.pid
    if pid is not None and process.exitcode is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def describe_exit(code: int | None, memory_limit: int | None) -> str:
    if code is None:
        text = "the process running the job stopped responding and was killed"
    elif code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = str(-code)
        text = f"the process running the job was killed by signal {name}"
        if -code == signal.SIGKILL:
            text += " (by the kernel's out-of-memory killer or by another process)"
    else:
        text = f"the process running the job died with exit code {code}"
    if memory_limit:
        text += f"; the job had a memory limit of {memory_limit} bytes"
    return text


def preload_in_forkserver() -> None:
    """Make the forkserver import the child's code once, so each fork starts warm."""
    from multiprocessing import forkserver

    server = getattr(forkserver, "_forkserver", None)
    current = list(getattr(server, "_preload_modules", None) or [])
    if _PRELOAD not in current:
        forkserver.set_forkserver_preload([*current, _PRELOAD])


def child_config(cls: type) -> dict[str, Any]:
    """What a child of an executor of class ``cls`` is started with (see ``_child.main``)."""
    path: str | None = f"{cls.__module__}.{cls.__qualname__}"
    if cls.__module__ == "__main__" or "<locals>" in cls.__qualname__:
        path = None  # not importable in the child; it uses ProcessExecutor's hooks
    return {
        "executor": path,
        "parent_pid": os.getpid(),
        "log_level": logging.getLogger().getEffectiveLevel(),
        "main": describe_main(),
    }


def describe_main() -> dict[str, str]:
    """How a child finds the worker's main module, should a job live there (``__main__.f``).

    A child loads it only when such a job arrives (see ``_child.LazyMain``), as
    multiprocessing would: by module name for ``python -m``, else from the script's path.
    """
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name and spec.name != "__main__":
        return {"name": spec.name}
    path = getattr(main, "__file__", None)
    if isinstance(path, str) and path.endswith(".py") and os.path.exists(path):
        return {"path": os.path.abspath(path)}
    return {}


_starting = threading.local()
_preparation_data = multiprocessing.spawn.get_preparation_data


def _preparation_data_without_main(name: str) -> dict[str, Any]:
    """multiprocessing's preparation data, without the main module while chancy starts a child.

    multiprocessing's spawn and forkserver re-run the parent's main script (or ``-m`` module)
    in every child. For a worker that is a console script (``chancy worker start``, pytest) or
    a user script, that costs start-up time, imports psycopg, and may re-run code without a
    ``__name__ == "__main__"`` guard; the child loads it only if a job defined there arrives
    (``_child.LazyMain``). Only the starting thread's calls are changed: the main module
    itself is never swapped out, since other threads (a thread executor's jobs) may be
    looking up ``__main__.name`` at that very moment.
    """
    data = _preparation_data(name)
    if getattr(_starting, "child", False):
        data.pop("init_main_from_name", None)
        data.pop("init_main_from_path", None)
    return data


multiprocessing.spawn.get_preparation_data = _preparation_data_without_main


@contextlib.contextmanager
def main_module_hidden() -> Iterator[None]:
    """Start a child without making it import the worker's ``__main__`` module (see above)."""
    _starting.child = True
    try:
        yield
    finally:
        _starting.child = False
