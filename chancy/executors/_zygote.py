"""A zygote: one warm process per ProcessExecutor that forks its children on request.

Starting a child through multiprocessing's forkserver costs several milliseconds of CPU
(the hand-off pickles the process object and the parent's preparation data, the new process
unpickles them and runs multiprocessing's bootstrap), against about one for a bare ``fork``
of a process that has already imported what a child needs. With the default of 100 jobs per
child, that hand-off was the largest cost of a no-op job. So the executor starts one zygote
through the forkserver (itself a clean process: never the worker, which has threads and
connections), and the zygote forks each child straight into ``_child.main``.

The zygote and the worker talk over a ``SOCK_SEQPACKET`` pair, one pickled tuple per
message::

    worker -> zygote   (SPAWN, serial, name, config)  + the child's socket (SCM_RIGHTS)
    zygote -> worker   (STARTED, serial, pid)         + a pidfd of the child, where the
                                                        kernel has them
                       (EXITED, pid, exit code)       once the zygote has reaped it

The zygote is single-threaded (forking is then safe), relays every child's exit status as
multiprocessing reports it (negative: killed by that signal), and exits when the worker
closes its end or goes away; its children die with it (their parent-death signal, or
``_child._watch_parent`` where the kernel has none). The worker kills a child through its
pidfd, so a pid the kernel reused after the zygote reaped it is never signalled.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import multiprocessing
import os
import pickle
import select
import signal
import socket
import sys
import traceback
from collections.abc import Callable
from typing import Any

from chancy.executors._spawning import kill_process

SPAWN, STARTED, EXITED = 0, 1, 2

log = logging.getLogger("chancy.executor.process")

#: Largest message either side sends (a config is a few hundred bytes).
_MESSAGE_SIZE = 1 << 16
#: How long a spawn waits for the zygote's answer before the zygote is given up.
SPAWN_WAIT = 10.0


# -- the zygote process ---------------------------------------------------------------


def serve(control: socket.socket) -> None:
    """The zygote's main: fork a child per SPAWN request until the worker closes ``control``."""
    # Every child looks its executor class up (_child._executor_class): ProcessExecutor's
    # module and its three helpers are imported here once, not in each child (0.3 ms each).
    import chancy.executors.process  # noqa: F401
    from chancy.executors import _child

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with_parent = _parent_death_signal()
    # Everything imported so far is shared with the children; freezing it keeps their
    # collections from touching (and so copying) those pages.
    gc.collect()
    gc.freeze()
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    control.setblocking(True)
    poller = select.poll()
    poller.register(control.fileno(), select.POLLIN)
    poller.register(wake_r, select.POLLIN)
    live = True
    while live:
        try:
            events = poller.poll()
        except InterruptedError:  # pragma: no cover - PEP 475 retries poll
            continue
        for fd, _ in events:
            if fd == wake_r:
                with contextlib.suppress(BlockingIOError):
                    while os.read(wake_r, 512):
                        pass
            elif not _take(
                control,
                lambda fd, request: _fork(control, fd, request, _child.main, die_with_parent),
            ):
                live = False
        _reap(control)
    # The worker is gone or stopping: the children die with this process (their parent-death
    # signal), or exit when their watching thread sees it gone where that signal is missing.


def _take(control: socket.socket, spawn: Callable[[int, tuple[Any, ...]], None]) -> bool:
    """Read one request and serve it; False when the worker closed its end."""
    try:
        data, fds, _, _ = socket.recv_fds(control, _MESSAGE_SIZE, 1)
    except (ConnectionResetError, BrokenPipeError):
        return False
    if not data:
        for fd in fds:
            os.close(fd)
        return False
    request = pickle.loads(data)
    if request[0] == SPAWN and len(fds) == 1:
        spawn(fds[0], request)
    else:
        for fd in fds:
            os.close(fd)
    return True


def _fork(
    control: socket.socket,
    fd: int,
    request: tuple[Any, ...],
    main: Callable[[socket.socket, dict[str, Any]], None],
    die_with_parent: Callable[[], bool] | None,
) -> None:
    _, serial, name, config = request
    zygote = os.getpid()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child, which ends in os._exit
        if die_with_parent is not None and die_with_parent():
            if os.getppid() != zygote:
                os._exit(1)  # the zygote died before the signal was armed
            # The kernel kills the child with the zygote: no watching thread needed.
            config = {**config, "parent_watched": True}
        _run_child(control, fd, name, config, main)
    os.close(fd)
    pidfd = _pidfd(pid)
    reply = pickle.dumps((STARTED, serial, pid))
    try:
        socket.send_fds(control, [reply], [] if pidfd is None else [pidfd])
    except OSError:
        pass  # the worker is gone; the loop sees it next
    finally:
        if pidfd is not None:
            os.close(pidfd)


def _run_child(
    control: socket.socket,
    fd: int,
    name: str,
    config: dict[str, Any],
    main: Callable[[socket.socket, dict[str, Any]], None],
) -> None:  # pragma: no cover - runs in a forked child
    code = 0
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        control.close()
        multiprocessing.current_process().name = name
        main(socket.socket(fileno=fd), config)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)


def _parent_death_signal() -> Callable[[], bool] | None:
    """Linux's ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` for a forked child, if libc has it.

    A child then dies with the zygote (which exits with the worker) without a thread of its
    own that polls its parent: starting that thread was a third of a child's start-up.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError, ImportError):
        return None
    pr_set_pdeathsig = 1

    def arm() -> bool:
        return bool(prctl(pr_set_pdeathsig, int(signal.SIGKILL), 0, 0, 0) == 0)

    return arm


def _pidfd(pid: int) -> int | None:
    opener = getattr(os, "pidfd_open", None)
    if opener is None:
        return None
    try:
        return int(opener(pid))
    except OSError:  # an old kernel, or seccomp forbids it
        return None


def _reap(control: socket.socket) -> None:
    """Reap every child that exited and tell the worker how each one ended."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        with contextlib.suppress(OSError):
            control.send(pickle.dumps((EXITED, pid, os.waitstatus_to_exitcode(status))))


# -- the worker's side ----------------------------------------------------------------


class ZygoteChild:
    """A child forked by the zygote, as the executor sees it (the part of
    ``multiprocessing.Process`` it uses: ``pid``, ``exitcode``, ``close``).

    Its ``pid`` is None until the zygote's STARTED reply has been read (``Zygote.spawn``
    does not wait for it); a kill asked for before then is carried out on arrival.
    """

    __slots__ = ("exitcode", "kill_on_start", "pid", "pidfd")

    def __init__(self) -> None:
        self.pid: int | None = None
        self.pidfd: int | None = None
        #: None while it runs; its exit code (negative: the signal) once the zygote reaped it.
        self.exitcode: int | None = None
        self.kill_on_start = False

    def kill_unless_reaped(self) -> None:
        """SIGKILL the child, unless it is known to have exited (or, not started yet, as
        soon as it has a pid)."""
        if self.exitcode is not None:
            return
        if self.pid is None:
            self.kill_on_start = True
            return
        with contextlib.suppress(OSError):  # gone already, or not ours to signal
            if self.pidfd is not None:
                signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
            else:
                os.kill(self.pid, signal.SIGKILL)

    def close(self) -> None:
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None


class Zygote:
    """The worker's handle on one zygote process: start children, learn how they ended."""

    def __init__(self, context: Any, name: str, on_gone: Callable[[Zygote], None]) -> None:
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.process = context.Process(target=serve, args=(theirs,), name=name)
            self.process.start()
        except BaseException:
            mine.close()
            raise
        finally:
            theirs.close()
        self._sock = mine
        self._sock.setblocking(False)
        self._serial = 0
        #: Children by pid, and by request serial until their STARTED reply arrives.
        self._children: dict[int, ZygoteChild] = {}
        self._starting: dict[int, ZygoteChild] = {}
        self._on_gone = on_gone
        self.alive = True

    def fileno(self) -> int:
        return self._sock.fileno()

    def spawn(self, sock: socket.socket, name: str, config: dict[str, Any]) -> ZygoteChild:
        """Ask for a child that runs ``_child.main(sock, config)``; returns without waiting
        for the fork (the worker's loop goes on while the zygote forks; the child's pid
        comes with the STARTED reply, read by ``on_readable``). A zygote that does not
        answer within ``SPAWN_WAIT`` is given up, which fails what its children held."""
        self._serial += 1
        serial = self._serial
        request = pickle.dumps((SPAWN, serial, name, config))
        self._sock.settimeout(SPAWN_WAIT)  # only if its queue is full: the zygote is stuck
        try:
            socket.send_fds(self._sock, [request], [sock.fileno()])
        except BaseException:
            self._give_up()
            raise
        finally:
            if self.alive:
                self._sock.setblocking(False)
        child = ZygoteChild()
        self._starting[serial] = child
        asyncio.get_running_loop().call_later(SPAWN_WAIT, self._overdue, serial)
        return child

    def _overdue(self, serial: int) -> None:
        if serial in self._starting and self.alive:
            log.error("the process that starts children did not answer in %gs", SPAWN_WAIT)
            self._give_up()

    def on_readable(self) -> None:
        """Take what the zygote sent (children started and exited); its end means it is gone."""
        while self.alive:
            try:
                reply = self._receive()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                reply = None
            if reply is None:
                self._give_up()

    def _receive(self) -> tuple[Any, ...] | None:
        data, fds, _, _ = socket.recv_fds(self._sock, _MESSAGE_SIZE, 1)
        pidfd = fds[0] if fds else None
        reply = pickle.loads(data) if data else None
        if reply is not None and reply[0] == STARTED and reply[1] in self._starting:
            child = self._starting.pop(reply[1])
            child.pid, child.pidfd = reply[2], pidfd
            self._children[child.pid] = child
            if child.kill_on_start:
                child.kill_unless_reaped()
            return reply
        if pidfd is not None:
            os.close(pidfd)  # not a child asked for (none is expected)
        if reply is not None and reply[0] == EXITED:
            exited = self._children.pop(reply[1], None)
            if exited is not None:
                exited.exitcode = reply[2]
        return reply

    def _give_up(self) -> None:
        """The zygote died or stopped answering: kill what it started (their exit codes
        will never come) and stop it."""
        if not self.alive:
            return
        for child in self._children.values():
            child.kill_unless_reaped()
            child.exitcode = -signal.SIGKILL
        # Never started, or forked and dying with the zygote (their parent-death signal).
        for child in self._starting.values():
            child.exitcode = -signal.SIGKILL
        self._children.clear()
        self._starting.clear()
        self.kill_now()
        self.close()

    def close(self) -> None:
        """Let the zygote exit (it reads the end of its socket); children already killed."""
        if self.alive:
            self.alive = False
            self._on_gone(self)
            self._sock.close()

    def kill_now(self) -> None:
        kill_process(self.process)
