"""A ProcessExecutor's child: its process, the socket pair that feeds it, and the wire.

Messages are pickled tuples in length-prefixed frames (``_child.FRAME``). The parent writes
without blocking (what the socket does not take waits in ``outbuf`` for the loop's writer
callback) and reads from the loop's reader callback, so it never blocks on a child.
"""

from __future__ import annotations

import asyncio
import collections
import pickle
import socket
import uuid
from collections.abc import Callable
from multiprocessing.process import BaseProcess
from typing import TYPE_CHECKING, Any

from chancy.executors import _child
from chancy.executors._zygote import ZygoteChild

if TYPE_CHECKING:
    from chancy.job import QueuedJob

# Below glibc's mmap threshold (128 KiB): a larger recv() buffer is mapped and unmapped on
# every read, which costs more than the read itself. Bigger replies arrive in several reads.
_READ_SIZE = 1 << 16
_FRAME = _child.FRAME
_HEAD = _child.FRAME.size

Message = tuple[Any, ...]


class Sent:
    """A job sent to a child: running (the first in its pipeline) or waiting there."""

    __slots__ = ("job", "memory_limit", "sent_at", "time_limit")

    def __init__(
        self, job: QueuedJob, time_limit: float | None, memory_limit: int | None, sent_at: float
    ) -> None:
        self.job = job
        self.time_limit = time_limit
        self.memory_limit = memory_limit
        self.sent_at = sent_at


class Child:
    """One child process, the socket that feeds it and the jobs it was sent, in order."""

    __slots__ = (
        "closed",
        "deadline",
        "inbuf",
        "jobs_done",
        "last_done",
        "outbuf",
        "pipeline",
        "process",
        "ready",
        "skipping",
        "sock",
        "successor",
        "unsent",
    )

    def __init__(self, process: BaseProcess | ZygoteChild, sock: socket.socket) -> None:
        self.process = process
        self.sock = sock
        self.ready = False
        self.closed = False
        #: Jobs sent and not yet answered: the first runs, the rest wait in the child.
        self.pipeline: collections.deque[Sent] = collections.deque()
        #: Jobs of the pipeline the child was asked to skip (cancelled before they started).
        self.skipping: set[uuid.UUID] = set()
        self.deadline: asyncio.TimerHandle | None = None
        self.last_done = 0.0
        self.jobs_done = 0
        #: The child that takes this one's place when it retires, started ahead of time.
        self.successor: Child | None = None
        self.inbuf = bytearray()
        self.outbuf = bytearray()
        self.unsent: list[bytes] = []

    @property
    def head(self) -> Sent | None:
        """The job the child runs now (or runs first once it is ready)."""
        return self.pipeline[0] if self.pipeline else None

    @property
    def job(self) -> QueuedJob | None:
        return self.pipeline[0].job if self.pipeline else None

    def queue(self, message: Message) -> None:
        """Add ``message`` to what the next ``flush`` sends, in one write with the others."""
        self.unsent.append(_child.frame(message))

    def flush(self) -> None:
        if self.unsent:
            data = b"".join(self.unsent)
            self.unsent.clear()
            self._write(data)

    def send(self, message: Message) -> None:
        self.queue(message)
        self.flush()

    def _write(self, data: bytes) -> None:
        """Write ``data``; what the socket does not take now is written by the loop when it
        can (a child that is gone fails its job through its EOF)."""
        if self.outbuf:
            self.outbuf += data
            return
        try:
            sent = self.sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            return
        if sent < len(data):
            self.outbuf += memoryview(data)[sent:]
            asyncio.get_running_loop().add_writer(self.sock.fileno(), self._on_writable)

    def _on_writable(self) -> None:
        try:
            sent = self.sock.send(self.outbuf)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            sent = len(self.outbuf)
        del self.outbuf[:sent]
        if not self.outbuf:
            asyncio.get_running_loop().remove_writer(self.sock.fileno())

    def read(self, on_message: Callable[[Message], None], on_gone: Callable[[], None]) -> None:
        """Read what the socket holds: each whole message goes to ``on_message`` (until the
        child is closed by one of them); the end of the stream calls ``on_gone``."""
        try:
            data = self.sock.recv(_READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            on_gone()
            return
        buf = self.inbuf
        if not buf and len(data) > _HEAD:
            # The usual case: exactly one whole reply.
            (size,) = _FRAME.unpack_from(data)
            if len(data) == _HEAD + size:
                on_message(pickle.loads(memoryview(data)[_HEAD:]))
                return
        buf += data
        start, end = 0, len(buf)
        while end - start >= _HEAD and not self.closed:
            (size,) = _FRAME.unpack_from(buf, start)
            stop = start + _HEAD + size
            if stop > end:
                break
            message = pickle.loads(bytes(buf[start + _HEAD : stop]))
            start = stop
            on_message(message)
        del buf[:start]
