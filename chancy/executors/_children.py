"""A ProcessExecutor's child: its process, the socket pair that feeds it, and the wire.

Messages are pickled tuples in length-prefixed frames (``_child.FRAME``). The parent writes
without blocking (what the socket does not take waits in ``outbuf`` for the loop's writer
callback) and reads from the loop's reader callback, so it never blocks on a child.
"""

from __future__ import annotations

import asyncio
import pickle
import socket
from collections.abc import Callable
from multiprocessing.process import BaseProcess
from typing import TYPE_CHECKING, Any

from chancy.executors import _child

if TYPE_CHECKING:
    from chancy.job import QueuedJob

# Below glibc's mmap threshold (128 KiB): a larger recv() buffer is mapped and unmapped on
# every read, which costs more than the read itself. Bigger replies arrive in several reads.
_READ_SIZE = 1 << 16
_FRAME = _child.FRAME
_HEAD = _child.FRAME.size

Message = tuple[Any, ...]


class Child:
    """One child process, the socket that feeds it and the job it is running."""

    __slots__ = (
        "closed",
        "deadline",
        "inbuf",
        "job",
        "jobs_done",
        "memory_limit",
        "outbuf",
        "process",
        "ready",
        "sent_at",
        "sock",
        "successor",
        "time_limit",
    )

    def __init__(self, process: BaseProcess, sock: socket.socket) -> None:
        self.process = process
        self.sock = sock
        self.ready = False
        self.closed = False
        self.job: QueuedJob | None = None
        self.time_limit: float | None = None
        self.memory_limit: int | None = None
        self.deadline: asyncio.TimerHandle | None = None
        self.sent_at = 0.0
        self.jobs_done = 0
        #: The child that takes this one's place when it retires, started ahead of time.
        self.successor: Child | None = None
        self.inbuf = bytearray()
        self.outbuf = bytearray()

    def send(self, message: Message) -> None:
        """Queue ``message`` for the child; what the socket does not take now is written by
        the loop when it can (a child that is gone fails its job through its EOF)."""
        data = _child.frame(message)
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
