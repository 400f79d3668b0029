"""The processes behind a ProcessExecutor: starting its children, closing and reaping them.

The executor decides which job goes to which child; this module only owns their lifecycle.
Under "forkserver" on Linux the children are forked by the executor's zygote (``_zygote``),
started once through the forkserver; otherwise each child is a ``multiprocessing`` process.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import itertools
import multiprocessing.util  # noqa: F401 - registers its atexit hook before ours, so ours runs first
import socket
import sys
import weakref
from collections.abc import Callable
from typing import Any

from chancy.errors import JobFailedError
from chancy.executors import _child
from chancy.executors._children import Child, Sent
from chancy.executors._spawning import describe_exit, kill_process, main_module_hidden
from chancy.executors._zygote import Zygote
from chancy.job import QueuedJob

#: How long a child may take to exit, and a stopping executor waits for its children.
EXIT_WAIT = 5.0


class ChildPool:
    """Starts, tracks and reaps the children of one executor."""

    def __init__(
        self,
        context: Any,
        name: str,
        config: Callable[[], dict[str, Any]],
        on_readable: Callable[[Child], None],
        report: Callable[[QueuedJob, BaseException], None],
    ) -> None:
        self._context = context
        self._name = name
        self._config = config
        self._on_readable = on_readable
        self._report = report
        self._serial = itertools.count(1)
        self._reaping: set[asyncio.Task[None]] = set()
        self.children: set[Child] = set()
        # Linux: the zygote's socket pair is SOCK_SEQPACKET, its children use prctl.
        self._forks = context.get_start_method() == "forkserver" and sys.platform == "linux"
        self._zygote: Zygote | None = None

    def spawn(self) -> Child:
        """Start a child and watch its socket (with a zygote, returns once the request is
        sent; with spawn, blocks until the new interpreter is started)."""
        parent_sock, child_sock = socket.socketpair()
        name = f"chancy-{self._name}-{next(self._serial)}"
        try:
            process: Any
            if self._forks:
                process = self._live_zygote().spawn(child_sock, name, self._config())
            else:
                process = self._context.Process(
                    target=_child.main, args=(child_sock, self._config()), name=name
                )
                with main_module_hidden():
                    process.start()
        except BaseException:
            parent_sock.close()
            raise
        finally:
            child_sock.close()
        parent_sock.setblocking(False)
        child = Child(process, parent_sock)
        asyncio.get_running_loop().add_reader(parent_sock.fileno(), self._on_readable, child)
        self.children.add(child)
        _live_pools.add(self)
        return child

    def _live_zygote(self) -> Zygote:
        """The zygote that forks this pool's children, started (again) if need be."""
        zygote = self._zygote
        if zygote is None or not zygote.alive:
            with main_module_hidden():
                zygote = Zygote(self._context, f"chancy-{self._name}-zygote", self._zygote_gone)
            asyncio.get_running_loop().add_reader(zygote.fileno(), zygote.on_readable)
            self._zygote = zygote
            _live_pools.add(self)
        return zygote

    def _zygote_gone(self, zygote: Zygote) -> None:
        """``zygote`` closes its socket: stop watching it, reap its process."""
        asyncio.get_running_loop().remove_reader(zygote.fileno())
        self._reap(zygote.process, None)

    def discard(self, child: Child, *, kill: bool, job: Sent | None = None) -> None:
        """Stop using ``child``: close its socket, kill it if asked, reap it in the background.

        With ``job``, the job is reported as failed with the child's exit code once known.
        """
        if child.closed:
            return
        child.closed = True
        if child.deadline is not None:
            child.deadline.cancel()
            child.deadline = None
        loop = asyncio.get_running_loop()
        fd = child.sock.fileno()
        loop.remove_reader(fd)
        if child.outbuf:
            loop.remove_writer(fd)
            child.outbuf.clear()
        if kill:
            kill_process(child.process)
        child.sock.close()  # a live child reads EOF and exits
        self.children.discard(child)
        self._reap(child.process, job)

    def _reap(self, process: Any, job: Sent | None) -> None:
        task = asyncio.get_running_loop().create_task(self._wait_exit(process, job))
        self._reaping.add(task)
        task.add_done_callback(self._reaping.discard)

    async def _wait_exit(self, process: Any, job: Sent | None) -> None:
        """Wait for ``process`` to exit (no zombies); report ``job`` as killed, with the code."""
        loop = asyncio.get_running_loop()
        kill_at = loop.time() + EXIT_WAIT
        delay = 0.001
        while process.exitcode is None:
            if loop.time() >= kill_at:
                kill_process(process)  # a recycled child that does not exit on EOF
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)
        code = process.exitcode
        with contextlib.suppress(ValueError):
            process.close()
        if job is not None:
            self._report(job.job, JobFailedError(describe_exit(code, job.memory_limit)))

    async def close(self) -> None:
        """Kill every child and wait briefly for them to be reaped."""
        for child in list(self.children):
            child.pipeline.clear()
            self.discard(child, kill=True)
        if self._reaping:
            await asyncio.wait(set(self._reaping), timeout=EXIT_WAIT)
        if self._zygote is not None:
            self._zygote.close()  # after the children's exit codes came through it
            self._zygote = None
            if self._reaping:
                await asyncio.wait(set(self._reaping), timeout=EXIT_WAIT)
        _live_pools.discard(self)

    def kill_all_now(self) -> None:
        """Kill every child at once (interpreter exit, no event loop)."""
        for child in self.children:
            kill_process(child.process)
        if self._zygote is not None:
            self._zygote.kill_now()


_live_pools: weakref.WeakSet[ChildPool] = weakref.WeakSet()


@atexit.register
def _kill_children_at_exit() -> None:
    # multiprocessing joins non-daemon children at exit; a child stuck in a job would hang
    # the worker's exit, so kill them first. (Children are not daemonic so that jobs may
    # start processes of their own.)
    for pool in list(_live_pools):
        pool.kill_all_now()
